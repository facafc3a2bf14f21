"""The ``reenact`` commands, one module each: options (``add_arguments``) and action (``run``),
importing the library inside ``run`` so that ``--help`` answers without loading torch. The table
is :data:`reenact.__main__.COMMANDS`."""

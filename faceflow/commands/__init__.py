"""The ``faceflow`` commands, one module each: its options (``add_arguments(parser)``) and its
action (``run(args) -> int``). They sit above the library and import it inside ``run``, so
``faceflow COMMAND --help`` answers without loading torch. The table that names them is
:data:`faceflow.__main__.COMMANDS` (the whole toolkit's: :data:`apps.cli.COMMANDS`)."""

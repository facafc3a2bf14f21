"""The ``faceflow evaluate`` commands, one module each: options (``add_arguments``) and action
(``run``), importing the evaluation code inside ``run`` so that ``--help`` answers without
loading torch. ``python -m evaluation.flow_benchmark`` etc. run the same modules."""

"""Exception types shared by the whole toolkit.

Every error a user can cause (bad input, missing assets or weights) derives from
:class:`FaceflowError`, so command-line entry points can print its message and exit
non-zero without a traceback.
"""


class FaceflowError(Exception):
    """Base class of all user-facing errors of the toolkit."""


class AssetNotFoundError(FaceflowError, FileNotFoundError):
    """A required asset (morphable model, weights) could not be located."""


class MediaError(FaceflowError):
    """An image or video is missing, empty, corrupt, of the wrong kind or absurd size."""

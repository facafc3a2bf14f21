import sys

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


def run_cli(func, *args) -> int:
    """Run a command-line action: a :class:`FaceflowError` becomes ``error: message`` on stderr
    and exit code 2 (no traceback), Ctrl-C exit code 130; otherwise ``func``'s return value."""

    try:
        return func(*args)
    except FaceflowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""The options of one whole-video flow run (:func:`faceflow.outputs.video.video_flow`, saved
in its manifest). No torch here, so ``faceflow flow --help`` answers at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from faceflow.errors import FaceflowError
from faceflow.face.pair_check import MAX_SHIFT_IOD
from faceflow.runtime.flags import option

MIN_FLOW_PX = 0.1  # pictures show motion below this many pixels as none



@dataclass
class VideoFlowConfig:
    """Options of a whole-video flow run (saved in its manifest.json)."""

    gap: int = option(1, "the flow of every pair of frames (t, t + GAP): 1 = consecutive frames")
    start: int = option(0, "first frame (counted from 0)")
    max_frames: int | None = option(None, "read at most this many frames from --start (default: to the end)")
    batch_size: int = option(16, "pairs per network batch")
    max_flow: float | None = option(None, "colour scale of the pictures in pixels: one for all pictures of a pair, "
                                          "one for every frame of a video (default: the pair's or the clip's 99th "
                                          "percentile flow magnitude, rounded up to 1, 2, 2.5 or 5 x 10^k)",
                                    metavar="PX")
    min_flow: float = option(MIN_FLOW_PX, "motion below this many pixels shows as none in the pictures and the video",
                             metavar="PX")
    display_height: int = option(360, "height of each panel of the video in pixels")
    video: bool = option(True, "write flow.mp4 (frame | 3D flow | 2D flow | head / expression flow, with legends)")
    audio: bool = option(True, "copy the clip's audio into flow.mp4")
    max_shift: float = option(MAX_SHIFT_IOD, "largest mean shift of the faces' registered landmarks, in inter-ocular "
                                             "distances: a pair beyond it is refused (unless --force); a video's "
                                             "pairs beyond it are marked 'fast' in the summary (unreliable flow)")

    def __post_init__(self):
        ints = {"gap": 1, "start": 0, "batch_size": 1, "display_height": 32}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise FaceflowError(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or self.max_frames < 2):
            raise FaceflowError(f"--max-frames must be an integer >= 2 (a pair needs two frames), "
                                f"got {self.max_frames!r}")
        if self.display_height > 2160:
            raise FaceflowError(f"--display-height must be at most 2160, got {self.display_height}")
        if self.max_flow is not None and not (isinstance(self.max_flow, (int, float)) and self.max_flow > 0):
            raise FaceflowError(f"--max-flow must be a number of pixels > 0, got {self.max_flow!r}")
        if not (isinstance(self.min_flow, (int, float)) and self.min_flow >= 0):
            raise FaceflowError(f"--min-flow must be a number of pixels >= 0, got {self.min_flow!r}")
        if not (isinstance(self.max_shift, (int, float)) and self.max_shift > 0):
            raise FaceflowError(f"--max-shift must be > 0, got {self.max_shift!r}")

    def signature(self) -> dict:
        """What the stored flows depend on (a rerun with other values of these starts afresh)."""
        d = asdict(self)
        return {k: d[k] for k in ("gap", "start", "max_frames")}

"""The flow tab's examples, made once under ``WORKDIR/examples`` when the app is built.

- always: a face rendered by the project's own demo (:mod:`faceflow.commands.render`, the ICT
  FaceKit model that the toolkit needs anyway) in two nearby poses and expressions, 384x384;
- when the shared media are present (``$FACEFLOW_MEDIA`` or ``../shared/media``): frames 0 and 8
  of a real talking-head clip as PNGs, and a 3-second excerpt of it for the video modes.

Nothing is downloaded; a missing model or clip only leaves its example out.
"""
from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["make_examples", "EXAMPLE_CLIP"]

logger = logging.getLogger(__name__)
EXAMPLE_CLIP = "videos/EDTalk_uncrop_Obama.mp4"


def _render_pair(out: Path) -> list[str] | None:
    from faceflow.commands.render import FacePose, RenderConfig, render
    from faceflow.errors import FaceflowError

    a, b = out / "render_a.png", out / "render_b.png"
    if not (a.is_file() and b.is_file()):
        cfg = RenderConfig(seed=3, size=384, first=FacePose({"mouthSmile_L": 0.2, "mouthSmile_R": 0.2}, -6.0, 0.0, 0.0),
                           second=FacePose({"jawOpen": 0.35, "mouthSmile_L": 0.2, "mouthSmile_R": 0.2}, -2.0, 2.0, 1.0))
        try:
            render(cfg, out / "render")
        except (FaceflowError, OSError) as e:  # no morphable model here: no rendered example
            logger.warning("no rendered example pair: %s", e)
            return None
        (out / "render" / "shaded.png").replace(a)
        (out / "render" / "shaded2.png").replace(b)
    return [str(a), str(b)]


def _clip_examples(out: Path) -> tuple[list[str] | None, str | None]:
    from faceflow import io as vio
    from faceflow.runtime.assets import media_dir

    clip = media_dir() / EXAMPLE_CLIP
    if not clip.is_file():
        return None, None
    f0, f8, excerpt = out / "clip_frame0.png", out / "clip_frame8.png", out / "clip_3s.mp4"
    if not (f0.is_file() and f8.is_file() and excerpt.is_file()):
        info = vio.probe(clip)
        frames = list(vio.read_frames(clip, max_frames=int(round(3 * info.fps))))
        vio.write_image(f0, frames[0])
        vio.write_image(f8, frames[8])
        vio.write_video(excerpt, frames, info.fps, audio_from=clip if info.has_audio else None)
    return [str(f0), str(f8)], str(excerpt)


def make_examples(workdir: Path) -> dict:
    """{"pairs": [[img1, img2], ...], "videos": [[clip]]} of example files under ``workdir/examples``."""
    out = Path(workdir) / "examples"
    out.mkdir(parents=True, exist_ok=True)
    pairs, videos = [], []
    rendered = _render_pair(out)
    if rendered:
        pairs.append(rendered)
    frames, clip = _clip_examples(out)
    if frames:
        pairs.append(frames)
        videos.append([clip])
    return {"pairs": pairs, "videos": videos}

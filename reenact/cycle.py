"""Cycle reenactment: ``python -m reenact run MODEL --mode cycle --back-model SOURCE_MODEL
--source VIDEO --out OUT.mp4``.

Head reenactment of the source video onto the target (MODEL), then head reenactment of that
result back onto the source person's own model (``--back-model``, trained on the source's
person). A renderer that keeps the motion and a back model that keeps the identity bring the
source back; what is lost on the way is measured against the source itself:

- **round-trip APD**: the per-pixel RGB L2 distance (0-255) between the result and the source
  frame it came from, mapped into the back model's crop by the two legs' own camera adaptations
  (:func:`source_in_result_crop`: each head leg maps a pixel x of its driving video to
  ``r * crop(x) + shift``, so the composite is a known similarity);
- **round-trip CSIM**: the identity similarity (:mod:`faceflow.face.identity`, dlib's
  embedder, when available) of the result with the source's own frames, and of the first leg's frames with
  the source, for contrast.

The first leg's frames are kept as ``forward.mp4`` (near-lossless) in the work directory; OUT.json
holds the metrics. The metrics make sense when the back model was trained on the source's
person; with a source the back model never saw, the round trip measures that gap as well.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceflow import io as vio
from faceflow.errors import FaceflowError
from faceflow.face.dlib_face import optional_embedder
from faceflow.face.identity import csim, identity_reference
from faceflow.face.registration import CropBox
from faceflow.nets.modules import resolve_device
from reenact.data import to_signed
from reenact.metrics import apd
from reenact.run import drive_model, write_frames, write_record

__all__ = ["adapt_matrix", "source_in_result_crop", "cycle"]


def adapt_matrix(params: dict) -> np.ndarray:
    """(3, 3) homogeneous matrix of a head leg's map from its driving video's pixels to the
    target crop: ``r * crop(x) + shift`` (``params`` of a head-mode :class:`reenact.drive.Drive`
    and the crop size S are folded in through ``params['crop_box']`` and ``params['size']``)."""
    box = CropBox.from_dict(params["crop_box"])
    crop = np.vstack([box.transform(int(params["size"])).matrix, [0.0, 0.0, 1.0]])
    r, sx, sy = (float(v) for v in params["adapt"])
    return np.array([[r, 0.0, sx], [0.0, r, sy], [0.0, 0.0, 1.0]]) @ crop


def source_in_result_crop(frames: np.ndarray, first: dict, second: dict, size: int) -> np.ndarray:
    """The source video's ``frames`` (T, H, W, 3) mapped into the back model's crop (T, size,
    size, 3): through the first leg's map (source -> target crop = the forward video's pixels),
    then the second's (forward video -> back model's crop)."""
    M = adapt_matrix(second) @ adapt_matrix(first)
    out = []
    for f in frames:
        f, A = np.ascontiguousarray(f), M
        if M[0, 0] < 1:  # shrink by area first (a bilinear warp would alias), then warp what is left
            h, w = f.shape[:2]
            nw, nh = max(1, round(w * M[0, 0])), max(1, round(h * M[1, 1]))
            f = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA)
            sx, sy = w / nw, h / nh  # a resized pixel's centre j sits at (j + 0.5) s - 0.5 in the frame
            A = M @ np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        out.append(cv2.warpAffine(f, A[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def _csims_with(frame_sets: list[np.ndarray], reference_frames: np.ndarray, say) -> list[float | None]:
    """CSIM of each of ``frame_sets`` against the identity of ``reference_frames`` (one embedder,
    one reference; None each without dlib or without a face in the reference)."""
    emb = optional_embedder(say)
    if emb is None:
        return [None] * len(frame_sets)
    step = max(1, len(reference_frames) // 32)
    try:
        ref = identity_reference(emb, reference_frames[::step])
    except FaceflowError as e:
        say(f"note: CSIM n/a: {e}")
        return [None] * len(frame_sets)
    values = [csim(emb, frames, ref)["csim"] for frames in frame_sets]
    return [None if np.isnan(v) else float(v) for v in values]


def cycle(model_dir, back_model, source, out: Path, *, side: bool = False, max_frames=None, device="auto",
          work_dir: Path, progress: bool = True, say=print) -> dict:
    """Run both legs, write ``out`` (the result; with ``side`` source | forward | result) and
    ``OUT.json``; returns the summary with ``round_trip_apd``, ``round_trip_csim`` and
    ``forward_csim_to_source``."""
    if back_model is None:
        raise FaceflowError("--mode cycle needs --back-model: a model of the source video's own person "
                            "(python -m reenact train on footage of that person)")
    if source is None:
        raise FaceflowError("--mode cycle needs --source VIDEO (the driving video)")
    work_dir = Path(work_dir)
    say("cycle 1/2: the source onto the target (head reenactment)")
    fwd = drive_model(model_dir, "head", source, max_frames=max_frames, device=device, work_dir=work_dir / "forward",
                      progress=progress, say=say)
    mid = work_dir / "forward.mp4"
    vio.write_video(mid, fwd.fake, fps=fwd.drive.fps, crf=10)
    say("cycle 2/2: the result back onto the source's own model")
    back = drive_model(back_model, "head", mid, device=device, work_dir=work_dir / "back", progress=progress, say=say)
    # frame k of the result comes from forward frame back.frame_index[k], i.e. source frame
    # fwd.frame_index[that]
    src_frames = fwd.drive.source[back.drive.frame_index]
    ref = source_in_result_crop(src_frames, {**fwd.drive.params, "size": fwd.size},
                                {**back.drive.params, "size": back.size}, back.size)
    forward_frames = fwd.fake[back.drive.frame_index]
    round_trip_csim, forward_csim = _csims_with([back.fake, forward_frames], ref, say)
    write_frames(out, back.fake, fwd.drive.fps, fwd.drive.audio,
                 [ref, forward_frames] if side else None)
    summary = {"frames": len(back.fake), "mode": "cycle", "out": str(out.resolve()), "fps_video": fwd.drive.fps,
               "generation_fps": min(fwd.generation_fps, back.generation_fps), "checkpoint_step": fwd.step,
               "back_checkpoint_step": back.step,
               "round_trip_apd": float(apd(to_signed(back.fake), to_signed(ref))),
               "round_trip_csim": round_trip_csim, "forward_csim_to_source": forward_csim}
    say(f"round trip: APD {summary['round_trip_apd']:.2f}, CSIM to the source {summary['round_trip_csim']}, "
        f"the forward leg's CSIM to the source {summary['forward_csim_to_source']}")
    write_record(out, summary, fwd.model_dir, fwd.data_dir, source, resolve_device(device))
    return summary

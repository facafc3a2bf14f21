"""How far the flow's face mask reaches beyond the face in annotated clips (issue 14's check of the
mesh subset that defines the mask).

    python scripts/mask_extent.py ANNOTATED_CLIP_DIR... [--frames 40]

For evenly spaced frames of each clip, in the 224 template: the share of the flow-mask pixels
(``pncc_mask``, the rendered ``meshreg`` vertex subset) outside the convex hull of the 68 landmarks,
and, column by column between the ends of the jaw, how far the lowest mask pixel lies below the jaw
line of landmarks 0-16 (positive: onto the neck), as the median and the worst column.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from evaluation.flow_precision import face_mask


def below_jaw(mask: np.ndarray, lmk: np.ndarray) -> np.ndarray:
    """Per template column between the jaw ends: lowest mask row (pixel centre) minus the jaw line's y."""
    jaw = lmk[:17][np.argsort(lmk[:17, 0])]
    cols = np.arange(int(np.ceil(jaw[0, 0])) + 2, int(jaw[-1, 0]) - 2)
    jaw_y = np.interp(cols + 0.5, jaw[:, 0], jaw[:, 1])
    low = np.array([np.nonzero(mask[:, x])[0].max() + 0.5 if mask[:, x].any() else np.nan for x in cols])
    return low - jaw_y


def clip_extent(clip: Path, frames: int) -> dict:
    data = clip / "data"
    masks = np.load(data / "pncc_mask.npy", mmap_mode="r")
    lmk, A = np.load(data / "lmk68.npy"), np.load(data / "aligned_transform.npy")
    outside, median, worst = [], [], []
    for i in np.linspace(0, len(lmk) - 1, min(len(lmk), frames)).astype(int):
        t = lmk[i] @ A[i][:, :2].T + A[i][:, 2]  # crop -> template pixels
        m = np.asarray(masks[i]).astype(bool)
        outside.append((m & ~face_mask(t, m.shape[0])).sum() / max(int(m.sum()), 1))
        d = below_jaw(m, t)
        median.append(np.nanmedian(d))
        worst.append(np.nanmax(d))
    return {"outside_hull": float(np.mean(outside)), "below_jaw_median": float(np.median(median)),
            "below_jaw_worst": float(np.max(worst)), "frames": len(outside)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--frames", type=int, default=40)
    args = p.parse_args(argv)
    for clip in args.clips:
        r = clip_extent(clip, args.frames)
        print(f"{clip.name}: {100 * r['outside_hull']:.1f}% of the mask outside the landmark hull; lowest mask "
              f"pixel below the jaw line by {r['below_jaw_median']:+.1f} px (median column), "
              f"{r['below_jaw_worst']:+.1f} px (worst), {r['frames']} frames, template px")
    return 0


if __name__ == "__main__":
    sys.exit(main())

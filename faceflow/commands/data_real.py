"""Annotate every clip of the identity splits (faceflow annotate on each), the real
pseudo-ground-truth pairs DFFNet trains and is evaluated on; then print the per-split counts.
Resumable: finished clips are kept.
"""

from __future__ import annotations

from faceflow.data import splits as _splits


def add_arguments(p) -> None:
    """Options of ``python -m faceflow data real``."""
    p.add_argument("--out", required=True, help="annotated root: one annotate directory per clip (resumable)")
    p.add_argument("--splits", nargs="+", default=list(_splits.SPLITS), choices=list(_splits.SPLITS),
                   help="which identity splits to annotate")
    p.add_argument("--max-frames", type=int, default=300, help="first N frames of each clip (0: all frames)")
    p.add_argument("--gap-stride", type=int, default=4, help="start a temporal-gap pair at every N-th frame")
    p.add_argument("--tiers", nargs="+", default=None, choices=list(_splits.TIERS),
                   help="only clips of these tiers (default: all)")
    p.add_argument("--size", type=int, default=256, help="crop size of the annotations")
    p.add_argument("--previews", type=int, default=6, help="preview PNGs per clip")
    p.add_argument("--media", default=None, help="media root (default: $FACEFLOW_MEDIA or ../shared/media)")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when some clips fail (they are listed)")


def run(args) -> int:
    """Build, then print the per-split counts."""
    from faceflow.data.pseudo import build_real, describe, format_description

    dirs = build_real(args.out, tuple(args.splits), args.max_frames or None, gap_stride=args.gap_stride,
                      size=args.size, previews=args.previews, tiers=args.tiers, media_root=args.media,
                      strict=not args.allow_failures)
    print(format_description(describe(dirs)))
    return 0

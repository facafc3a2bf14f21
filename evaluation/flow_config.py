"""The options of the flow benchmark (:mod:`evaluation.flow_benchmark`): the methods it can run
and :class:`BenchmarkConfig`, kept apart from it (torch, the networks) so the command line lists
them without loading torch."""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from faceflow.runtime.flags import option

# name -> (table label, weights option it needs, needs 3DMeshReg weights)
METHODS = {
    "dffnet": ("DFFNet (PNCC from 3DMeshReg)", "dffnet", True),
    "dffnet_gt_pncc": ("DFFNet (ground-truth PNCC, oracle)", "dffnet", False),
    "dffnet_depth": ("DFFNet, depth-only PNCC (from 3DMeshReg)", "dffnet_depth", True),
    "dffnet_depth_gt_pncc": ("DFFNet, depth-only PNCC (ground truth, oracle)", "dffnet_depth", False),
    "dffnet_nopncc": ("DFFNet without PNCC", "dffnet_nopncc", False),
    # the zero-th step of a classical initialisation (issue 14): DIS's 2D flow, DFFNet's z, no training
    "dis_dffnet_z": ("DIS 2D + DFFNet z (hybrid, no training)", "dffnet", True),
    "fit_difference": ("3DMM fit difference (ITWMM-style)", None, False),
    "dis": ("DIS optical flow (OpenCV, medium)", None, False),
    "farneback": ("Farneback (OpenCV)", None, False),
    "zero": ("Zero flow", None, False),
}


@dataclass
class BenchmarkConfig:
    """Options of one benchmark run (saved in ``results.json``); each field's help is its flag's."""

    out: str = option(MISSING, "output directory (flow_benchmark.md, results.json)", metavar="DIR")
    synthetic: str | None = option(None, "synthetic test dataset directory (with manifest.json)", metavar="DIR")
    real_root: str | None = option(None, "directory of annotated clips (`python -m faceflow annotate` outputs); "
                                         "the test persons' clips are used", metavar="DIR")
    clips: tuple[str, ...] = option((), "annotated clip directories (any complete `faceflow annotate` output: your "
                                        "own footage) evaluated as the real split instead of the test persons",
                                    metavar="DIR")
    all_clips: bool = option(False, "with --real-root: every complete annotated clip under the root, not only "
                                    "the identity split's test persons (the published tables use those)")
    stills: tuple[str, ...] = option((), "still images with a face for the precision rows: each against itself "
                                         "(true flow 0) and against in-plane rigid motions of itself (known flow)",
                                     metavar="IMG")
    precision_motions: int = option(4, "in-plane motions per still (rotation up to 3 degrees about the face, "
                                       "shift up to 4 px)")
    precision_seed: int = option(0, "seed of the precision rows' motions")
    meshreg: str | None = option(None, "3DMeshReg weights (PNCC input of DFFNet)", metavar="W.pt")
    dffnet: str | None = option(None, "DFFNet weights, full PNCC (use_pncc='full')", metavar="W.pt")
    dffnet_depth: str | None = option(None, "DFFNet weights, depth-only PNCC", metavar="W.pt")
    dffnet_nopncc: str | None = option(None, "DFFNet weights without PNCC", metavar="W.pt")
    methods: tuple[str, ...] = option(tuple(METHODS), "methods to run (those without weights are skipped): "
                                      + ", ".join(METHODS), choices=tuple(METHODS), metavar="NAME")
    max_pairs: int | None = option(None, "evaluate at most N evenly spaced pairs of each split (default: all)",
                                   metavar="N")
    batch_size: int = option(4, "pairs per batch")
    device: str = option("cpu", "torch device of the networks, e.g. cpu or cuda:0")
    fit_dense: bool = option(True, "fit_difference: fit the 68 landmarks only (by default also mediapipe's "
                                   "dense points)")
    overwrite: bool = option(False, "discard the per-pair records of an earlier run in --out")

    def __post_init__(self):
        self.methods = tuple(dict.fromkeys(self.methods))  # each method once, in the order given

    def signature(self) -> dict:
        """What the per-pair records depend on (a resumed run must match it; records are kept
        per pair index, so another ``max_pairs`` or method list reuses them)."""
        keep = ("synthetic", "real_root", "clips", "all_clips", "meshreg", "dffnet", "dffnet_depth", "dffnet_nopncc",
                "fit_dense")
        return {k: getattr(self, k) for k in keep}

"""The methods the flow benchmark (:mod:`evaluation.flow_benchmark`) can run, kept apart from it
(torch, the networks) so the command line lists them without loading torch."""

# name -> (table label, weights option it needs, needs 3DMeshReg weights)
METHODS = {
    "dffnet": ("DFFNet (PNCC from 3DMeshReg)", "dffnet", True),
    "dffnet_gt_pncc": ("DFFNet (ground-truth PNCC, oracle)", "dffnet", False),
    "dffnet_depth": ("DFFNet, depth-only PNCC (from 3DMeshReg)", "dffnet_depth", True),
    "dffnet_depth_gt_pncc": ("DFFNet, depth-only PNCC (ground truth, oracle)", "dffnet_depth", False),
    "dffnet_nopncc": ("DFFNet without PNCC", "dffnet_nopncc", False),
    "fit_difference": ("3DMM fit difference (ITWMM-style)", None, False),
    "dis": ("DIS optical flow (OpenCV, medium)", None, False),
    "farneback": ("Farneback (OpenCV)", None, False),
    "zero": ("Zero flow", None, False),
}

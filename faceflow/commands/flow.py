"""3D facial flow between two face images with the shipped (or given) DeepFaceFlow weights.

Writes into --out: flow3d.npy (H, W, 3) and mask.npy on the first image's pixel grid, the same in
the 224x224 registered frame, colour-coded pictures (flow3d.png, flow2d.png), pncc.png, the
3DMeshReg mesh (mesh.obj) and the mesh moved by the flow (mesh_warped.obj / .png), then
manifest.json last (with the command, versions and the weights' sha256).
"""

from __future__ import annotations

import time

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("img1", help="first image (the flow lives on its pixel grid); VIDEO:N takes frame N of a video")
    p.add_argument("img2", help="second image (or VIDEO:N)")
    p.add_argument("--out", required=True, help="output directory (manifest.json is written last)")
    p.add_argument("--weights", default=None,
                   help="directory with meshreg.pt and dffnet.pt (default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--detector", default="mediapipe", choices=["mediapipe", "fan"], help="landmark backend")


def run(args) -> int:
    from faceflow.estimate import FaceFlow, load_input, write_outputs

    clock = Stopwatch()
    img1, img2 = load_input(args.img1), load_input(args.img2)
    clock.lap("inputs")
    ff = FaceFlow.from_pretrained(args.weights, device=args.device, detector=args.detector)
    clock.lap("weights")
    with ff:
        res = ff.estimate(img1, img2)
    clock.lap("estimate")
    out = write_outputs(res, args.out, {"img1": str(args.img1), "img2": str(args.img2), "weights": ff.info,
                                        "seconds": round(clock.total(), 3), "stage_seconds": clock.laps},
                        device=ff.device, inputs={"img1": args.img1, "img2": args.img2})
    mag = np.linalg.norm(res.flow[res.mask], axis=-1)
    print(f"3D flow on {int(res.mask_image.sum())} face pixels of img1 (median |F| {np.median(mag):.2f} px "
          f"in the 224 template) -> {out}")
    return 0


class Stopwatch:
    """Named laps in seconds since the previous lap (the first since construction)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start

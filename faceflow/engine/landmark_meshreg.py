"""Fitting 3DMeshReg from dense landmarks (:class:`faceflow.nets.meshreg.LandmarkMeshReg`, the
``meshreg_landmarks`` weights kind): ``faceflow train meshreg-landmarks``.

1. :func:`gather` runs mediapipe on the registered images of flow datasets (synthetic sets:
   exact meshes; annotated clips: the annotation's fits), both images of every ``stride``-th pair;
2. :func:`fit_landmark_meshreg` solves the linear map in closed form (seconds);
3. :func:`run` validates it on ``val_data`` (mean vertex error, 3D and x, y, template pixels,
   :func:`faceflow.nets.metrics.vertex_errors`) and writes the weights file with its config and
   provenance (data, counts, validation, seconds).

No gradient descent, so no run directory: the whole fit takes minutes on a CPU, most of it in
mediapipe (about 6 ms per image) and in reading the datasets.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from faceflow.engine.dff_options import LandmarkMeshRegConfig
from faceflow.engine.dff_tasks import meshreg_template, open_flow_datasets
from faceflow.engine.weights import save_weights
from faceflow.errors import FaceflowError
from faceflow.geometry.morphable import MorphableModel
from faceflow.nets.meshreg import LandmarkMeshReg, fit_landmark_meshreg
from faceflow.nets.metrics import vertex_errors
from faceflow.runtime.provenance import portable_path, provenance


@dataclass
class Gathered:
    """Dense points (N, J, 3) and meshes (N, V, 3) of the images where mediapipe found a face;
    ``images``: how many images were read, ``missed``: how many had no face."""

    points: torch.Tensor
    meshes: torch.Tensor
    images: int = 0
    missed: int = 0
    datasets: list[str] = field(default_factory=list)


def gather(net: LandmarkMeshReg, paths, stride: int = 1, batch_size: int = 16, model=None,
           desc: str = "images") -> Gathered:
    """Mediapipe's dense points on both registered images of every ``stride``-th pair of the
    datasets ``paths`` (:func:`faceflow.engine.dff_tasks.open_flow_datasets`), with their meshes."""
    ds = open_flow_datasets(paths, model)
    idx = list(range(0, len(ds), int(stride)))
    sub = torch.utils.data.Subset(ds, idx)
    loader = torch.utils.data.DataLoader(sub, batch_size=int(batch_size), num_workers=0)
    pts, meshes, missed = [], [], 0
    with tqdm(total=2 * len(idx), desc=desc, unit="img") as bar:
        for batch in loader:
            images = torch.cat([batch["i1"], batch["i2"]]).float()
            gt = torch.cat([batch["mesh1"], batch["mesh2"]]).float()
            p, found = net.detect_points(images)
            pts.append(p[found])
            meshes.append(gt[found])
            missed += int((~found).sum())
            bar.update(len(images))
    if not pts or sum(len(p) for p in pts) == 0:
        raise FaceflowError(f"mediapipe found no face in any image of {[str(p) for p in paths]}")
    return Gathered(torch.cat(pts), torch.cat(meshes), 2 * len(idx), missed, [Path(p).name for p in paths])


def evaluate_points(net: LandmarkMeshReg, g: Gathered) -> dict[str, float]:
    """Mean vertex error (3D and x, y) of ``net`` on gathered points, in template pixels."""
    with torch.no_grad():
        v3, v2 = vertex_errors(net.from_points(g.points), g.meshes)
    return {"vertex_px": float(v3.mean()), "vertex_px_2d": float(v2.mean()), "images": g.images,
            "missed": g.missed}


def run(cfg: LandmarkMeshRegConfig, command: str | None = None) -> dict:
    """Gather, fit, validate and write ``cfg.out``; returns the weights file's meta."""
    cfg.validate()
    t0 = time.time()
    mm = MorphableModel.load("skin")
    sub = mm.subset("meshreg")
    net = LandmarkMeshReg(len(sub), rank=cfg.rank, template=meshreg_template(mm))
    train = gather(net, cfg.data, cfg.stride, cfg.batch_size, mm, desc="fit data")
    net.encoder, net.decoder = fit_landmark_meshreg(train.points, train.meshes, cfg.ridge, cfg.rank)
    metrics = {"train": evaluate_points(net, train)}
    if cfg.val_data:
        metrics["val"] = evaluate_points(net, gather(net, cfg.val_data, cfg.val_stride, cfg.batch_size, mm,
                                                     desc="val data"))
    record = asdict(cfg)  # the machine's paths left out: the data by portable path, the output by name
    record.update(data=[portable_path(p) for p in cfg.data], val_data=[portable_path(p) for p in cfg.val_data],
                  out=Path(cfg.out).name)
    meta = {"config": record, "data": train.datasets, "fit_images": len(train.points),
            "metrics": metrics, "seconds": round(time.time() - t0, 1),
            "provenance": provenance(command), "triangles": sub.triangles.cpu().tolist()}
    save_weights(net, "meshreg_landmarks", {"num_vertices": len(sub), "rank": cfg.rank}, cfg.out,
                 half=False, meta=meta)
    return meta


__all__ = ["Gathered", "gather", "evaluate_points", "run"]

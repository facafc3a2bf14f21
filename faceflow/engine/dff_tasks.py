"""DeepFaceFlow's training tasks for :mod:`faceflow.engine.trainer`: 3DMeshReg and DFFNet (their options
and presets: :mod:`faceflow.engine.dff_options`).

Both train on flow datasets that follow the pair-sample contract (dict items at the 224
registered template of frame 1: ``i1``, ``i2``, ``pncc``, ``flow``, ``mask``, ``mesh1``,
``mesh2``, ...), opened from directories by :func:`open_flow_dataset`.

- :class:`MeshRegTask` (Sec. 4.1): regress the ``'meshreg'`` mesh (2,713 vertices) of *each*
  image of a pair (i1 -> mesh1 and i2 -> mesh2, concatenated into one batch of 2B images) with
  the loss eq. (4) (:func:`faceflow.nets.meshreg.mesh_loss`). Augmentation: a small random
  similarity per image (+-4 px shift, +-4 % scale, +-4 degrees about the image centre) applied
  identically to the image (:func:`faceflow.face.registration.warp_image`) and the mesh (x, y by the
  similarity, z scaled by its scale: :meth:`faceflow.geometry.similarity.Similarity.apply_3d`), and a
  colour jitter. Validation: mean vertex error in pixels (3D, ``val_metric``) and its x, y part
  (:func:`faceflow.nets.metrics.vertex_errors`).
- :class:`DFFNetTask` (Sec. 4.2): 3D flow with the loss eq. (5)
  (:func:`faceflow.nets.losses.flow_loss`), PNCC from the dataset (``pncc_source='gt'``, our
  documented choice: the paper feeds the 3DMeshReg PNCC at test time; training on the
  ground-truth PNCC decouples the two networks). Augmentation: one colour jitter applied
  identically to i1 and i2 plus a small independent brightness change of i2; the photometric
  term of eq. (5) compares the *un-augmented* images (the augmentation changes the input, not
  the target). Validation: 3D and 2D average end-point error of the finest flow over the mask
  pixels of the whole validation subset (``val_metric`` = 3D AEPE;
  :func:`faceflow.nets.metrics.endpoint_errors`, as in :mod:`evaluation.flow_benchmark`).

Presets (:data:`faceflow.engine.dff_options.PRESETS`), number by number:

==================  =================  ===============================================================
setting             tiny (CPU)         paper (GPU)
==================  =================  ===============================================================
optimizer           Adam (0.9, 0.999)  Adam (0.9, 0.999) -- paper (Sec. 5.2)
lr                  1e-4               1e-4 -- paper; tiny: same (our choice)
batch (global)      8                  16 -- paper; tiny: our choice (fits a CPU step in seconds)
iterations          2,000              300,000 -- paper's training length; tiny: our choice
LR schedule         warm-up, then x0.5 at 50/70/85 % -- our documented reading of Fig. 4
warm-up steps       50                 1,000 -- our choice
MeshReg backbone    resnet18           resnet50 -- paper (ImageNet-initialised there: pass
                                       ``--pretrained`` a local torchvision state dict; we never download)
DFFNet width        0.25               1.0 -- paper's channel counts at 1.0; 0.25 our CPU choice
alpha (eq. (5))     10                 10 -- paper
validation          every 200 steps on 64 pairs / every 5,000 on 1,000 pairs -- our choice
checkpoints         every 100 steps    every 2,000 steps -- our choice
AMP                 off (CPU)          bf16 on CUDA -- our choice
==================  =================  ===============================================================
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn

from faceflow.data.inplane import inplane_motions, inplane_pairs
from faceflow.data.pseudo import KIND_REAL, AnnotatedPairs
from faceflow.data.synthetic import SyntheticPairs
from faceflow.engine.config import TrainConfig
from faceflow.engine.dff_options import (
    DFFNetConfig,
    MeshRegConfig,
    task_config_from_args,
    task_presets,
)
from faceflow.engine.task import SimpleTask, StepContext
from faceflow.errors import FaceflowError
from faceflow.face.registration import template_landmarks, warp_image
from faceflow.geometry.morphable import MorphableModel
from faceflow.geometry.similarity import Similarity, estimate_similarity
from faceflow.nets.dffnet import DFFNet
from faceflow.nets.losses import flow_loss
from faceflow.nets.meshreg import MeshReg, mesh_edges, mesh_loss
from faceflow.nets.metrics import endpoint_errors, vertex_errors
from faceflow.nets.selfsup import self_supervised_loss
from faceflow.ops.opticalflow import dis_flow
from faceflow.render.pncc import pncc_to_points


# ---------------------------------------------------------------------------- datasets
def open_flow_dataset(path: str | Path, model=None):
    """A flow dataset directory -> its Dataset, recognised by ``manifest.json``:
    ``{"kind": "synthetic"}`` -> :class:`faceflow.data.synthetic.SyntheticPairs`; an annotate
    output (``"layout"`` with ``pairs.npy``, either storage form) -> :class:`faceflow.data.pseudo.AnnotatedPairs`
    (``model``: an already loaded 'skin' :class:`~faceflow.geometry.morphable.MorphableModel` to share)."""
    p = Path(path)
    kind = dataset_kind(p)
    if kind == "synthetic":
        return SyntheticPairs(p)
    return AnnotatedPairs([p], model=model)


def dataset_kind(path: str | Path) -> str:
    """``'synthetic'`` or ``'annotated'`` from a dataset directory's manifest."""
    p = Path(path)
    man = p / "manifest.json"
    if not p.is_dir():
        raise FaceflowError(f"dataset directory not found: {p}")
    if not man.is_file():
        raise FaceflowError(f"{p} is not a complete dataset: no manifest.json (still being written, or not "
                            f"made by 'python -m faceflow annotate' / the synthetic data generator)")
    try:
        m = json.loads(man.read_text())
    except (OSError, ValueError) as e:
        raise FaceflowError(f"{man}: unreadable manifest: {e}") from e
    if isinstance(m, dict) and m.get("kind") == "synthetic":
        return "synthetic"
    layout = (m.get("layout") or {}) if isinstance(m, dict) else {}
    if "pairs.npy" in layout or "flow.npy" in layout:  # full or compact storage
        return "annotated"
    raise FaceflowError(f"{p}: manifest.json describes neither a synthetic flow dataset (kind 'synthetic') "
                        f"nor an annotated video (layout with pairs.npy or flow.npy)")


def expand_data_paths(paths) -> list[Path]:
    """``--data`` entries -> dataset directories: an ``annotate-dataset`` OUT_DIR becomes its done
    videos, a split list (``OUT_DIR/splits/train.txt``) the folders it names
    (:func:`faceflow.data.annotate_dataset.dataset_videos`); other directories stay as they are."""
    from faceflow.data.annotate_dataset import dataset_videos

    out = [d for p in paths or [] for d in dataset_videos(p)]
    if paths and not out:
        raise FaceflowError(f"the data {[str(p) for p in paths]} name no annotated video (an empty split list?)")
    return out


def open_flow_datasets(paths, model=None) -> torch.utils.data.Dataset | None:
    """Several dataset directories as one Dataset (annotated clips grouped into one
    ``AnnotatedPairs``, synthetic sets each on their own, concatenated); None for no paths.
    Entries are expanded by :func:`expand_data_paths` (annotate-dataset outputs and split lists)."""
    paths = expand_data_paths(paths)
    if not paths:
        return None
    annotated = [p for p in paths if dataset_kind(p) == "annotated"]
    parts = [open_flow_dataset(p, model) for p in paths if p not in annotated]
    if annotated:
        parts.append(AnnotatedPairs(annotated, model=model))
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


def _needs_model(cfg: TrainConfig) -> bool:
    """Whether any dataset directory of ``cfg`` is an annotated clip (AnnotatedPairs loads the model)."""
    return any(dataset_kind(p) == "annotated" for p in expand_data_paths(list(cfg.data) + list(cfg.val_data)))


# ---------------------------------------------------------------------------- augmentation
def color_jitter(images: torch.Tensor, u: torch.Tensor, strength: float) -> torch.Tensor:
    """Pointwise colour change of ``images`` (N, 3, H, W) in [0, 1] by ``u`` (N, 3) uniform [0, 1):
    brightness x (1 + s(2u0 - 1)), contrast about 0.5 by (1 + s(2u1 - 1)), saturation about the
    pixel's luminance by (1 + s(2u2 - 1)); clamped to [0, 1]. The same u gives the same
    per-pixel map on every image (used identically on i1 and i2)."""
    if strength <= 0:
        return images
    k = (1 + strength * (2 * u[:, :3] - 1)).to(images.dtype).view(-1, 3, 1, 1, 1)
    x = images * k[:, 0]
    x = (x - 0.5) * k[:, 1] + 0.5
    lum = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    gray = (x * lum).sum(1, keepdim=True)
    x = (x - gray) * k[:, 2] + gray
    return x.clamp(0, 1)


def jitter_similarities(u: torch.Tensor, size: tuple[int, int], shift: float, scale: float, angle_deg: float):
    """One random similarity per row of ``u`` (N, 4) uniform [0, 1): shift +-``shift`` px in x
    and y, scale 1 +- ``scale``, rotation +- ``angle_deg`` about the image centre."""

    H, W = size
    out = []
    for dx, dy, ds, da in (2 * u[:, :4].double().cpu() - 1).tolist():
        about = Similarity.about((W / 2, H / 2), 1 + scale * ds, math.radians(angle_deg) * da)
        out.append(Similarity.from_params(1.0, 0.0, (shift * dx, shift * dy)) @ about)
    return out


# ---------------------------------------------------------------------------- 3DMeshReg
def meshreg_template(model, size: int = 224, vertices: torch.Tensor | None = None) -> torch.Tensor:
    """(V, 3) float32: the mean face's ``'meshreg'`` vertices (or the model vertices ``vertices``)
    placed in the ``size`` template.

    The mean face is projected frontally (p = C S, C = diag(1, -1, -1): x right, y down, depth
    z = -Z) and mapped by the similarity that best aligns its 68 landmarks to
    :func:`faceflow.face.registration.template_landmarks` (x, y by the similarity, z scaled by its
    scale: the depth origin is the model's origin)."""

    mean = model.mean.detach().double().cpu()
    proj = mean * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    sim = estimate_similarity(proj[model.lmk68.cpu(), :2].numpy(), template_landmarks(size))
    idx = model.subset("meshreg").indices if vertices is None else torch.as_tensor(vertices)
    return sim.apply_3d(proj[idx.long().cpu()]).float()


def _split_pairs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    for k in ("i1", "i2", "mesh1", "mesh2"):
        if k not in batch:
            raise FaceflowError(f"meshreg training needs {k!r} in every sample (pair-sample contract)")
    return torch.cat([batch["i1"], batch["i2"]]), torch.cat([batch["mesh1"], batch["mesh2"]])


class _TaskOptions(SimpleTask):
    """The command line of a DeepFaceFlow task, all from :mod:`faceflow.engine.dff_options`: its
    presets, its flags and its config built from parsed arguments (``config_class``)."""

    config_class: type

    @classmethod
    def presets(cls) -> dict:
        return task_presets(cls.name)

    @classmethod
    def from_args(cls, args, preset_task: dict) -> "_TaskOptions":
        return cls(task_config_from_args(cls.name, cls.config_class, args, preset_task))


class MeshRegTask(_TaskOptions):
    """Train 3DMeshReg (DeepFaceFlow Sec. 4.1): image -> 2,713-vertex face mesh, loss eq. (4).

    Each pair contributes its two images (i1 -> mesh1, i2 -> mesh2)."""

    name = "meshreg"
    config_class = MeshRegConfig

    def __init__(self, config: MeshRegConfig | None = None, morphable=None):
        super().__init__((config or MeshRegConfig()).validate())
        self._morphable = morphable
        self._edges: torch.Tensor | None = None
        self._num_vertices: int | None = None

    def _model(self):
        if self._morphable is None:
            self._morphable = MorphableModel.load("skin")
        return self._morphable

    # ---- harness hooks
    def datasets(self, cfg: TrainConfig):
        mm = self._model() if _needs_model(cfg) else None
        return open_flow_datasets(cfg.data, mm), open_flow_datasets(cfg.val_data, mm)

    def build_model(self) -> nn.Module:

        mm = self._model()
        sub = mm.subset("meshreg")
        self._edges = mesh_edges(sub.triangles.cpu())
        self._num_vertices = len(sub)
        return MeshReg(num_vertices=len(sub), backbone=self.config.backbone,
                       pretrained_path=self.config.pretrained_path, template=meshreg_template(mm))

    def augment(self, images: torch.Tensor, meshes: torch.Tensor, ctx: StepContext):
        """Jitter (N = 2b images: i1s then i2s) with per-sample randomness from ``ctx.rand``."""
        c = self.config
        b = images.shape[0] // 2
        u = ctx.rand(14).to(images.device)  # per pair: 4 + 3 for i1, 4 + 3 for i2
        u = torch.cat([u[:, :7], u[:, 7:]])  # (2b, 7) aligned with the concatenation
        if c.jitter_shift > 0 or c.jitter_scale > 0 or c.jitter_angle > 0:
            sims = jitter_similarities(u[:, :4], tuple(images.shape[-2:]), c.jitter_shift, c.jitter_scale,
                                       c.jitter_angle)
            images = warp_image(images, sims, tuple(images.shape[-2:]), border="border")
            meshes = torch.stack([s.apply_3d(m) for s, m in zip(sims, meshes)])
        images = color_jitter(images, u[:, 4:7], c.color_jitter)
        assert images.shape[0] == 2 * b
        return images, meshes

    def loss(self, model: nn.Module, batch: dict, ctx: StepContext):

        images, meshes = _split_pairs(batch)
        images, meshes = self.augment(images.float(), meshes.float(), ctx)
        with ctx.autocast():
            pred = model(images)
        pred = pred.float()
        loss = mesh_loss(pred, meshes, self._edges.to(pred.device), self.config.edge_weight)  # eq. (4)
        with torch.no_grad():
            err = vertex_errors(pred, meshes)[0].mean()
        return loss, {"vertex_px": err}

    def validate(self, models, loader, ctx: StepContext) -> dict[str, float]:

        model = models["net"]
        e3 = e2 = 0.0
        n = 0
        for batch in loader:
            images, meshes = _split_pairs(batch)
            images, meshes = images.to(ctx.device).float(), meshes.to(ctx.device).float()
            with ctx.autocast():
                pred = model(images)
            v3, v2 = vertex_errors(pred.float(), meshes)
            e3 += float(v3.sum())
            e2 += float(v2.sum())
            n += images.shape[0]
        return {"val_metric": e3 / max(n, 1), "vertex_px": e3 / max(n, 1), "vertex_px_2d": e2 / max(n, 1)}

    def export_spec(self, models) -> dict:
        # the triangles travel with the weights, so inference needs no morphable-model files
        tris = self._model().subset("meshreg").triangles.cpu().tolist()
        return {"model": "net", "kind": "meshreg",
                "config": {"num_vertices": int(models["net"].num_vertices), "backbone": self.config.backbone},
                "meta": {"triangles": tris}}



# ---------------------------------------------------------------------------- DFFNet
def _check_flow_batch(batch: dict, need_pncc: bool) -> None:
    for k in ("i1", "i2", "flow", "mask") + (("pncc",) if need_pncc else ()):
        if k not in batch:
            raise FaceflowError(f"dffnet training needs {k!r} in every sample (pair-sample contract)")


# DFFNet options added after the first training runs, with the value that means "not used"
_ADDED_LATER = {"init": "none", "decompose": False, "head_weight": 1.0, "inplane": 0.0, "inplane_shift": 5.0,
                "inplane_angle": 4.0, "self_weight": 0.0, "smooth_weight": 0.5, "pseudo_weight": 1.0,
                "photo_weight": 0.0}
# an option that only matters when another is on (kept in the record then, even at its default)
_DEPENDS_ON = {"head_weight": "decompose", "inplane_shift": "inplane", "inplane_angle": "inplane",
               "smooth_weight": "self_weight", "photo_weight": "self_weight"}
# ``kind`` of an in-plane pair made in a training batch (synthetic 0, real KIND_REAL = 1)
KIND_INPLANE = 2


def _real_rows(batch: dict) -> torch.Tensor:
    """(B,) bool: the pairs whose flow is pseudo ground truth (``kind`` real)."""
    kind = batch.get("kind")
    if kind is None:
        return torch.zeros(batch["i1"].shape[0], dtype=torch.bool, device=batch["i1"].device)
    return (kind == KIND_REAL).to(batch["i1"].device)


def _replace_rows(x: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[rows.to(x.device)] = values.to(device=x.device, dtype=x.dtype)
    return out



class DFFNetTask(_TaskOptions):
    """Train DFFNet (DeepFaceFlow Sec. 4.2): (I1, I2, PNCC of I1) -> 3D flow, loss eq. (5)."""

    name = "dffnet"
    config_class = DFFNetConfig

    def __init__(self, config: DFFNetConfig | None = None, morphable=None):
        super().__init__((config or DFFNetConfig()).validate())
        self._morphable = morphable

    def datasets(self, cfg: TrainConfig):
        if self._morphable is None and _needs_model(cfg):  # one load shared by the annotated sets
            self._morphable = MorphableModel.load("skin")
        return open_flow_datasets(cfg.data, self._morphable), open_flow_datasets(cfg.val_data, self._morphable)

    def build_model(self) -> nn.Module:
        c = self.config
        return DFFNet(use_pncc=c.use_pncc, width=c.width, max_displacement=int(c.max_displacement),
                      stride2=int(c.stride2), init=c.init, decompose=c.decompose)

    def config_dict(self) -> dict:
        """The task config for the run's record; the options added after the first runs only when
        they are not their default (so runs made before them still resume)."""
        d = super().config_dict()
        for key, absent in _ADDED_LATER.items():
            if d.get(key) == absent and not d.get(_DEPENDS_ON.get(key, "")):
                d.pop(key, None)
        return d

    def _init_in(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple:
        """The extra input of a classical start (``init='dis'``: DIS on the images the network sees);
        none for the paper's network."""
        return (dis_flow(x1, x2),) if self.config.init == "dis" else ()

    def _pncc_in(self, batch):
        return None if self.config.use_pncc == "none" else batch["pncc"].float()

    def augment(self, i1: torch.Tensor, i2: torch.Tensor, ctx: StepContext):
        """Identical colour jitter of i1 and i2, then an independent brightness change of i2."""
        u = ctx.rand(4).to(i1.device)
        x1 = color_jitter(i1, u[:, :3], self.config.color_jitter)
        x2 = color_jitter(i2, u[:, :3], self.config.color_jitter)
        if self.config.brightness > 0:
            k = 1 + self.config.brightness * (2 * u[:, 3] - 1)
            x2 = (x2 * k.view(-1, 1, 1, 1).to(x2.dtype)).clamp(0, 1)
        return x1, x2

    def loss(self, model: nn.Module, batch: dict, ctx: StepContext):

        _check_flow_batch(batch, True)
        batch = self._with_inplane_pairs(batch, ctx.rand(9)[:, 4:].cpu())
        i1, i2, pncc = batch["i1"].float(), batch["i2"].float(), batch["pncc"].float()
        x1, x2 = self.augment(i1, i2, ctx)
        with ctx.autocast():
            out = model(x1, x2, self._pncc_in(batch), *self._init_in(x1, x2), **self._parts())
        preds, heads = out if self.config.decompose else (out, None)
        preds = [p.float() for p in preds]
        H, W = i1.shape[-2:]
        points = pncc_to_points(pncc.permute(0, 2, 3, 1), (H, W))
        # mask pixels without PNCC (the mask's face subset is larger than the PNCC's meshreg subset):
        # NaN points are dropped by warp_by_flow instead of being read as the point (0, 0, D/2)
        points = torch.where((pncc.amax(1) > 0).unsqueeze(-1), points, torch.full_like(points, float("nan")))
        total, logged = self._flow_terms(preds, batch, points)
        if heads is not None:
            head_total, head_epe = self._head_loss([h.float() for h in heads], batch)
            total = total + self.config.head_weight * head_total
            logged["epe_head"] = head_epe
        return total, logged

    def _flow_terms(self, preds: list[torch.Tensor], batch: dict, points: torch.Tensor):
        """Eq. (5) on every pair, its end-point terms weighted by ``pseudo_weight`` on real pairs
        (pseudo ground truth); plus the self-supervised loss on real pairs (``self_weight``)."""
        c = self.config
        i1, i2 = batch["i1"].float(), batch["i2"].float()
        real = _real_rows(batch)
        mask = batch["mask"].bool()
        weight = torch.where(real, torch.full_like(real, c.pseudo_weight, dtype=torch.float32), torch.ones_like(
            real, dtype=torch.float32))
        total, parts = flow_loss(preds, batch["flow"].float(), mask, c.scale_weights,  # eq. (5)
                                 i1=i1, i2=i2, pncc_points=points, alpha=c.alpha, pair_weights=weight)
        logged = {"epe": parts["epe"], "epe_full": parts[f"epe_{len(preds) - 1}"], "photometric": parts["photometric"]}
        if c.self_weight > 0:  # logged at every step (0 when the batch holds no real pair)
            rows = real.nonzero().flatten()
            zero = total.new_zeros(())
            own, sparts = (zero, {"census": zero, "smooth": zero, "photo": zero}) if len(rows) == 0 else \
                self_supervised_loss(preds[-1][rows], i1[rows], i2[rows], points[rows], mask[rows], c.smooth_weight,
                                     photo_weight=c.photo_weight)
            total = total + c.self_weight * own * (len(rows) / len(real))
            logged.update(census=sparts["census"], smooth=sparts["smooth"])
            if c.photo_weight > 0:
                logged["photo"] = sparts["photo"]
        return total, logged

    def _with_inplane_pairs(self, batch: dict, u: torch.Tensor) -> dict:
        """The batch with the rows where ``u[:, 0] < inplane`` made in-plane pairs
        (:mod:`faceflow.data.inplane`): frame 2 = frame 1 moved rigidly in the image plane, its
        exact flow (head-motion flow = flow), no longer a real pair. ``u`` (B, 5) uniform."""
        c = self.config
        rows = (u[:, 0] < c.inplane).nonzero().flatten() if c.inplane > 0 else u.new_zeros(0, dtype=torch.long)
        if len(rows) == 0:
            return batch
        i1 = batch["i1"][rows].float()
        motions = inplane_motions(u[rows, 1:5], tuple(i1.shape[-2:]), c.inplane_shift, c.inplane_angle,
                                  identical=0.25)
        i2, flow = inplane_pairs(i1, motions)
        out = dict(batch)
        out["i2"] = _replace_rows(batch["i2"], rows, i2)
        out["flow"] = _replace_rows(batch["flow"], rows, flow)
        if "head_flow" in batch:
            out["head_flow"] = _replace_rows(batch["head_flow"], rows, flow)
            out["has_head_flow"] = _replace_rows(batch["has_head_flow"], rows, torch.ones(len(rows), dtype=torch.bool))
        if "kind" in batch:
            out["kind"] = _replace_rows(batch["kind"], rows, torch.full((len(rows),), KIND_INPLANE))
        return out

    def _parts(self) -> dict:
        return {"parts": True} if self.config.decompose else {}

    def _head_loss(self, heads: list[torch.Tensor], batch: dict):
        """The end-point term of eq. (5) on the head-motion flow, over the pairs that have one
        (``has_head_flow``); zero when none of the batch has."""
        has = batch.get("has_head_flow")
        if "head_flow" not in batch or has is None or not bool(has.any()):
            zero = heads[-1].sum() * 0
            return zero, zero.detach()
        mask = batch["mask"].bool() & has.bool().view(-1, 1, 1)
        total, parts = flow_loss(heads, batch["head_flow"].float(), mask, self.config.scale_weights, alpha=0.0)
        return total, parts[f"epe_{len(heads) - 1}"]

    def validate(self, models, loader, ctx: StepContext) -> dict[str, float]:

        model = models["net"]
        s3 = s2 = sh = 0.0
        n = nh = 0
        for batch in loader:
            _check_flow_batch(batch, self.config.use_pncc != "none")
            i1, i2 = batch["i1"].to(ctx.device).float(), batch["i2"].to(ctx.device).float()
            pncc = None if self.config.use_pncc == "none" else batch["pncc"].to(ctx.device).float()
            with ctx.autocast():
                out = model(i1, i2, pncc, *self._init_in(i1, i2), **self._parts())
            flows, heads = out if self.config.decompose else (out, None)
            pred, gt, m = flows[-1].float().permute(0, 2, 3, 1), batch["flow"].to(ctx.device).float(), batch["mask"]
            sums3, count = endpoint_errors(pred, gt, m, 3)
            s3 += float(sums3.sum())
            s2 += float(endpoint_errors(pred, gt, m, 2)[0].sum())
            n += int(count.sum())
            if heads is not None and "has_head_flow" in batch:
                hm = m.bool() & batch["has_head_flow"].bool().view(-1, 1, 1)
                hsum, hcount = endpoint_errors(heads[-1].float().permute(0, 2, 3, 1),
                                               batch["head_flow"].to(ctx.device).float(), hm, 3)
                sh, nh = sh + float(hsum.sum()), nh + int(hcount.sum())
        res = {"val_metric": s3 / max(n, 1), "aepe_3d": s3 / max(n, 1), "aepe_2d": s2 / max(n, 1)}
        if self.config.decompose:  # over the pairs that have a head-motion flow (head_pixels: how many pixels)
            res.update(aepe_head_3d=sh / max(nh, 1), head_pixels=nh)
        return res

    def export_spec(self, models) -> dict:
        return {"model": "net", "kind": "dffnet",
                "config": {"use_pncc": self.config.use_pncc, "width": float(self.config.width),
                           "max_displacement": int(self.config.max_displacement), "stride2": int(self.config.stride2),
                           **({"init": self.config.init} if self.config.init != "none" else {}),
                           **({"decompose": True} if self.config.decompose else {})}}



__all__ = ["MeshRegTask", "MeshRegConfig", "DFFNetTask", "DFFNetConfig", "meshreg_template", "color_jitter",
           "jitter_similarities", "open_flow_dataset", "open_flow_datasets", "dataset_kind"]

"""From two face images to dense 3D facial flow in one call: the DeepFaceFlow pipeline (Sec. 4).

    from faceflow import FaceFlow
    ff = FaceFlow.from_pretrained()          # the weights shipped in faceflow/weights/
    out = ff.estimate(img1, img2)            # RGB uint8 arrays (H, W, 3) or image paths

Stages, for a pair (I1, I2):

1. landmarks: the 68 landmarks of I1 (:func:`faceflow.face.landmarks.detect_image`, the largest face);
2. registration: the similarity T that maps I1's landmarks onto the 224x224 template
   (:func:`faceflow.face.registration.register_landmarks`); BOTH images are warped with I1's T, so I2 is
   expressed in I1's registered frame and the flow contains the head motion;
3. 3DMeshReg (Sec. 4.1): the image-space mesh of I1 (the ``meshreg`` vertex subset) regressed
   from the registered I1 (shipped: :class:`faceflow.nets.meshreg.LandmarkMeshReg`, mediapipe's
   dense landmarks of the registered I1 through a linear map; or the paper's image regressor
   :class:`faceflow.nets.meshreg.MeshReg`);
4. PNCC (eq. (3)): that mesh rasterised with its normalised-coordinate colours (camera-free: the
   mesh is already in image space);
5. DFFNet (Sec. 4.2): the 3D flow at every pixel of the registered I1 from (I1, I2, PNCC); its
   finest output is the estimate. The flow is valid on the PNCC mask (the visible face).

The result holds the flow in the registered frame and mapped back to I1's pixel grid
(:func:`faceflow.face.registration.flow_to_image`: x, y and z scaled by 1 / template scale), the mesh
in both frames, the PNCC and the registered images. :meth:`FaceFlow.estimate_registered` is the
batched network part on already registered tensors; :meth:`FaceFlow.estimate_pairs` the batched
version for many image pairs (e.g. video frames, with landmarks from a tracker).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from faceflow.engine.weights import load_weights
from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.face.landmarks import MediapipeDetector, NoFaceError, detect_image, make_detector
from faceflow.face.pair_check import MAX_SHIFT_IOD, check_pair, landmark_shift
from faceflow.face.registration import TEMPLATE_SIZE, flow_to_image, register_landmarks, warp_image
from faceflow.geometry.morphable import MorphableModel
from faceflow.geometry.similarity import Similarity
from faceflow.io import read_image
from faceflow.nets.modules import resolve_device
from faceflow.ops.opticalflow import dis_flow
from faceflow.ops.sampling import sample_points
from faceflow.render.pncc import pncc as render_pncc
from faceflow.render.rasterize import rasterize
from faceflow.runtime.assets import WEIGHTS_DIR

MESHREG_FILE = "meshreg.pt"
DFFNET_FILE = "dffnet.pt"


@dataclass
class FlowResult:
    """3D facial flow of one pair, I1 -> I2 (DeepFaceFlow's output).

    Registered frame (224x224 template of I1): ``flow`` (224, 224, 3) float32 pixels (dx, dy right
    and down, dz depth; eq. (2) convention p2 - p1), ``mask`` (224, 224) bool, ``mesh`` (V, 3)
    float32 the 3DMeshReg mesh of I1, ``pncc`` (224, 224, 3) float32 in [0, 1], ``registered1`` /
    ``registered2`` (224, 224, 3) uint8.
    I1's pixel grid (H, W): ``flow_image`` (H, W, 3), ``mask_image`` (H, W) bool, ``mesh_image``
    (V, 3) (z scaled like x, y). ``transform``: the I1 -> template similarity; ``landmarks``
    (68, 2) of I1; ``triangles`` (F, 3) int64 of the mesh.
    Decomposed weights (``faceflow train dffnet --decompose``) also give the rigid head-motion flow
    and the expression flow, whose sum is ``flow``: ``head_flow`` / ``expression_flow`` (224, 224, 3)
    and ``head_flow_image`` / ``expression_flow_image`` (H, W, 3); None for other weights.
    ``shift``: the mean distance between the two faces' registered landmarks in inter-ocular
    distances (:func:`landmark_shift`) when image 2's landmarks were known, else None.
    """

    flow: np.ndarray
    mask: np.ndarray
    mesh: np.ndarray
    pncc: np.ndarray
    registered1: np.ndarray
    registered2: np.ndarray
    flow_image: np.ndarray
    mask_image: np.ndarray
    mesh_image: np.ndarray
    transform: Similarity
    landmarks: np.ndarray
    triangles: np.ndarray = field(repr=False)
    head_flow: np.ndarray | None = field(default=None, repr=False)
    expression_flow: np.ndarray | None = field(default=None, repr=False)
    head_flow_image: np.ndarray | None = field(default=None, repr=False)
    expression_flow_image: np.ndarray | None = field(default=None, repr=False)
    shift: float | None = None

    @property
    def flow2d_image(self) -> np.ndarray:
        """(H, W, 2) the 2D optical flow in I1's pixels (the x, y part of the 3D flow)."""
        return self.flow_image[..., :2]



def _as_rgb(image, what: str) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from an array or an image path."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    if torch.is_tensor(image):
        raise FaceflowError(f"{what}: pass a numpy RGB image (H, W, 3) uint8 or a path, not a tensor "
                            f"(use estimate_registered for registered tensors)")
    if not isinstance(image, np.ndarray):
        raise FaceflowError(f"{what}: expected an RGB image array (H, W, 3) or a path, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 16:
        raise FaceflowError(f"{what}: expected an RGB image (H, W, 3) of at least 16x16, got {image.shape}")
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and np.nanmax(image) <= 1.0:
            image = np.clip(image * 255.0 + 0.5, 0, 255)
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


class FaceFlow:
    """The DeepFaceFlow estimator: 3DMeshReg + PNCC + DFFNet (see the module docstring).

    Args:
        meshreg: a :class:`faceflow.nets.MeshReg`; dffnet: a :class:`faceflow.nets.DFFNet`;
        triangles: (F, 3) triangles of the regressed mesh (the morphable model's ``meshreg``
        subset, see :func:`meshreg_triangles`); device: 'auto' | 'cpu' | 'cuda'; detector: landmark
        backend for images ('mediapipe', 'fan' or 'dlib', see :func:`faceflow.face.landmarks.make_detector`).
        ``meshreg`` and ``triangles`` may be None for network-only use (evaluation):
        :meth:`estimate_registered` then needs a given PNCC, or a DFFNet without the PNCC branch
        (``use_pncc='none'``); :meth:`estimate` needs 3DMeshReg.
    """

    def __init__(self, meshreg: torch.nn.Module | None, dffnet: torch.nn.Module, triangles, *,
                 device: str | torch.device | None = "auto", detector: str = "mediapipe"):
        self.device = resolve_device(device)
        self.meshreg = meshreg.to(self.device).eval() if meshreg is not None else None
        self.dffnet = dffnet.to(self.device).eval()
        self.triangles = None
        if meshreg is not None or triangles is not None:
            if triangles is None:
                raise FaceflowError("FaceFlow with a 3DMeshReg needs the triangles of its mesh")
            self.triangles = torch.as_tensor(np.asarray(triangles), dtype=torch.long, device=self.device)
            if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
                raise FaceflowError(f"triangles must be (F, 3), got {tuple(self.triangles.shape)}")
        nv = getattr(meshreg, "num_vertices", None)
        if nv is not None and int(self.triangles.max()) >= nv:
            raise FaceflowError(f"triangles index vertex {int(self.triangles.max())} but 3DMeshReg regresses {nv}")
        self.detector_name = detector
        self._detector = None
        self.size = TEMPLATE_SIZE
        self.info: dict = {}
        self.weights_files: dict[str, Path] = {}  # {"meshreg", "dffnet": weights file} (from_pretrained)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, device: str | torch.device | None = "auto",
                        detector: str = "mediapipe", meshreg: str | Path | None = None,
                        dffnet: str | Path | None = None) -> "FaceFlow":
        """Load 3DMeshReg and DFFNet weights (``faceflow.engine.weights`` files).

        ``path``: a directory holding ``meshreg.pt`` and ``dffnet.pt`` (default: the weights
        shipped in ``faceflow/weights/``); ``meshreg`` / ``dffnet`` override either file.
        The mesh triangles come from the weights file (no morphable-model assets needed); older
        files without them fall back to the ICT model's ``meshreg`` subset.
        """
        root = Path(path) if path is not None else WEIGHTS_DIR
        files = {"meshreg": Path(meshreg) if meshreg else root / MESHREG_FILE,
                 "dffnet": Path(dffnet) if dffnet else root / DFFNET_FILE}
        for kind, f in files.items():
            if not f.is_file():
                raise AssetNotFoundError(
                    f"{kind} weights not found at {f}. The shipped weights live in {WEIGHTS_DIR}; to make your "
                    f"own: python -m faceflow train {kind} --preset tiny --data DATA --out RUN, then "
                    f"python -m faceflow train export RUN --out {f.name}")

        dev = resolve_device(device)
        m = load_weights(files["meshreg"], device=dev)
        d = load_weights(files["dffnet"], device=dev)
        meta_m = m.weights_meta
        ff = cls(m, d, meshreg_triangles(m), device=dev, detector=detector)
        ff.info = {"meshreg": str(files["meshreg"]), "dffnet": str(files["dffnet"]),
                   "meshreg_meta": {k: v for k, v in meta_m.items() if k != "triangles"},
                   "dffnet_meta": d.weights_meta}
        ff.weights_files = dict(files)
        return ff

    # ------------------------------------------------------------------ network part
    def init_inputs(self, i1: torch.Tensor, i2: torch.Tensor) -> tuple:
        """DFFNet's inputs beyond (I1, I2, PNCC): a classical start (``init='dis'``) takes DIS's
        flow (B, 2, H, W) of the registered images (B, 3, H, W) as a fourth; other networks none."""
        return (dis_flow(i1, i2),) if getattr(self.dffnet, "init", "none") == "dis" else ()

    @torch.no_grad()
    def estimate_registered(self, i1: torch.Tensor, i2: torch.Tensor, pncc: torch.Tensor | None = None
                            ) -> dict[str, torch.Tensor | None]:
        """Batched network part on registered images.

        i1, i2: (B, 3, 224, 224) float in [0, 1] (I2 already in I1's registered frame).
        Returns ``flow`` (B, 224, 224, 3) pixels (0 off the mask), ``mask`` (B, 224, 224) bool,
        ``mesh`` (B, V, 3) the 3DMeshReg mesh of I1 (224 pixels), ``pncc`` (B, 3, 224, 224), and
        ``dense_flow`` (B, 224, 224, 3): DFFNet's finest prediction at every pixel (``flow`` is
        it on the mask).

        ``pncc`` (B, 3, 224, 224), optional: fed to DFFNet instead of the PNCC of 3DMeshReg's
        mesh (e.g. the ground-truth PNCC, an oracle in evaluation); 3DMeshReg is not run
        (``mesh`` None) and the mask is the PNCC's face (its nonzero pixels). Without 3DMeshReg
        and without a ``pncc``, a DFFNet with ``use_pncc='none'`` runs alone: ``mesh`` and
        ``pncc`` are None and the mask is every pixel (no face is known). A decomposed network adds
        ``head_flow`` and ``expression_flow`` (masked like ``flow``) and ``dense_head_flow``.
        """

        for name, t in (("i1", i1), ("i2", i2)) + ((("pncc", pncc),) if pncc is not None else ()):
            if not torch.is_tensor(t) or t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
                raise FaceflowError(f"estimate_registered: {name} must be a float tensor (B, 3, H, W) in [0, 1], "
                                    f"got {getattr(t, 'shape', type(t))}")
        if i1.shape != i2.shape or (pncc is not None and pncc.shape != i1.shape):
            raise FaceflowError(f"estimate_registered: i1 {tuple(i1.shape)}, i2 {tuple(i2.shape)}"
                                + ("" if pncc is None else f" and pncc {tuple(pncc.shape)}") + " differ")
        if tuple(i1.shape[-2:]) != (self.size, self.size):
            raise FaceflowError(f"estimate_registered expects {self.size}x{self.size} registered images, "
                                f"got {tuple(i1.shape[-2:])}")
        use_pncc = getattr(self.dffnet, "use_pncc", "full")
        if pncc is None and self.meshreg is None and use_pncc != "none":
            raise FaceflowError(f"estimate_registered: without 3DMeshReg a DFFNet with use_pncc={use_pncc!r} "
                                "needs a pncc")
        i1 = i1.to(self.device, torch.float32)
        i2 = i2.to(self.device, torch.float32)
        mesh = None
        if pncc is not None:
            pncc = pncc.to(self.device, torch.float32)
            mask = pncc.amax(1) > 0                                          # eq. (3) is 0 off the face
        elif self.meshreg is not None:
            mesh = self.meshreg(i1)                                          # Sec. 4.1: (B, V, 3)
            # eq. (3), back faces culled as in the training data (annotate, synthetic)
            code, mask = render_pncc(mesh, self.triangles, (self.size, self.size), cull_backfaces=True)
            pncc = code.permute(0, 3, 1, 2).contiguous()
        else:
            mask = torch.ones(i1.shape[0], self.size, self.size, dtype=torch.bool, device=self.device)
        init = self.init_inputs(i1, i2)
        on_face = lambda f: torch.where(mask.unsqueeze(-1), f, torch.zeros_like(f))
        if getattr(self.dffnet, "decompose", False):  # the head-motion and expression flows too
            flows, heads = self.dffnet(i1, i2, pncc, *init, parts=True)
            dense, head = flows[-1].permute(0, 2, 3, 1), heads[-1].permute(0, 2, 3, 1)
            parts = {"head_flow": on_face(head), "expression_flow": on_face(dense - head), "dense_head_flow": head}
        else:
            dense, parts = self.dffnet(i1, i2, pncc, *init)[-1].permute(0, 2, 3, 1), {}  # Sec. 4.2: finest
        return {"flow": on_face(dense), "mask": mask, "mesh": mesh, "pncc": pncc, "dense_flow": dense, **parts}

    # ------------------------------------------------------------------ images
    def _landmarks(self, image: np.ndarray, what: str) -> np.ndarray:

        if self._detector is None:
            self._detector = (MediapipeDetector(static_image_mode=True) if self.detector_name == "mediapipe"
                              else make_detector(self.detector_name))
        try:
            return detect_image(image, self._detector, choose="largest").lmk68
        except NoFaceError as e:
            raise NoFaceError(f"{what}: {e}") from e

    def close(self) -> None:
        """Release the landmark detector."""
        if self._detector is not None and hasattr(self._detector, "close"):
            self._detector.close()
        self._detector = None

    def estimate(self, img1, img2, landmarks1=None, *, check: bool = True, max_shift: float = MAX_SHIFT_IOD
                 ) -> FlowResult:
        """3D flow from ``img1`` to ``img2``: RGB uint8 arrays (H, W, 3) or image paths (the
        two may differ in size; the flow lives on img1's grid). ``landmarks1`` (68, 2) skips
        detection. Raises :class:`faceflow.face.landmarks.NoFaceError` (naming the image) when
        img1 has no face, or, with ``check``, img2 has none; with ``check``,
        :class:`PairMismatchError` when img2's face is not img1's in a comparable position
        (registered landmarks more than ``max_shift`` inter-ocular distances apart on average;
        ``check=False`` proceeds anyway, as ``faceflow flow --force``)."""
        return self.estimate_pairs([img1], [img2], None if landmarks1 is None else [landmarks1],
                                   check=check, max_shift=max_shift)[0]

    def _pair_landmarks(self, a: list, b: list, chunk: range, landmarks1, landmarks2, check: bool):
        """The 68 landmarks of each pair's image 1 (given or detected) and, when given or
        ``check``, image 2's (else None)."""
        lm1 = [np.asarray(landmarks1[k], np.float64) if landmarks1 is not None
               else self._landmarks(a[j], f"image 1 of pair {k}" if len(chunk) > 1 or k else "image 1")
               for j, k in enumerate(chunk)]
        lm2 = [None] * len(lm1)
        if landmarks2 is not None:
            lm2 = [None if landmarks2[k] is None else np.asarray(landmarks2[k], np.float64) for k in chunk]
        elif check:
            lm2 = [self._landmarks(b[j], f"image 2 of pair {k}" if len(chunk) > 1 or k else "image 2")
                   for j, k in enumerate(chunk)]
        return lm1, lm2

    def estimate_pairs(self, images1: Sequence, images2: Sequence, landmarks1: Sequence | None = None, *,
                       batch_size: int = 16, landmarks2: Sequence | None = None, check: bool = False,
                       max_shift: float = MAX_SHIFT_IOD) -> list[FlowResult]:
        """Batched :meth:`estimate` over pairs (e.g. consecutive video frames). ``landmarks1`` /
        ``landmarks2``: an optional (68, 2) per first / second image (e.g. from
        :func:`faceflow.face.tracking.track_video`); with them (or with ``check``, which detects
        image 2's) each result's ``shift`` is set, and ``check`` raises :class:`PairMismatchError`
        for a pair whose shift exceeds ``max_shift``."""
        if len(images1) != len(images2):
            raise FaceflowError(f"estimate_pairs got {len(images1)} first images and {len(images2)} second images")
        for name, lms in (("landmark sets", landmarks1), ("second landmark sets", landmarks2)):
            if lms is not None and len(lms) != len(images1):
                raise FaceflowError(f"estimate_pairs got {len(lms)} {name} for {len(images1)} pairs")
        if int(batch_size) < 1:
            raise FaceflowError(f"batch_size must be >= 1, got {batch_size}")
        if self.meshreg is None:
            raise FaceflowError("estimate / estimate_pairs need 3DMeshReg (this FaceFlow was built without one)")
        results: list[FlowResult] = []
        S = self.size
        for start in range(0, len(images1), int(batch_size)):
            chunk = range(start, min(start + int(batch_size), len(images1)))
            a = [_as_rgb(images1[k], f"image 1 of pair {k}") for k in chunk]
            b = [_as_rgb(images2[k], f"image 2 of pair {k}") for k in chunk]
            lm, lm2 = self._pair_landmarks(a, b, chunk, landmarks1, landmarks2, check)
            T = [register_landmarks(p, S) for p in lm]
            shifts = [None if q is None else landmark_shift(p, q, t) for p, q, t in zip(lm, lm2, T)]
            for k, sh in zip(chunk, shifts):
                if check and sh is not None:
                    check_pair(sh, max_shift, "the two images" if len(images1) == 1 else f"the images of pair {k}")
            # edge-replicated like the training frames (annotate registers with border="border")
            r1 = np.stack([warp_image(x, t, S, border="border") for x, t in zip(a, T)])
            r2 = np.stack([warp_image(x, t, S, border="border") for x, t in zip(b, T)])
            to_t = lambda r: torch.from_numpy(r).permute(0, 3, 1, 2).float().div(255)
            out = self.estimate_registered(to_t(r1), to_t(r2))
            tris = self.triangles.cpu().numpy()
            for j, k in enumerate(chunk):
                flow = out["flow"][j].cpu().numpy()
                mask = out["mask"][j].cpu().numpy()
                mesh = out["mesh"][j].cpu().numpy()
                H, W = a[j].shape[:2]
                fi, mi = flow_to_image(flow, T[j], (H, W), mask=mask, return_mask=True)
                parts = self._parts_of(out, j, T[j], (H, W), mask)
                results.append(FlowResult(
                    flow=flow.astype(np.float32), mask=mask, mesh=mesh.astype(np.float32),
                    pncc=out["pncc"][j].permute(1, 2, 0).cpu().numpy(), registered1=r1[j], registered2=r2[j],
                    flow_image=np.asarray(fi, np.float32), mask_image=np.asarray(mi, bool),
                    mesh_image=np.asarray(T[j].inverse().apply_3d(mesh), np.float32), transform=T[j],
                    landmarks=lm[j].astype(np.float32), triangles=tris, shift=shifts[j], **parts))
        return results

    @staticmethod
    def _parts_of(out: dict, j: int, transform: Similarity, size, mask: np.ndarray) -> dict:
        """The head-motion and expression flows of pair ``j`` (registered and on I1's grid), when
        the network decomposes its flow; else nothing."""
        parts = {}
        for name in ("head_flow", "expression_flow"):
            if name in out:
                f = out[name][j].cpu().numpy().astype(np.float32)
                parts[name] = f
                parts[f"{name}_image"] = np.asarray(flow_to_image(f, transform, size, mask=mask), np.float32)
        return parts

    def __enter__(self) -> "FaceFlow":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def meshreg_triangles(meshreg: torch.nn.Module, model=None) -> np.ndarray:
    """(F, 3) int64 triangles of a loaded 3DMeshReg's mesh: the ones its weights file carries
    (``weights_meta['triangles']``, see :func:`faceflow.engine.weights.load_weights`); older files
    without them fall back to the ``meshreg`` subset of ``model`` (default: the ICT model)."""
    tris = (getattr(meshreg, "weights_meta", None) or {}).get("triangles")
    if tris is None:
        if model is None:
            model = MorphableModel.load()
        tris = model.subset("meshreg").triangles.cpu().numpy()
    return np.asarray(tris, dtype=np.int64)


def warp_mesh_by_flow(mesh: np.ndarray, flow: np.ndarray, mask: np.ndarray, triangles: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Move the visible vertices of an image-space mesh (V, 3) by a dense 3D flow (H, W, 3)
    sampled bilinearly at their (x, y) (the picture of DeepFaceFlow's Fig. 1).

    A vertex counts as visible when the mask (H, W) is set at its pixel and its depth is within
    2 px of the front surface there (depth test against the mesh's own rasterisation). Returns
    (moved (V, 3), visible (V,) bool); hidden vertices are left in place.
    """

    V = torch.as_tensor(np.asarray(mesh, np.float32))
    H, W = flow.shape[:2]
    frags = rasterize(V[None], torch.as_tensor(np.asarray(triangles, np.int64)), (H, W))
    xi = np.clip(np.floor(mesh[:, 0]).astype(int), 0, W - 1)
    yi = np.clip(np.floor(mesh[:, 1]).astype(int), 0, H - 1)
    inside = (mesh[:, 0] >= 0) & (mesh[:, 0] < W) & (mesh[:, 1] >= 0) & (mesh[:, 1] < H)
    zbuf = frags.depth[0].numpy()
    visible = inside & mask[yi, xi] & frags.mask[0].numpy()[yi, xi] & (mesh[:, 2] <= zbuf[yi, xi] + 2.0)
    f = torch.from_numpy(np.ascontiguousarray(flow, np.float32)).permute(2, 0, 1)[None]
    xy = torch.from_numpy(np.ascontiguousarray(mesh[:, :2]))  # normalised in mesh's dtype, then float32
    samp = sample_points(f, xy[None], mode="bilinear", padding_mode="border")[0].numpy()
    moved = mesh.copy()
    moved[visible] = mesh[visible] + samp[visible]
    return moved.astype(np.float32), visible

"""Person-specific training of the Head2Head++ renderer on the shared harness
(:mod:`faceflow.engine.trainer`): ``python -m reenact train DATA_DIR MODEL_DIR``.

One step (batch of sequences from the training two thirds, :class:`reenact.data.SequenceDataset`):
generate the sequence frame by frame (:func:`vid2vid.collector.generate`), update the image,
mouth and dynamics discriminators together (optimizer ``D``), then the generator (optimizer
``G``); Adam with lr 2e-4 and betas (0.5, 0.999) as in the thesis.

Sequence-length curriculum: the generator is unrolled over ``seq_len_start`` frames, doubled
every ``seq_len_double_every`` steps up to ``seq_len_max`` (vid2vid's progressive training in
time); the dynamics discriminator's temporal scale k (frames t, t+k, t+2k) joins once the
sequence holds 2k + 1 frames.

Validation (and the "clear learning" signal): the generator is run over held-out windows of the
test third and scored with APD, the average L2 RGB distance on 0-255 (the paper's "average
pixel distance"); sample pictures and a short side-by-side video go to ``MODEL_DIR/samples``.
No checkpoint is selected on these test frames: inference uses ``checkpoints/last.pt``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from faceflow import io as vio
from faceflow.engine.config import TrainConfig
from faceflow.engine.distributed import dist_rank
from faceflow.engine.task import StepContext, Task
from faceflow.errors import FaceflowError
from reenact.data import SequenceDataset, TargetData, to_uint8
from reenact.metrics import apd  # validation's APD / MAPD (reenact.task.apd stays importable)
from reenact.presets import PRESETS
from vid2vid import collector
from vid2vid.discriminators import DiscriminatorConfig, build_discriminators
from vid2vid.generator import Generator, GeneratorConfig
from vid2vid.losses import FaceFeatureLoss, LossWeights, VGG19Loss, weighted_total

__all__ = ["ReenactConfig", "ReenactTask", "apd", "seq_len_at", "PRESETS", "PERCEPTUAL"]

PERCEPTUAL = ("none", "dffnet")  # the perceptual losses that work offline (VGG-19 is separate: --vgg-weights)


@dataclass
class ReenactConfig:
    """What is trained (saved with the run as the task config)."""

    data: str = ""
    flow: str = "faceflow3d"
    size: int = 0  # crop size of the target data the model is trained at
    generator: dict = field(default_factory=dict)       # GeneratorConfig fields
    discriminator: dict = field(default_factory=dict)   # DiscriminatorConfig fields
    losses: dict = field(default_factory=dict)          # LossWeights fields
    lambda_l1: float = 0.0  # an L1 reconstruction term (off in the paper preset)
    seq_len_start: int = 3
    seq_len_max: int = 6
    seq_len_double_every: int = 200
    val_len: int = 16
    vgg_weights: str | None = None
    perceptual: str = "none"  # "dffnet": vid2vid.losses.FaceFeatureLoss (G_face) on the generated frames
    face_weights: str | None = None  # the DFFNet file of that loss (None: the shipped one)


def seq_len_at(step: int, start: int, maximum: int, every: int) -> int:
    """The curriculum's sequence length at ``step`` (0-based): start * 2**(step // every), capped."""
    return int(min(maximum, start * 2 ** (int(step) // max(1, int(every)))))


def _sub(cfg_cls, preset_or_dict):
    """A generator / discriminator config from a preset name or a dict of its fields."""
    if isinstance(preset_or_dict, str):
        import importlib

        presets = importlib.import_module(cfg_cls.__module__).presets()
        if preset_or_dict not in presets:
            raise FaceflowError(f"unknown {cfg_cls.__name__} preset {preset_or_dict!r}; choose {sorted(presets)}")
        return presets[preset_or_dict]
    names = {f.name for f in fields(cfg_cls)}
    kept = {k: v for k, v in dict(preset_or_dict).items() if k in names}
    # a saved config lacking a newer field gets the value the model was trained with
    return cfg_cls.from_saved(kept) if hasattr(cfg_cls, "from_saved") else cfg_cls(**kept)


class ReenactTask(Task):
    """Head2Head++ person-specific renderer: generator + image / mouth / dynamics discriminators."""

    name = "reenact"
    # options added after the first runs, as a run recorded without them was trained
    added_later = {"perceptual": "none", "face_weights": None, "generator.upsample": "transpose",
                   "losses.lambda_face": 1.0}
    # the dynamics discriminator's longer temporal scales idle while the curriculum's sequences
    # are short, and the generator's composite head may be off
    find_unused_parameters = True

    def __init__(self, config: ReenactConfig):
        super().__init__(config)
        self._data = None
        self._vgg = None
        self._face = None
        if config.perceptual not in PERCEPTUAL:
            raise FaceflowError(f"unknown perceptual loss {config.perceptual!r}; choose one of {PERCEPTUAL}")
        self.weights = LossWeights(**config.losses)

    # ---- data and models
    def data(self) -> TargetData:
        if self._data is None:
            self._data = TargetData(self.config.data, self.config.flow)
        return self._data

    def datasets(self, cfg: TrainConfig):
        d = self.data()
        train = SequenceDataset(d, "train", self.config.seq_len_max)
        try:
            val = SequenceDataset(d, "test", self.config.val_len, stride=self.config.val_len)
        except FaceflowError:
            val = None
        return train, val

    def build(self) -> dict[str, nn.Module]:
        d = self.data()
        gcfg = _sub(GeneratorConfig, self.config.generator)
        dcfg = _sub(DiscriminatorConfig, self.config.discriminator)
        dcfg.flow_nc = d.flow_channels
        Ds = build_discriminators(dcfg)
        return {"G": collector.SequenceGenerator(Generator(gcfg), gcfg.n_frames),
                "D": collector.DiscriminatorSet(Ds["image"], Ds["mouth"], Ds["dynamics"], dcfg.temporal_scales)}

    def optimizers(self, models, cfg: TrainConfig):
        # Adam(2e-4, betas 0.5 / 0.999) as in the thesis
        return {k: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=(0.5, 0.999)) for k, m in models.items()}

    def vgg(self, device) -> nn.Module:
        if self._vgg is None:
            self._vgg = VGG19Loss(self.config.vgg_weights)
            if not self._vgg.available and dist_rank() == 0:
                print(f"note: VGG-19 perceptual loss off: {self._vgg.reason}", flush=True)
        return self._vgg.to(device)

    def face_loss(self, device) -> nn.Module | None:
        """The face-feature perceptual loss (``perceptual="dffnet"``), else None."""
        if self.config.perceptual == "none":
            return None
        if self._face is None:
            self._face = FaceFeatureLoss(self.config.face_weights)
        return self._face.to(device)

    def weights_files(self) -> dict:
        """The VGG-19 file the perceptual loss read (found in the cache when not given) and the DFFNet
        file of the face-feature loss."""
        files = super().weights_files()
        if self._vgg is not None and self._vgg.available and self._vgg.weights_path is not None:
            files["vgg_weights"] = self._vgg.weights_path
        if self._face is not None:
            files["face_weights"] = self._face.weights_path
        return files

    # ---- one step
    def train_step(self, batch: dict, models: dict[str, nn.Module], ctx: StepContext) -> dict[str, float]:
        c = self.config
        T = seq_len_at(ctx.iteration, c.seq_len_start, c.seq_len_max, c.seq_len_double_every)
        cond, real = batch["cond"][:, :T], batch["real"][:, :T]
        mouth, conf = batch["mouth"][:, :T], batch["conf"][:, :T]
        flows = batch["flow"][:, :T] if batch["flow"].shape[2] > 0 else None
        G, D = models["G"], models["D"]
        with ctx.autocast():
            fake = G(cond)
        # discriminators: real -> 1, generated (detached) -> 0
        with ctx.autocast():
            d_losses = collector.discriminator_losses(D(cond, real, fake.detach(), mouth, flows))
        d_total = weighted_total({k: v.float() for k, v in d_losses.items()}, self.weights)
        ctx.backward(d_total, "D")
        ctx.step("D")
        # generator
        with ctx.autocast():
            g_losses = collector.generator_losses(D(cond, real, fake, mouth, flows), real, fake, flows, conf,
                                                  vgg=self.vgg(cond.device), face=self.face_loss(cond.device),
                                                  use_l1=c.lambda_l1 > 0)
        g_total = weighted_total({k: v.float() for k, v in g_losses.items() if k != "G_l1"}, self.weights)
        if "G_l1" in g_losses:
            g_total = g_total + c.lambda_l1 * g_losses["G_l1"].float()
        if not torch.isfinite(g_total) or not torch.isfinite(d_total):
            raise FaceflowError(f"reenact: non-finite loss at step {ctx.iteration + 1} (G {float(g_total)}, "
                                f"D {float(d_total)}); try a lower --lr or --amp off")
        ctx.backward(g_total, "G")
        ctx.step("G")
        out = {"loss": float(g_total.detach()), "loss_D": float(d_total.detach()), "seq_len": T,
               "apd": float(apd(fake.detach(), real))}
        out.update({k: float(v.detach()) for k, v in {**d_losses, **g_losses}.items()})
        return out

    # ---- validation and samples
    def _run_window(self, G, batch) -> torch.Tensor:
        return G(batch["cond"])

    def validate(self, models, loader, ctx: StepContext) -> dict[str, float]:
        G = models["G"]
        tot, tot_m, n = 0.0, 0.0, 0
        for batch in loader:
            batch = {k: v.to(ctx.device) for k, v in batch.items()}
            fake = self._run_window(G, batch)
            b = fake.shape[0]
            tot += float(apd(fake, batch["real"])) * b
            tot_m += float(apd(fake, batch["real"], batch["mask"])) * b
            n += b
        a = tot / max(n, 1)
        return {"val_metric": a, "apd": a, "mapd": tot_m / max(n, 1)}

    def write_samples(self, models, out: Path, step: int, ctx: StepContext) -> None:

        d = self.data()
        lo, hi = d.part("test")
        n = min(self.config.val_len * 2, hi - lo)
        if n < 1:
            return
        batch = {k: v.unsqueeze(0).to(ctx.device) for k, v in d.frames(np.arange(lo, lo + n)).items()}
        fake = self._run_window(models["G"], batch)[0]
        nmfc = to_uint8(batch["cond"][0, :, :3])
        frames = np.concatenate([nmfc, to_uint8(fake), to_uint8(batch["real"][0])], axis=2)  # NMFC | fake | real
        sdir = Path(out) / "samples"
        sdir.mkdir(parents=True, exist_ok=True)
        vio.write_image(sdir / f"step_{step:07d}.png", np.concatenate(list(frames[:: max(1, n // 4)][:4]), 0))
        vio.write_video(sdir / f"step_{step:07d}.mp4", frames, fps=d.fps)

    # ---- config / presets
    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def presets(cls) -> dict[str, dict]:
        return PRESETS

    @classmethod
    def make_config(cls, preset: str, data: str, flow: str, composite: bool = False, upsample: str = "resize",
                    **overrides) -> ReenactConfig:
        """The task config of ``preset`` for target ``data`` and flow provider ``flow``;
        ``composite`` switches on the generator's vid2vid-style flow + occlusion-mask head,
        ``upsample`` picks its x2 upsampling (:class:`vid2vid.generator.GeneratorConfig`);
        other keyword arguments override ReenactConfig fields (None = keep the preset's)."""
        t = dict(PRESETS[preset]["task"])
        t["generator"] = asdict(_sub(GeneratorConfig, t["generator"]))
        t["generator"]["composite"] = bool(composite)
        t["generator"]["upsample"] = upsample
        GeneratorConfig(**t["generator"])  # an unknown upsampling is refused here
        t["discriminator"] = asdict(_sub(DiscriminatorConfig, t["discriminator"]))
        t["losses"] = asdict(LossWeights())
        t.update({k: v for k, v in overrides.items() if v is not None})
        if t["seq_len_max"] < t["seq_len_start"]:
            raise FaceflowError(f"--seq-len must be at least {t['seq_len_start']}, got {t['seq_len_max']}")
        size = int(TargetData(data, flow).size)  # also checks that DATA_DIR is prepared with this flow
        return ReenactConfig(data=str(Path(data).resolve()), flow=flow, size=size, **t)

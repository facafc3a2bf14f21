"""The random draws of a synthetic pair (:mod:`faceflow.data.synthetic`): the set's
:class:`SyntheticConfig` and :func:`sample_params`, pair ``k``'s :class:`PairParams` from
(config, k) alone (identity, expressions, head pose and its change, light, background, colour).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from faceflow.data.splits import SPLITS
from faceflow.data.synth_sources import Clip
from faceflow.errors import FaceflowError
from faceflow.runtime.flags import option

_IRIS_COLOURS = ((0.33, 0.19, 0.09), (0.18, 0.10, 0.05), (0.30, 0.44, 0.58), (0.34, 0.44, 0.30),
                 (0.45, 0.34, 0.19), (0.40, 0.42, 0.44))


@dataclass
class SyntheticConfig:
    """Everything that determines a synthetic set (saved as ``config.json``).

    Angles in degrees, translations in template pixels. ``sources`` (clip stems) is filled in
    by :func:`faceflow.data.synthetic.generate` from the annotated clips of ``split``.
    """

    split: str = option("train", "identity split whose clips give textures, expressions and backgrounds",
                        choices=("train", "val", "test"))
    num_pairs: int = option(2000, "number of pairs (a larger number extends a set)", flag="--pairs",
                            metavar="N")
    seed: int = option(0, "random seed; pair k depends only on (seed, k)")
    textures: int = option(50, "size of the texture bank (real frames)")
    pairs_per_identity: int = option(1, "consecutive pairs sharing a synthetic identity and texture")
    id_scale: float = 1.0  # std of the identity draw
    # expressions
    real_exp_prob: float = 0.6
    max_gap: int = 6
    same_exp_prob: float = 0.15
    max_active: int = 5  # active blendshapes of a random mix (1..max_active)
    exp_change: float = 0.15  # std of the frame-2 change of a random mix
    # head pose of frame 1: truncated normals
    yaw_std: float = option(20.0, "std of frame 1's yaw in degrees (a normal truncated at --yaw-max)")
    yaw_max: float = option(45.0, "largest |yaw| of frame 1 in degrees (60: the wide-pose sets of 3DMeshReg)")
    pitch_std: float = 10.0
    pitch_max: float = 25.0
    roll_std: float = 6.0
    roll_max: float = 15.0
    # pose change of frame 2: truncated normals
    rot_change_std: float = 2.5
    rot_change_max: float = 6.0
    trans_change_std: float = 2.5
    trans_change_max: float = 6.0
    scale_change_std: float = 0.02
    scale_change_max: float = 0.05
    still_prob: float = 0.1  # no pose change at all
    # light and colour
    light_max_angle: float = 60.0  # light direction within this angle of the viewing direction
    ambient: tuple[float, float] = (0.3, 0.65)
    brightness: float = 0.25  # factor in 1 +- brightness
    contrast: float = 0.25
    gain: float = 0.1  # per-channel gain in 1 +- gain
    hue: float = 0.04  # hue rotation in turns
    pair_brightness: float = 0.03  # extra brightness change of I2
    noise_prob: float = 0.5
    noise_max: float = 0.02  # Gaussian noise std (images in [0, 1])
    # background
    bg_scale: tuple[float, float] = (0.45, 1.0)  # side of the background window / crop size
    bg_blur: tuple[float, float] = (0.5, 2.0)  # Gaussian sigma in pixels
    bg_shift_prob: float = 0.3
    bg_shift_max: int = 2
    bg_remove_face: bool = True  # fill the real face of the background frame from its surroundings
    # bookkeeping (not part of the data's identity)
    chunk: int = 64
    previews: int = option(4, "number of preview PNGs")

    FLAGS = ("split", "num_pairs", "seed", "textures", "pairs_per_identity", "yaw_std", "yaw_max", "previews")
    sources: list[str] = field(default_factory=list)

    def signature(self) -> dict:
        """The fields that must match to resume: all but num_pairs, chunk and previews."""
        d = json.loads(json.dumps(asdict(self)))
        for k in ("num_pairs", "chunk", "previews"):
            d.pop(k)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise FaceflowError(f"unknown synthetic config field(s) {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(getattr(cls, k, None), tuple) else v) for k, v in d.items()}
        return cls(**kw)

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise FaceflowError(f"unknown split {self.split!r}; choose one of {list(SPLITS)}")
        for name in ("num_pairs", "textures", "pairs_per_identity", "max_gap", "max_active", "chunk"):
            if int(getattr(self, name)) < 1:
                raise FaceflowError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("real_exp_prob", "same_exp_prob", "still_prob", "noise_prob", "bg_shift_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise FaceflowError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        lo, hi = self.bg_scale
        if not 0 < lo <= hi <= 1:
            raise FaceflowError(f"bg_scale must satisfy 0 < lo <= hi <= 1, got {self.bg_scale}")
        if self.max_active > 53:
            raise FaceflowError(f"max_active must be <= 53, got {self.max_active}")
        if not (0 <= self.yaw_std and 0 <= self.yaw_max <= 75):
            raise FaceflowError(f"yaw_std must be >= 0 and yaw_max in [0, 75] degrees (a face turned further "
                                f"hides its far half), got {self.yaw_std} and {self.yaw_max}")



@dataclass
class PairParams:
    """Everything that determines pair ``index`` (see :func:`sample_params`)."""

    index: int
    identity: int
    id: np.ndarray  # (100,)
    texture: int
    iris: tuple[float, float, float]
    teeth: float  # brightness of the teeth and the sclera
    exp1: np.ndarray  # (53,)
    exp2: np.ndarray
    exp_source: tuple[int, int, int]  # clip, t, g (-1, -1, -1: random mix)
    pose1: np.ndarray  # (3,) pitch, yaw, roll in degrees
    rot_change: np.ndarray  # (3,) degrees
    trans_change: np.ndarray  # (2,) template pixels
    scale_change: float
    light: np.ndarray  # (3,) direction toward the light, image space
    ambient: float
    bg_clip: int
    bg_frame: int
    bg_box: tuple[int, int, int]  # x0, y0, side in crop pixels
    bg_flip: bool
    bg_blur: float
    bg_shift: tuple[int, int]  # (dx, dy) of I2's background
    brightness: float
    contrast: float
    gains: tuple[float, float, float]
    hue: float
    pair_brightness: float
    noise: float
    noise_seed: int


def _truncnorm(rng: np.random.Generator, std: float, limit: float) -> float:
    if std <= 0 or limit <= 0:
        return 0.0
    while True:
        x = float(rng.normal(0.0, std))
        if abs(x) <= limit:
            return x


def sample_params(cfg: SyntheticConfig, clips: list[Clip], num_textures: int, k: int) -> PairParams:
    """The random draws of pair ``k`` from ``numpy.random.default_rng([seed, 0, k])`` (identity,
    texture and eye colour from ``[seed, 1, k // pairs_per_identity]``): reproducible from
    (config, k) alone."""
    u = k // cfg.pairs_per_identity
    rid = np.random.default_rng([cfg.seed, 1, u])
    id_coeffs = (rid.standard_normal(100) * cfg.id_scale).astype(np.float32)
    texture = int(rid.integers(num_textures))
    iris = np.array(_IRIS_COLOURS[int(rid.integers(len(_IRIS_COLOURS)))]) * rid.uniform(0.8, 1.2)
    teeth = float(rid.uniform(0.75, 1.0))

    rng = np.random.default_rng([cfg.seed, 0, k])
    exp1, exp2, source = None, None, (-1, -1, -1)
    if rng.random() < cfg.real_exp_prob:
        ci = int(rng.integers(len(clips)))
        c = clips[ci]
        g = int(rng.integers(1, cfg.max_gap + 1))
        for _ in range(8):
            if len(c) <= g:
                g = max(1, len(c) - 1)
            if len(c) <= g:
                break
            t = int(rng.integers(len(c) - g))
            if c.segment[t] == c.segment[t + g]:
                exp1, exp2 = c.exp[t].copy(), c.exp[t + g].copy()
                source = (ci, t, g)
                if rng.random() < 0.5:  # play it backwards
                    exp1, exp2 = exp2, exp1
                break
    if exp1 is None:
        exp1 = np.zeros(53, np.float32)
        n = int(rng.integers(1, cfg.max_active + 1))
        act = rng.choice(53, n, replace=False)
        exp1[act] = rng.uniform(0, 1, n)
        exp2 = exp1.copy()
        exp2[act] += rng.normal(0, cfg.exp_change, n)
        if rng.random() < 0.5:
            extra = int(rng.integers(53))
            exp2[extra] += rng.uniform(0, 0.4)
        exp2 = np.clip(exp2, 0, 1)
    if rng.random() < cfg.same_exp_prob:
        exp2 = exp1.copy()
    pose1 = np.array([_truncnorm(rng, cfg.pitch_std, cfg.pitch_max), _truncnorm(rng, cfg.yaw_std, cfg.yaw_max),
                      _truncnorm(rng, cfg.roll_std, cfg.roll_max)], np.float32)
    if rng.random() < cfg.still_prob:
        rot, trans, dscale = np.zeros(3, np.float32), np.zeros(2, np.float32), 0.0
    else:
        rot = np.array([_truncnorm(rng, cfg.rot_change_std, cfg.rot_change_max) for _ in range(3)], np.float32)
        trans = np.array([_truncnorm(rng, cfg.trans_change_std, cfg.trans_change_max) for _ in range(2)], np.float32)
        dscale = _truncnorm(rng, cfg.scale_change_std, cfg.scale_change_max)
    a = math.radians(rng.uniform(0, cfg.light_max_angle))
    phi = rng.uniform(0, 2 * math.pi)
    light = np.array([math.sin(a) * math.cos(phi), math.sin(a) * math.sin(phi), -math.cos(a)], np.float32)
    ambient = float(rng.uniform(*cfg.ambient))
    bc = int(rng.integers(len(clips)))
    bf = int(rng.integers(len(clips[bc])))
    S = clips[bc].crops.shape[1]
    side = max(8, int(round(rng.uniform(*cfg.bg_scale) * S)))
    box = (int(rng.integers(S - side + 1)), int(rng.integers(S - side + 1)), side)
    flip = bool(rng.random() < 0.5)
    blur = float(rng.uniform(*cfg.bg_blur))
    shift = (0, 0)
    if rng.random() < cfg.bg_shift_prob:
        shift = tuple(int(x) for x in rng.integers(-cfg.bg_shift_max, cfg.bg_shift_max + 1, 2))
    brightness = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
    contrast = float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
    gains = tuple(float(x) for x in rng.uniform(1 - cfg.gain, 1 + cfg.gain, 3))
    hue = float(rng.uniform(-cfg.hue, cfg.hue))
    pair_b = float(rng.uniform(-cfg.pair_brightness, cfg.pair_brightness))
    noise = float(rng.uniform(0, cfg.noise_max)) if rng.random() < cfg.noise_prob else 0.0
    return PairParams(k, u, id_coeffs, texture, tuple(float(x) for x in iris), teeth,
                      np.asarray(exp1, np.float32), np.asarray(exp2, np.float32), source, pose1, rot, trans, dscale,
                      light, ambient, bc, bf, box, flip, blur, shift, brightness, contrast, gains, hue, pair_b, noise,
                      int(rng.integers(2 ** 31)))


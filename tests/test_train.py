"""The training harness (faceflow.engine: trainer, task, sampler, checkpoint, logbook), the
DeepFaceFlow tasks (faceflow.engine.dff_tasks) and weights files (faceflow.engine.weights): exact
resume equivalence, atomic checkpoints, config refusal, the LR schedule, deterministic data order
and augmentation, AMP fallback on CPU, overfitting a batch with DFFNet and 3DMeshReg, and export
-> load round trips. CPU, tiny models, fake data."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from faceflow.engine.checkpoint import checkpoint_path, load_checkpoint
from faceflow.engine.config import TrainConfig, config_from_args
from faceflow.engine.logbook import read_csv
from faceflow.engine.sampler import StepBatchSampler, epoch_permutation, step_indices, val_subset
from faceflow.engine.task import SimpleTask, StepContext, sample_seed
from faceflow.engine.trainer import lr_factor, resolve_amp, train
from faceflow.errors import AssetNotFoundError, FaceflowError

pytestmark = pytest.mark.usefixtures("one_thread")


# ============================================================================ a fake task
class VecPairs(torch.utils.data.Dataset):
    """Deterministic regression samples: x (dim,) -> y (2,) = (sin(x0 + x1), x2 * x3)."""

    def __init__(self, n: int, dim: int = 6, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.stack([torch.sin(self.x[:, 0] + self.x[:, 1]), self.x[:, 2] * self.x[:, 3]], 1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


@dataclass
class FakeConfig:
    hidden: int = 16
    dropout: float = 0.1
    noise: float = 0.1


class FakeTask(SimpleTask):
    """A 2-layer MLP (optional dropout: exercises the saved RNG state) with input noise drawn by
    ctx.rand (exercises per-sample augmentation). Test hooks: raise KeyboardInterrupt or send a
    signal (default SIGTERM) to itself at a given 0-based iteration."""

    name = "fake"

    def __init__(self, config=None, n=40, dim=6, val=True, interrupt_at=None, sigterm_at=None,
                 signum=signal.SIGTERM):
        super().__init__(config or FakeConfig())
        self.n, self.dim, self.val = n, dim, val
        self.interrupt_at, self.sigterm_at, self.signum = interrupt_at, sigterm_at, signum
        self.seen: list[tuple[int, list[int]]] = []

    def datasets(self, cfg):
        return VecPairs(self.n, self.dim, 1), (VecPairs(12, self.dim, 2) if self.val else None)

    def build_model(self):
        c = self.config
        return nn.Sequential(nn.Linear(self.dim, c.hidden), nn.Tanh(), nn.Dropout(c.dropout), nn.Linear(c.hidden, 2))

    def loss(self, model, batch, ctx):
        if ctx.iteration == self.interrupt_at:
            raise KeyboardInterrupt
        if ctx.iteration == self.sigterm_at:
            os.kill(os.getpid(), self.signum)
        self.seen.append((ctx.iteration, ctx.indices.tolist()))
        x = batch["x"] + self.config.noise * (2 * ctx.rand(self.dim) - 1)
        loss = ((model(x) - batch["y"]) ** 2).mean()
        return loss, {"mse": loss.detach()}

    def validate(self, models, loader, ctx):
        se, n = 0.0, 0
        for b in loader:
            se += float(((models["net"](b["x"]) - b["y"]) ** 2).mean(1).sum())
            n += len(b["x"])
        return {"val_metric": se / n}


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out=str(out), iterations=6, batch_size=8, lr=1e-2, warmup_steps=2, val_every=2, val_samples=0,
                ckpt_every=100, log_every=1, seed=3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _weights(out) -> dict:
    return load_checkpoint(checkpoint_path(out, "last"))


def _assert_same_state(a: dict, b: dict):
    for k in a["models"]["net"]:
        assert torch.equal(a["models"]["net"][k], b["models"]["net"][k]), k
    sa, sb = a["optimizers"]["net"]["state"], b["optimizers"]["net"]["state"]
    assert sa.keys() == sb.keys()
    for p in sa:
        for k in sa[p]:
            assert torch.equal(torch.as_tensor(sa[p][k]), torch.as_tensor(sb[p][k])), (p, k)
    assert a["schedulers"]["net"]["last_epoch"] == b["schedulers"]["net"]["last_epoch"]


# ============================================================================ schedule, data order
def test_lr_schedule_values():
    # warm-up over 10 steps, then x0.5 at 50 %, 70 %, 85 % of 100 iterations
    f = lambda s: lr_factor(s, 100, 10, (0.5, 0.7, 0.85), 0.5)
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5) and f(9) == 1.0
    assert f(49) == 1.0 and f(50) == 0.5 and f(69) == 0.5 and f(70) == 0.25
    assert f(84) == 0.25 and f(85) == 0.125 and f(99) == 0.125
    assert lr_factor(0, 100, 0) == 1.0  # no warm-up


def test_logged_lr_follows_schedule(tmp_path):
    cfg = _cfg(tmp_path, iterations=10, warmup_steps=3, lr_milestones=[0.5, 0.8], lr_gamma=0.1, lr=0.02)
    train(FakeTask(val=False), cfg, progress=False)
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    for r in rows:  # the row of step s shows the LR used by that step (0-based index s - 1)
        assert r["lr"] == pytest.approx(0.02 * lr_factor(int(r["step"]) - 1, 10, 3, (0.5, 0.8), 0.1), rel=1e-12)
    assert {"epoch", "elapsed_s", "loss", "mse"} <= set(rows[0])


def test_step_indices_epochs_and_ranks():
    n, B, seed = 10, 4, 7
    stream = np.concatenate([epoch_permutation(n, seed, e) for e in range(3)])
    for s in range(7):  # batches cut the stream of per-epoch permutations, across epoch ends
        assert step_indices(s, n, B, seed).tolist() == stream[s * B:(s + 1) * B].tolist()
    assert sorted(epoch_permutation(n, seed, 1).tolist()) == list(range(n))
    assert not np.array_equal(epoch_permutation(n, seed, 0), epoch_permutation(n, seed, 1))
    # resuming at step 3 continues with exactly the batches of an uninterrupted run
    full = list(StepBatchSampler(n, B, seed, 0, 7))
    assert list(StepBatchSampler(n, B, seed, 3, 7)) == full[3:]
    # DDP: rank slices of each global batch, concatenated in rank order, give the global batch
    r0, r1 = list(StepBatchSampler(n, B, seed, 0, 7, 0, 2)), list(StepBatchSampler(n, B, seed, 0, 7, 1, 2))
    assert [a + b for a, b in zip(r0, r1)] == full
    with pytest.raises(FaceflowError, match="divisible"):
        StepBatchSampler(n, 5, seed, 0, 1, 0, 2)


def test_augmentation_randomness_depends_on_seed_step_index_only():
    ctx = StepContext(torch.device("cpu"), seed=5)
    ctx.iteration, ctx.indices = 9, torch.tensor([3, 8, 1])
    a = ctx.rand(4)
    ctx.indices = torch.tensor([1, 3])  # another batch composition / rank: same rows per sample
    b = ctx.rand(4)
    assert torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])
    assert not torch.equal(a[0], a[1])
    ctx.iteration = 10  # another step: fresh randomness
    assert not torch.equal(ctx.rand(4)[1], b[0])
    assert sample_seed(5, 9, 3) == sample_seed(5, 9, 3) != sample_seed(6, 9, 3)


# ============================================================================ resume, checkpoints
def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path):
    ref = FakeTask()
    train(ref, _cfg(tmp_path / "ref"), progress=False)

    out = tmp_path / "run"
    first = FakeTask(interrupt_at=3)  # Ctrl-C inside step 4, before any optimizer step
    with pytest.raises(KeyboardInterrupt):
        train(first, _cfg(out), progress=False)
    assert _weights(out)["step"] == 3
    assert [int(r["step"]) for r in read_csv(out / "log.csv")] == [1, 2, 3]
    assert not (out / "manifest.json").exists()
    second = FakeTask()
    summary = train(second, _cfg(out), progress=False)
    assert summary["step"] == 6 and summary["status"] == "done"
    assert (out / "manifest.json").is_file()

    _assert_same_state(_weights(tmp_path / "ref"), _weights(out))
    assert second.seen == ref.seen[3:]  # the same batches for steps 4-6
    a, b = read_csv(tmp_path / "ref" / "log.csv"), read_csv(out / "log.csv")
    assert [int(r["step"]) for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        assert (ra["loss"], ra["mse"], ra["lr"], ra["epoch"]) == (rb["loss"], rb["mse"], rb["lr"], rb["epoch"])
    va, vb = read_csv(tmp_path / "ref" / "val.csv"), read_csv(out / "val.csv")
    assert [(r["step"], r["val_metric"]) for r in va] == [(r["step"], r["val_metric"]) for r in vb]
    best = load_checkpoint(checkpoint_path(out, "best"))
    assert best["best"] == min(r["val_metric"] for r in vb)
    assert best["step"] == int(min(vb, key=lambda r: r["val_metric"])["step"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_resume_is_exact(tmp_path, signum):
    ref = FakeTask()
    train(ref, _cfg(tmp_path / "ref", log_every=2), progress=False)
    out = tmp_path / "run"
    first = FakeTask(sigterm_at=2, signum=signum)  # the signal arrives during step 3: it completes
    handler = signal.getsignal(signum)
    if signum == signal.SIGINT:  # Ctrl-C: checkpoint, then KeyboardInterrupt (exit code 130)
        with pytest.raises(KeyboardInterrupt):
            train(first, _cfg(out, log_every=2), progress=False)
    else:
        s1 = train(first, _cfg(out, log_every=2), progress=False)
        assert s1["status"] == "SIGTERM" and s1["step"] == 3
    assert _weights(out)["step"] == 3
    assert signal.getsignal(signum) == handler  # the harness restores the previous handler
    s2 = train(FakeTask(), _cfg(out, log_every=2), progress=False)
    assert s2["status"] == "done"
    _assert_same_state(_weights(tmp_path / "ref"), _weights(out))
    # the log averages over windows of 2 steps; the window open at the stop is carried over
    a, b = read_csv(tmp_path / "ref" / "log.csv"), read_csv(out / "log.csv")
    assert [(r["step"], r["loss"]) for r in a] == [(r["step"], r["loss"]) for r in b]


def test_time_budget_stops_and_resumes(tmp_path):
    out = tmp_path / "run"
    s = train(FakeTask(), _cfg(out, max_minutes=1e-9), progress=False)  # budget used after step 1
    assert s["status"] == "time budget" and s["step"] == 1 and _weights(out)["step"] == 1
    assert not (out / "manifest.json").exists()
    s = train(FakeTask(), _cfg(out, max_minutes=0.0), progress=False)  # the budget may change on resume
    assert s["status"] == "done" and s["step"] == 6


def test_interrupted_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(FakeTask(val=False), _cfg(out, iterations=2, ckpt_every=1), progress=False)
    before = _weights(out)
    real_save = torch.save

    def broken_save(obj, f, *a, **k):  # write half a file, then fail (disk full, kill, ...)
        real_save(obj, f, *a, **k)
        f.truncate(f.tell() // 2)
        raise OSError("simulated failure mid-write")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        train(FakeTask(val=False), _cfg(out, iterations=4, ckpt_every=1), progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    after = _weights(out)  # still the complete previous checkpoint
    assert after["step"] == before["step"] == 2
    _assert_same_state(before, after)
    assert sorted(os.listdir(out / "checkpoints")) == ["last.pt"]  # no partial files left


def test_different_config_refused_overwrite_starts_over(tmp_path):
    out = tmp_path / "run"
    train(FakeTask(), _cfg(out, iterations=2), progress=False)
    with pytest.raises(FaceflowError, match=r"train\.lr: 0\.01 -> 0\.05.*--overwrite"):
        train(FakeTask(), _cfg(out, iterations=2, lr=0.05), progress=False)
    with pytest.raises(FaceflowError, match=r"task_config\.hidden"):
        train(FakeTask(FakeConfig(hidden=8)), _cfg(out, iterations=2), progress=False)
    # resumable keys may change: more iterations continue the run
    s = train(FakeTask(), _cfg(out, iterations=3, val_every=3), progress=False)
    assert s["step"] == 3 and [int(r["step"]) for r in read_csv(out / "log.csv")] == [1, 2, 3]
    # --overwrite: a fresh run with the new config, identical to one in an empty directory
    train(FakeTask(), _cfg(out, iterations=2, lr=0.05), overwrite=True, progress=False)
    train(FakeTask(), _cfg(tmp_path / "fresh", iterations=2, lr=0.05), progress=False)
    _assert_same_state(_weights(out), _weights(tmp_path / "fresh"))
    assert [int(r["step"]) for r in read_csv(out / "log.csv")] == [1, 2]
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.05


def test_amp_on_cpu_falls_back_with_note(tmp_path):
    dtype, note = resolve_amp("bf16", torch.device("cpu"))
    assert dtype is None and "ignored" in note
    assert resolve_amp("off", torch.device("cpu")) == (None, None)
    s = train(FakeTask(val=False), _cfg(tmp_path, iterations=2, amp="fp16"), progress=False)
    assert any("fp16" in n and "ignored" in n for n in s["notes"])
    ck = _weights(tmp_path)
    assert all(v.dtype == torch.float32 for v in ck["models"]["net"].values())
    assert ck["scaler"] == {}


def test_tensorboard_events_or_note(tmp_path):
    s = train(FakeTask(val=False), _cfg(tmp_path, iterations=2, tensorboard=True), progress=False)
    try:
        import torch.utils.tensorboard  # noqa: F401  (only whether it imports matters)
    except Exception:
        assert any("TensorBoard" in n for n in s["notes"]) and not (tmp_path / "tb").exists()
    else:
        assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert [int(r["step"]) for r in read_csv(tmp_path / "log.csv")] == [1, 2]  # the CSV log is kept either way


def test_bad_config_values():
    with pytest.raises(FaceflowError, match="amp"):
        TrainConfig(amp="fp8").validate()
    with pytest.raises(FaceflowError, match="lr_milestones"):
        TrainConfig(lr_milestones=[0.7, 0.5]).validate()
    with pytest.raises(FaceflowError, match="batch_size"):
        TrainConfig(batch_size=0).validate()


# ============================================================================ weights files
def test_weights_round_trip_and_errors(tmp_path):
    from faceflow.engine.weights import load_weights, save_weights, weights_info
    from faceflow.nets.dffnet import DFFNet

    torch.manual_seed(0)
    net = DFFNet("depth", width=0.125).eval()
    x = [torch.rand(1, 3, 64, 64) for _ in range(3)]
    ref = net(*x)[-1]
    p32 = save_weights(net, "dffnet", {"use_pncc": "depth", "width": 0.125}, tmp_path / "w32.pt", half=False,
                       meta={"note": "test"})
    m = load_weights(p32)
    assert not m.training and torch.equal(m(*x)[-1], ref)
    assert weights_info(p32)["meta"] == {"note": "test"} and m.weights_meta == {"note": "test"}
    p16 = save_weights(net, "dffnet", {"use_pncc": "depth", "width": 0.125}, tmp_path / "w16.pt")
    sd = torch.load(p16, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in sd.values())
    assert os.path.getsize(p16) < 0.6 * os.path.getsize(p32)
    m16 = load_weights(p16)
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    out = m16(*x)[-1]
    assert (out - ref).abs().max() <= 5e-3 * ref.abs().max()  # fp16 rounding of the weights only

    with pytest.raises(AssetNotFoundError, match="missing.pt"):
        load_weights(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(os.urandom(300))
    with pytest.raises(FaceflowError, match="junk.pt"):
        load_weights(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(FaceflowError, match="not a faceflow weights file"):
        load_weights(tmp_path / "other.pt")
    with pytest.raises(FaceflowError, match="expected 'meshreg'"):
        load_weights(p32, kind="meshreg")
    with pytest.raises(FaceflowError, match="expected 'meshreg' or 'meshreg_landmarks'"):
        load_weights(p32, kind=("meshreg", "meshreg_landmarks"))
    assert load_weights(p32, kind=("meshreg", "dffnet")).weights_kind == "dffnet"
    with pytest.raises(FaceflowError, match="unknown weights kind"):
        save_weights(net, "gan", {}, tmp_path / "x.pt")


def test_meshreg_weights_keep_template_exact(tmp_path):
    from faceflow.engine.weights import load_weights, save_weights
    from faceflow.nets.meshreg import MeshReg

    template = torch.randn(50, 3) * 100 + 112.123456
    net = MeshReg(50, "resnet18", template=template)
    path = save_weights(net, "meshreg", {"num_vertices": 50, "backbone": "resnet18"}, tmp_path / "m.pt")
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert sd["template"].dtype == torch.float32 and torch.equal(sd["template"], template)
    assert sd["fc.weight"].dtype == torch.float16 and sd["backbone.1.running_var"].dtype == torch.float32
    assert torch.equal(load_weights(path).template, template)


# ============================================================================ the DeepFaceFlow tasks
class FakeFlowPairs(torch.utils.data.Dataset):
    """Contract samples at ``size``: a smooth random I1, I2 = I1 shifted by an integer (dx, dy),
    constant 3D flow (dx, dy, dz) on a disc mask, a planar PNCC, meshes = template + noise and
    mesh2 = mesh1 + flow."""

    def __init__(self, n: int, size: int = 64, template: torch.Tensor | None = None, seed: int = 0):
        self.n, self.size, self.seed = n, size, seed
        self.template = template if template is not None else torch.rand(2713, 3) * size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        S = self.size
        g = torch.Generator().manual_seed(1000 * self.seed + i)
        big = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(S + 8, S + 8), mode="bilinear",
                            align_corners=False)[0]
        dx, dy, dz = 2, -1, 0.5
        i1 = big[:, 4:4 + S, 4:4 + S]
        i2 = big[:, 4 - dy:4 - dy + S, 4 - dx:4 - dx + S]  # I2(p + d) = I1(p)
        yy, xx = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
        mask = (xx - S / 2) ** 2 + (yy - S / 2) ** 2 < (0.35 * S) ** 2
        flow = torch.tensor([dx, dy, dz], dtype=torch.float32).expand(S, S, 3) * mask[..., None]
        z = torch.full((S, S), -10.0)
        pncc = torch.stack([xx / S, yy / S, 0.5 - z / (2 * S)]) * mask
        mesh1 = self.template + torch.randn(self.template.shape, generator=g) * 2
        return {"i1": i1.contiguous(), "i2": i2.contiguous(), "pncc": pncc.float(), "flow": flow.contiguous(),
                "mask": mask, "head_flow": torch.zeros(S, S, 3), "has_head_flow": torch.tensor(False),
                "mesh1": mesh1, "mesh2": mesh1 + torch.tensor([dx, dy, dz]),
                "identity": torch.tensor(i % 2), "kind": torch.tensor(0)}


def _with_data(task_cls, train_ds, val_ds):
    class T(task_cls):
        def datasets(self, cfg):
            return train_ds, val_ds
    T.__name__ = task_cls.__name__
    return T


@pytest.mark.slow
def test_dffnet_task_overfits_a_batch_and_exports(tmp_path):
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask
    from faceflow.engine.weights import export_run, load_weights

    ds = FakeFlowPairs(2, 64)
    task = _with_data(DFFNetTask, ds, FakeFlowPairs(2, 64, seed=9))(
        DFFNetConfig(width=0.125, color_jitter=0.0, brightness=0.0))
    out = tmp_path / "dff"
    s = train(task, _cfg(out, iterations=15, batch_size=2, lr=1e-3, warmup_steps=0, val_every=15), progress=False)
    rows = read_csv(out / "log.csv")
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"] and rows[-1]["epe"] < rows[0]["epe"]
    assert {"epe_full", "photometric"} <= set(rows[0])
    assert set(s["val"]) >= {"val_metric", "aepe_3d", "aepe_2d"} and s["val"]["aepe_2d"] <= s["val"]["aepe_3d"]

    path = export_run(out, tmp_path / "dff.pt", half=True)
    m = load_weights(path)
    assert m.weights_meta["step"] == 15 and m.weights_meta["task"] == "dffnet"
    assert m.weights_meta["train_config"]["iterations"] == 15
    ref = task.build_model()
    ref.load_state_dict(load_checkpoint(checkpoint_path(out, "best"))["models"]["net"])
    b = torch.utils.data.default_collate([ds[0], ds[1]])
    with torch.no_grad():
        want, got = ref.eval()(b["i1"], b["i2"], b["pncc"])[-1], m(b["i1"], b["i2"], b["pncc"])[-1]
    assert (got - want).abs().max() <= 5e-3 * want.abs().max()
    exact = load_weights(export_run(out, tmp_path / "dff32.pt", half=False))
    with torch.no_grad():
        assert torch.equal(exact(b["i1"], b["i2"], b["pncc"])[-1], want)


@pytest.mark.slow
def test_meshreg_task_overfits_a_batch_and_exports(tmp_path, skin_model):
    from faceflow.engine.dff_tasks import MeshRegConfig, MeshRegTask, meshreg_template
    from faceflow.engine.weights import export_run, load_weights

    template = meshreg_template(skin_model)
    ds = FakeFlowPairs(2, 64, template=template)
    cls = _with_data(MeshRegTask, ds, None)
    task = cls(MeshRegConfig(jitter_shift=0, jitter_scale=0, jitter_angle=0, color_jitter=0), morphable=skin_model)
    out = tmp_path / "mr"
    train(task, _cfg(out, iterations=12, batch_size=2, lr=1e-3, warmup_steps=0), progress=False)
    rows = read_csv(out / "log.csv")
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"] and rows[-1]["vertex_px"] < rows[0]["vertex_px"]

    m = load_weights(export_run(out, tmp_path / "mr.pt", which="best"))  # no validation: falls back to last
    assert m.num_vertices == 2713 and torch.equal(m.template, template)
    ref = task.build_model()
    ref.load_state_dict(load_checkpoint(checkpoint_path(out, "last"))["models"]["net"])
    x = torch.stack([ds[0]["i1"], ds[1]["i1"]])
    with torch.no_grad():
        want, got = ref.eval()(x) - template, m(x) - template  # compare the regressed offsets
    assert (got - want).abs().max() <= 5e-3 * want.abs().max() + 1e-4


def test_meshreg_template_matches_registration_template(skin_model):
    from faceflow.engine.dff_tasks import meshreg_template
    from faceflow.face.registration import template_landmarks

    lmk = meshreg_template(skin_model, vertices=skin_model.lmk68)
    # the 224 template was derived from these very landmarks (rounded to 1e-4 of the size)
    assert np.abs(lmk[:, :2].numpy() - template_landmarks()).max() < 0.05
    assert lmk[30, 2] < lmk[36, 2] and lmk[30, 2] < lmk[45, 2]  # nose tip nearer than the eye corners
    t = meshreg_template(skin_model)
    assert t.shape == (len(skin_model.subset("meshreg")), 3)
    assert 0 < t[:, 0].min() and t[:, 0].max() < 224 and 0 < t[:, 1].min() and t[:, 1].max() < 224


def test_meshreg_jitter_moves_image_and_mesh_together(skin_model):
    from faceflow.engine.dff_tasks import MeshRegConfig, MeshRegTask

    S = 96
    task = MeshRegTask(MeshRegConfig(color_jitter=0.0, jitter_shift=4, jitter_scale=0.04, jitter_angle=4),
                       morphable=skin_model)
    yy, xx = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    pts = torch.tensor([[30.0, 40.0, 5.0], [60.5, 55.25, -3.0], [45.0, 70.0, 0.0]])
    imgs = torch.stack([torch.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 2.0 ** 2)).expand(3, S, S)
                        for p in pts[:2]])  # i1 with a blob at pts[0], i2 at pts[1]
    meshes = pts.unsqueeze(0).expand(2, -1, -1).clone()
    ctx = StepContext(torch.device("cpu"), seed=1)
    ctx.iteration, ctx.indices = 4, torch.tensor([0])
    out_img, out_mesh = task.augment(imgs, meshes, ctx)
    for k in range(2):
        w = out_img[k, 0]
        c = torch.stack([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
        assert torch.allclose(c, out_mesh[k, k, :2], atol=0.05), (c, out_mesh[k, k])
        assert (out_mesh[k, k, :2] - pts[k, :2]).norm() > 0.1  # it did move
    # z is scaled by the similarity's scale, the distances between vertices by the same factor
    s = (out_mesh[0, 0] - out_mesh[0, 1])[:2].norm() / (pts[0] - pts[1])[:2].norm()
    assert out_mesh[0, 2, 2] == 0 and torch.allclose(out_mesh[0, 0, 2] / pts[0, 2], s, atol=1e-5)
    assert abs(float(s) - 1) <= 0.04 + 1e-6


def test_validation_metrics_have_analytic_values():
    """DFFNet: zero flow against FakeFlowPairs' constant (2, -1, 0.5) on the disc scores |(2, -1, 0.5)|
    (3D) and |(2, -1)| (2D) however the disc is batched; 3DMeshReg: mesh1 + (3, 4, 12) scores 13 (3D)
    and 5 (x, y). Both are the benchmarks' metrics (faceflow.nets.metrics)."""
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask, MeshRegTask

    class ZeroFlowNet(nn.Module):
        def forward(self, i1, i2, pncc):
            return [torch.zeros(i1.shape[0], 3, *i1.shape[-2:])]

    class Offset(nn.Module):
        def __init__(self, mesh1):
            super().__init__()
            self.mesh1 = mesh1

        def forward(self, images):  # the right mesh of each image (i1s, then i2s) moved by (3, 4, 12)
            return self.mesh1[:images.shape[0]] + torch.tensor([3.0, 4.0, 12.0])

    ds = FakeFlowPairs(3, 64)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    ctx = StepContext(torch.device("cpu"), seed=0)
    v = DFFNetTask(DFFNetConfig()).validate({"net": ZeroFlowNet()}, loader, ctx)
    assert v["val_metric"] == v["aepe_3d"] == pytest.approx(float(np.sqrt(5.25)), rel=1e-6)
    assert v["aepe_2d"] == pytest.approx(float(np.sqrt(5.0)), rel=1e-6)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    meshes = torch.cat([batch["mesh1"], batch["mesh2"]])
    v = MeshRegTask().validate({"net": Offset(meshes)}, [batch], ctx)
    assert v["val_metric"] == v["vertex_px"] == pytest.approx(13.0, rel=1e-6)
    assert v["vertex_px_2d"] == pytest.approx(5.0, rel=1e-6)


def test_val_subset_is_the_shared_evenly_spaced_selection():
    from faceflow.data.splits import evenly_spaced

    assert val_subset(10, 0).tolist() == list(range(10)) == val_subset(10, 12).tolist()
    assert np.array_equal(val_subset(1000, 64), evenly_spaced(1000, 64)) and len(val_subset(1000, 64)) == 64


def test_dffnet_colour_jitter_identical_on_both_images():
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask

    img = torch.rand(3, 3, 16, 16) * 0.6 + 0.2
    ctx = StepContext(torch.device("cpu"), seed=2)
    ctx.iteration, ctx.indices = 0, torch.tensor([4, 7, 9])
    x1, x2 = DFFNetTask(DFFNetConfig(color_jitter=0.3, brightness=0.0)).augment(img, img.clone(), ctx)
    assert torch.equal(x1, x2) and not torch.allclose(x1, img)
    x1, x2 = DFFNetTask(DFFNetConfig(color_jitter=0.3, brightness=0.1)).augment(img, img.clone(), ctx)
    # an independent brightness factor per pair on i2 (within +-10 %), where nothing was clamped
    for k in range(3):
        ok = (x2[k] < 1) & (x1[k] > 0) & (x1[k] < 1)
        r = x2[k][ok] / x1[k][ok]
        assert ok.float().mean() > 0.5 and torch.allclose(r, r[0].expand_as(r), atol=1e-5)
        assert 0 < abs(float(r[0]) - 1) <= 0.1


# ============================================================================ command line, datasets
def _parser(task: str) -> argparse.ArgumentParser:
    """The parser of ``faceflow train TASK`` as the command line builds it."""
    from faceflow import cli
    from faceflow.commands import train as train_cmd

    return cli.command_parser(getattr(train_cmd, task.upper()), f"faceflow train {task}")


def test_cli_presets_overrides_and_help(tmp_path, capsys):
    from faceflow.engine.dff_tasks import DFFNetTask, MeshRegTask

    args = _parser("dffnet").parse_args(["--data", "a", "b", "--out", str(tmp_path), "--width", "0.5",
                                 "--iterations", "7", "--preset", "paper"])
    cls = DFFNetTask
    preset = cls.presets()[args.preset]
    cfg = config_from_args(args, preset["train"])
    assert (cfg.iterations, cfg.batch_size, cfg.lr, cfg.amp) == (7, 16, 1e-4, "bf16")
    assert cfg.data == ["a", "b"] and cfg.val_data == []
    task = cls.from_args(args, preset["task"])
    assert task.config.width == 0.5 and task.config.alpha == 10.0 and task.config.use_pncc == "full"
    args = _parser("meshreg").parse_args(["--data", "a", "--out", str(tmp_path)])
    cfg = config_from_args(args, MeshRegTask.presets()["tiny"]["train"])
    assert (cfg.iterations, cfg.batch_size, cfg.val_every, cfg.val_samples, cfg.ckpt_every) == (2000, 8, 200, 64, 100)
    assert MeshRegTask.from_args(args, MeshRegTask.presets()["tiny"]["task"]).config.backbone == "resnet18"
    for spelling in ("--pretrained", "--pretrained-path"):  # the task's flags come from its config's fields too
        args = _parser("meshreg").parse_args(["--data", "a", "--out", str(tmp_path), spelling, "r18.pth",
                                              "--preset", "paper", "--jitter-angle", "0"])
        c = MeshRegTask.from_args(args, MeshRegTask.presets()["paper"]["task"]).config
        assert (c.pretrained_path, c.backbone, c.jitter_angle, c.jitter_shift) == ("r18.pth", "resnet50", 0.0, 4.0)
    args = _parser("dffnet").parse_args(["--data", "a", "--out", str(tmp_path), "--scale-weights", *"1234567"])
    c = DFFNetTask.from_args(args, DFFNetTask.presets()["tiny"]["task"]).config
    assert c.scale_weights == [1, 2, 3, 4, 5, 6, 7] and (c.width, c.max_displacement, c.pncc_source) == (0.25, 4, "gt")
    with pytest.raises(SystemExit):
        _parser("dffnet").parse_args(["--help"])
    text = capsys.readouterr().out
    for opt in ("--max-minutes", "--amp", "--use-pncc", "--alpha", "--overwrite", "--tensorboard"):
        assert opt in text
    assert "tiny 0.25, paper 1.0" in text and "tiny 2000, paper 300000" in text


def test_cli_export(tmp_path):
    out = tmp_path / "run"
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask
    task = _with_data(DFFNetTask, FakeFlowPairs(2, 64), None)(DFFNetConfig(width=0.125))
    train(task, _cfg(out, iterations=1, batch_size=2), progress=False)
    args = _parser("export").parse_args([str(out), "--out", str(tmp_path / "w.pt"), "--half", "--which", "last"])
    from faceflow.commands import train as train_cmd
    assert train_cmd.EXPORT.run(args) == 0
    from faceflow.engine.weights import weights_info
    info = weights_info(tmp_path / "w.pt")
    assert info["kind"] == "dffnet" and info["config"] == {"use_pncc": "full", "width": 0.125,
                                                          "max_displacement": 20, "stride2": 2}
    assert info["meta"]["checkpoint"] == "last.pt"
    with pytest.raises(FaceflowError, match="training checkpoint"):
        from faceflow.engine.weights import load_weights
        load_weights(checkpoint_path(out, "last"))


def test_dataset_directories_are_recognised_by_manifest(tmp_path):
    from faceflow.engine.dff_tasks import dataset_kind, open_flow_datasets

    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "manifest.json").write_text(json.dumps({"kind": "synthetic"}))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "manifest.json").write_text(json.dumps({"layout": {"flow.npy": "..."}, "complete": True}))
    (tmp_path / "half").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"kind": "video"}))
    assert dataset_kind(tmp_path / "syn") == "synthetic" and dataset_kind(tmp_path / "ann") == "annotated"
    with pytest.raises(FaceflowError, match="no manifest.json"):
        dataset_kind(tmp_path / "half")
    with pytest.raises(FaceflowError, match="neither"):
        dataset_kind(tmp_path / "other")
    with pytest.raises(FaceflowError, match="not found"):
        dataset_kind(tmp_path / "nope")
    assert open_flow_datasets([]) is None


# ============================================================================ provenance
@dataclass
class FakeConfigWithInit(FakeConfig):
    init_path: str | None = None  # a "pretrained" file: recorded with its sha256


def _as_typed(monkeypatch, argv):
    """sys.argv as the console script `faceflow` would see it."""
    import sys
    import types

    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=None))


def test_run_config_and_manifest_hold_no_absolute_paths(tmp_path, monkeypatch):
    import hashlib

    from _portable import assert_portable

    data, init, out = tmp_path / "data", tmp_path / "init.pt", tmp_path / "runs" / "run"
    data.mkdir()
    init.write_bytes(b"pretrained")
    _as_typed(monkeypatch, [str(tmp_path / "venv" / "bin" / "faceflow"), "train", "fake", "--data", str(data),
                            "--out", str(out)])
    task = FakeTask(FakeConfigWithInit(init_path=str(init)))
    train(task, _cfg(out, iterations=2, data=[str(data)]), progress=False)
    conf = assert_portable(out / "config.json", tmp_path)
    assert conf["train"]["data"] == ["../../data"] and conf["task_config"]["init_path"] == "init.pt"
    assert conf["provenance"]["command"] == "faceflow train fake --data data --out run"
    assert conf["provenance"]["weights"]["init_path"]["sha256"] == hashlib.sha256(b"pretrained").hexdigest()
    man = assert_portable(out / "manifest.json", tmp_path)
    assert man["command"] == conf["provenance"]["command"] and man["provenance"]["device"].startswith("cpu")
    w = man["provenance"]["weights"]
    last = out / "checkpoints" / "last.pt"
    assert w["last_checkpoint"] == {"file": "checkpoints/last.pt", "bytes": last.stat().st_size,
                                    "sha256": hashlib.sha256(last.read_bytes()).hexdigest()}
    assert w["init_path"]["file"] == "init.pt"
    # the portable config.json still identifies the run: resuming from it alone is accepted ...
    import shutil
    shutil.rmtree(out / "checkpoints")
    train(FakeTask(FakeConfigWithInit(init_path=str(init))), _cfg(out, iterations=2, data=[str(data)]),
          progress=False)
    # ... and other data is still refused
    (tmp_path / "other").mkdir()
    other = _cfg(out, iterations=2, data=[str(tmp_path / "other")])
    with pytest.raises(FaceflowError, match=r"train\.data"):
        train(FakeTask(FakeConfigWithInit(init_path=str(init))), other, progress=False)


def test_exported_weights_meta_holds_no_absolute_paths(tmp_path, monkeypatch):
    import hashlib

    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask
    from faceflow.engine.weights import export_run, weights_info

    out = tmp_path / "run"
    _as_typed(monkeypatch, [str(tmp_path / "venv" / "bin" / "faceflow"), "train", "dffnet", "--out", str(out)])
    task = _with_data(DFFNetTask, FakeFlowPairs(2, 64), None)(DFFNetConfig(width=0.125))
    train(task, _cfg(out, iterations=1, batch_size=2, data=[str(tmp_path / "data")]), progress=False)
    meta = weights_info(export_run(out, tmp_path / "w.pt", which="last"))["meta"]
    text = json.dumps(meta)
    assert str(tmp_path) not in text and "/root/" not in text and "/work/" not in text, text[:500]
    assert meta["run_dir"] == "run" and meta["data"] == ["../data"]
    assert meta["command"] == "faceflow train dffnet --out run"
    ck = meta["provenance"]["weights"]["checkpoint"]
    assert ck["file"] == "checkpoints/last.pt"
    assert ck["sha256"] == hashlib.sha256(checkpoint_path(out, "last").read_bytes()).hexdigest()
    assert {"faceflow", "torch", "numpy", "python"} <= set(meta["provenance"]["versions"])


def test_dffnet_task_with_a_dis_start_trains_and_validates(tmp_path):
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask

    task = _with_data(DFFNetTask, FakeFlowPairs(2, 64), FakeFlowPairs(2, 64, seed=9))(
        DFFNetConfig(width=0.125, color_jitter=0.0, brightness=0.0, init="dis"))
    out = tmp_path / "dis"
    s = train(task, _cfg(out, iterations=4, batch_size=2, lr=1e-3, warmup_steps=0, val_every=4), progress=False)
    rows = read_csv(out / "log.csv")
    assert s["step"] == 4 and all(np.isfinite(float(r["loss"])) for r in rows)
    assert np.isfinite(s["val"]["aepe_3d"]) and s["val"]["aepe_2d"] <= s["val"]["aepe_3d"]
    assert json.loads((out / "config.json").read_text())["task_config"]["init"] == "dis"


class _WithHeadFlow(FakeFlowPairs):
    """FakeFlowPairs whose head-motion flow is known: half the flow (the other half: expression)."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        item["head_flow"], item["has_head_flow"] = item["flow"] * 0.5, torch.tensor(True)
        return item


def test_decomposed_dffnet_trains_on_both_targets_and_exports(tmp_path):
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask
    from faceflow.engine.weights import export_run, load_weights

    cfg = DFFNetConfig(width=0.125, color_jitter=0.0, brightness=0.0, decompose=True)
    task = _with_data(DFFNetTask, _WithHeadFlow(2, 64), _WithHeadFlow(2, 64, seed=9))(cfg)
    out = tmp_path / "dec"
    s = train(task, _cfg(out, iterations=12, batch_size=2, lr=1e-3, warmup_steps=0, val_every=12), progress=False)
    rows = read_csv(out / "log.csv")
    assert "epe_head" in rows[0] and rows[-1]["epe_head"] < rows[0]["epe_head"]
    assert s["val"]["head_pixels"] > 0 and np.isfinite(s["val"]["aepe_head_3d"])
    rec = json.loads((out / "config.json").read_text())["task_config"]
    assert rec["decompose"] is True and rec["head_weight"] == 1.0
    net = load_weights(export_run(out, tmp_path / "dec.pt", half=False))
    assert net.decompose
    # pairs without a head-motion flow add nothing to the loss
    plain = DFFNetTask(cfg)
    b = torch.utils.data.default_collate([FakeFlowPairs(1, 64)[0]])
    heads = [torch.ones(1, 3, 64, 64)]
    total, epe = plain._head_loss(heads, b)
    assert float(total) == 0 and float(epe) == 0
    assert "decompose" not in DFFNetTask(DFFNetConfig()).config_dict()  # older runs still resume


class _RealKind(FakeFlowPairs):
    """FakeFlowPairs marked as real video pairs (pseudo ground truth)."""

    def __getitem__(self, i):
        return {**super().__getitem__(i), "kind": torch.tensor(1)}


def test_dffnet_inplane_pairs_replace_the_drawn_rows():
    from faceflow.engine.dff_tasks import KIND_INPLANE, DFFNetConfig, DFFNetTask

    b = torch.utils.data.default_collate([_RealKind(3, 64)[i] for i in range(3)])
    u = torch.tensor([[0.1, 0.9, 0.2, 0.7, 0.9], [0.8, 0.5, 0.5, 0.5, 0.9], [0.2, 0.5, 0.5, 0.5, 0.1]])
    out = DFFNetTask(DFFNetConfig(inplane=0.5))._with_inplane_pairs(b, u)
    assert out["kind"].tolist() == [KIND_INPLANE, 1, KIND_INPLANE]
    assert torch.equal(out["i2"][1], b["i2"][1]) and torch.equal(out["flow"][1], b["flow"][1])  # row 1 kept
    assert torch.equal(out["flow"][0][..., 2], torch.zeros(64, 64)) and out["flow"][0][..., :2].abs().max() > 1
    assert torch.equal(out["i2"][2], b["i1"][2]) and torch.equal(out["flow"][2], torch.zeros(64, 64, 3))  # identical
    assert torch.equal(out["head_flow"][0], out["flow"][0]) and out["has_head_flow"].tolist() == [True, False, True]
    assert DFFNetTask(DFFNetConfig())._with_inplane_pairs(b, u) is b


def test_flow_loss_pair_weights_scale_each_pairs_end_point_terms():
    from faceflow.nets.losses import flow_loss

    gt = torch.zeros(2, 8, 8, 3)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    pred = [torch.zeros(2, 3, 8, 8)]
    pred[0][0, 0] = 1.0  # pair 0 off by 1 px, pair 1 by 3 px
    pred[0][1, 0] = 3.0
    assert float(flow_loss(pred, gt, mask, alpha=0)[0]) == pytest.approx(2.0)
    assert float(flow_loss(pred, gt, mask, alpha=0, pair_weights=torch.tensor([1.0, 0.0]))[0]) == pytest.approx(0.5)
    assert float(flow_loss(pred, gt, mask, alpha=0, pair_weights=torch.tensor([1.0, 0.5]))[0]) == pytest.approx(1.25)


def test_dffnet_self_supervision_on_real_pairs_trains_and_is_recorded(tmp_path):
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask

    cfg = DFFNetConfig(width=0.125, color_jitter=0.0, brightness=0.0, self_weight=0.05, pseudo_weight=0.5,
                       inplane=0.3)
    task = _with_data(DFFNetTask, _RealKind(4, 64), FakeFlowPairs(2, 64, seed=9))(cfg)
    out = tmp_path / "self"
    s = train(task, _cfg(out, iterations=3, batch_size=2, lr=1e-3, warmup_steps=0, val_every=3), progress=False)
    rows = read_csv(out / "log.csv")
    assert s["step"] == 3 and {"census", "smooth"} <= set(rows[0])
    assert all(np.isfinite(float(r["census"])) and float(r["census"]) > 0 for r in rows)
    rec = json.loads((out / "config.json").read_text())["task_config"]
    assert (rec["self_weight"], rec["smooth_weight"], rec["pseudo_weight"], rec["inplane"], rec["inplane_shift"]) == (
        0.05, 0.5, 0.5, 0.3, 5.0)
    plain = DFFNetTask(DFFNetConfig()).config_dict()  # runs made before these options still resume
    assert not {"inplane", "inplane_shift", "self_weight", "smooth_weight", "pseudo_weight"} & set(plain)


def test_packed_run_is_smaller_and_resumes_elsewhere(tmp_path):
    """A packed run (fp32 weights, bf16 moments, portable config) resumes in another folder with
    data directories of the same names; without the optimizer it resumes with fresh moments."""
    from faceflow.engine.checkpoint import pack_run

    data_a, data_b = tmp_path / "a" / "clips", tmp_path / "b" / "clips"
    data_a.mkdir(parents=True)
    data_b.mkdir(parents=True)
    run = tmp_path / "run"
    train(FakeTask(), _cfg(run, iterations=3, data=[str(data_a)]), progress=False)
    full = _weights(run)
    path = pack_run(run, tmp_path / "packs" / "p")
    packed = load_checkpoint(path)
    assert packed["packed"] == {"from": "run", "optimizer": "bfloat16"} and packed["step"] == 3
    for k, v in full["models"]["net"].items():
        assert torch.equal(packed["models"]["net"][k], v.float())
    moments = [v for st in packed["optimizers"]["net"]["state"].values() for v in st.values()
               if torch.is_tensor(v) and v.numel() > 1]
    assert moments and all(v.dtype == torch.bfloat16 for v in moments)
    assert str(tmp_path) not in json.dumps(packed["config"])  # no machine paths
    assert (path.parent.parent / "log.csv").read_text() == (run / "log.csv").read_text()

    moved = tmp_path / "moved"  # the pack copied elsewhere, the data in another folder of the same name
    shutil.copytree(path.parent.parent, moved)
    s = train(FakeTask(), _cfg(moved, iterations=5, data=[str(data_b)]), progress=False)
    assert s["step"] == 5 and [int(r["step"]) for r in read_csv(moved / "log.csv")] == [1, 2, 3, 4, 5]
    with pytest.raises(FaceflowError, match="different configuration"):
        train(FakeTask(), _cfg(moved, iterations=6, lr=0.5, data=[str(data_b)]), progress=False)

    light = pack_run(run, tmp_path / "light", optimizer=False)
    assert "optimizers" not in load_checkpoint(light) and light.stat().st_size < path.stat().st_size
    assert train(FakeTask(), _cfg(tmp_path / "light", iterations=4, data=[str(data_b)]), progress=False)["step"] == 4


def test_init_weights_starts_a_new_run_from_a_checkpoint_or_refuses_another_kind(tmp_path, capsys):
    """--init-weights: the networks (only) come from another run's checkpoint; the new run counts
    its own steps. A weights file of another kind, or a file of neither format, is refused."""
    from faceflow.engine.weights import save_weights
    from faceflow.nets.dffnet import DFFNet

    train(FakeTask(), _cfg(tmp_path / "a"), progress=False)
    a = _weights(tmp_path / "a")["models"]["net"]
    init = str(checkpoint_path(tmp_path / "a", "last"))
    train(FakeTask(), _cfg(tmp_path / "b", iterations=1, lr=1e-12, init_weights=init), progress=False)
    b = _weights(tmp_path / "b")
    assert b["step"] == 1
    for k in a:  # one step at lr 1e-12 away from run a's weights
        assert torch.allclose(a[k], b["models"]["net"][k], atol=1e-8), k
    assert "initialised net from" in capsys.readouterr().err
    train(FakeTask(), _cfg(tmp_path / "c", iterations=1, lr=1e-12), progress=False)
    c = _weights(tmp_path / "c")["models"]["net"]
    assert any(not torch.allclose(a[k], c[k], atol=1e-3) for k in a)  # without it: a fresh start
    other = save_weights(DFFNet("none", width=0.125), "dffnet", {"use_pncc": "none", "width": 0.125},
                         tmp_path / "dff.pt")
    with pytest.raises(FaceflowError, match="holds 'dffnet' weights"):
        train(FakeTask(), _cfg(tmp_path / "d", init_weights=other), progress=False)
    torch.save({"format": "faceflow-weights/1", "kind": "fake"}, tmp_path / "broken.pt")
    with pytest.raises(FaceflowError, match="without a state_dict"):
        train(FakeTask(), _cfg(tmp_path / "f", init_weights=str(tmp_path / "broken.pt")), progress=False)
    torch.save({"x": torch.zeros(1)}, tmp_path / "junk.pt")
    with pytest.raises(FaceflowError, match="neither"):
        train(FakeTask(), _cfg(tmp_path / "e", init_weights=str(tmp_path / "junk.pt")), progress=False)


def test_options_added_later_count_as_their_old_meaning_on_resume():
    from faceflow.engine.checkpoint import config_diff

    old = {"task": "reenact", "train": {"seed": 0}, "task_config": {"flow": "dis2d", "generator": {"ngf": 8},
                                                                    "losses": {"lambda_feat": 10.0}}}
    later = {"perceptual": "none", "generator.upsample": "transpose", "losses.lambda_face": 1.0}
    same = {"task": "reenact", "train": {"seed": 0},
            "task_config": {"flow": "dis2d", "perceptual": "none", "generator": {"ngf": 8, "upsample": "transpose"},
                            "losses": {"lambda_feat": 10.0, "lambda_face": 1.0}}}
    assert config_diff(old, same, later) == []
    assert len(config_diff(old, same)) == 3                            # without the table: three differences
    new = {**same, "task_config": {**same["task_config"], "perceptual": "dffnet",
                                   "generator": {"ngf": 8, "upsample": "resize"}}}
    assert config_diff(old, new, later) == ["task_config.generator: {'ngf': 8, 'upsample': 'transpose'} -> "
                                            "{'ngf': 8, 'upsample': 'resize'}",
                                            "task_config.perceptual: 'none' -> 'dffnet'"]

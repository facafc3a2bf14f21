"""Loading user-supplied weights and checkpoints (faceflow.engine.weights.load_tensors): a file that
holds objects other than tensors is refused for safety without running anything in it (and
without torch's advice to load it with weights_only=False), a truncated or corrupt file gets the
'corrupt or truncated' message, and the command-line entry points exit non-zero with the message."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _media import REPO

from faceflow.engine.weights import load_weights, save_weights
from faceflow.errors import FaceflowError
from faceflow.io.safeload import UnsafeFileError, load_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

ADVICE = ("weights_only=False", "will likely succeed", "weights_only` set to `False", "add_safe_globals")


class Payload:
    """Unpickling this creates ``marker`` (with ``open``): proof that code in the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Custom:
    """An ordinary class instance: not a tensor either."""

    def __init__(self):
        self.x = 1


def _evil_files(d: Path, marker: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    files = {"zip": d / "evil_zip.pt", "legacy": d / "evil_legacy.pt", "pickle": d / "evil_pickle.pt",
             "pickle0": d / "evil_pickle0.pt", "custom": d / "custom.pt", "module": d / "module.pt"}
    torch.save({"state_dict": {"w": torch.zeros(3)}, "x": Payload(marker)}, files["zip"])
    torch.save({"x": Payload(marker)}, files["legacy"], _use_new_zipfile_serialization=False)
    files["pickle"].write_bytes(pickle.dumps(Payload(marker), protocol=pickle.HIGHEST_PROTOCOL))
    files["pickle0"].write_bytes(pickle.dumps(Payload(marker), protocol=0))
    torch.save({"obj": Custom()}, files["custom"])
    torch.save(torch.nn.Linear(2, 2), files["module"])                # a whole module, not a state dict
    return files


def _assert_refused(msg: str, path: Path) -> None:
    assert "refused for safety" in msg and "objects other than tensors" in msg, msg
    assert "was not loaded and nothing in it was executed" in msg
    assert str(path) in msg
    for a in ADVICE:
        assert a not in msg, msg
    assert "corrupt" not in msg


def test_payload_is_live(tmp_path):
    """Control: the payload really creates its marker when unpickled unsafely."""
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


def test_unsafe_files_are_refused_without_running(tmp_path):
    marker = tmp_path / "MARKER"
    files = _evil_files(tmp_path / "f", marker)
    for kind, f in files.items():
        with pytest.raises(UnsafeFileError) as ei:
            load_tensors(f)
        _assert_refused(str(ei.value), f)
        assert ei.value.__cause__ is None and ei.value.__suppress_context__  # torch's advice not chained
        with pytest.raises(UnsafeFileError, match="refused for safety"):
            load_weights(f)
    assert "(io.open)" in str(_err(load_tensors, files["zip"]))       # names what it refers to
    assert "Custom" in str(_err(load_tensors, files["custom"]))
    assert "torch.nn.modules.linear.Linear" in str(_err(load_tensors, files["module"]))
    assert not marker.exists()


def _err(fn, *a) -> BaseException:
    try:
        fn(*a)
    except BaseException as e:
        return e
    raise AssertionError(f"{fn.__name__}{a} did not raise")


def test_corrupt_and_truncated_files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(5000.0)}, good)
    assert torch.equal(load_tensors(good)["w"], torch.arange(5000.0))
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(5000.0)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_tensors(legacy)["w"], torch.arange(5000.0))
    cases = {"trunc.pt": good.read_bytes()[: good.stat().st_size // 2],
             "trunc_legacy.pt": legacy.read_bytes()[: legacy.stat().st_size // 2],
             "empty.pt": b"", "text.pt": b"this is not a torch file",
             "random.pt": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        e = _err(load_tensors, tmp_path / name, "checkpoint")
        assert type(e) is FaceflowError, (name, e)
        msg = str(e)
        assert msg.startswith(f"{tmp_path / name}: not a readable checkpoint (corrupt or truncated?)"), msg
        assert "refused for safety" not in msg
        for a in ADVICE:
            assert a not in msg, msg
    # a truncated unsafe file cannot be read at all: corrupt, and still nothing runs
    marker = tmp_path / "MARKER"
    evil = _evil_files(tmp_path / "f", marker)["zip"]
    (tmp_path / "evil_trunc.pt").write_bytes(evil.read_bytes()[:-200])
    assert "corrupt or truncated" in str(_err(load_tensors, tmp_path / "evil_trunc.pt"))
    assert not marker.exists()


def test_every_loader_refuses(tmp_path):
    """The checkpoint reader (training resume, export, reenact), the backbone / VGG / benchmark
    weight readers all go through load_tensors."""
    from faceflow.engine.checkpoint import load_checkpoint
    from faceflow.nets.meshreg import _load_backbone
    from reenact.run import load_model
    from vid2vid.losses import VGG19Loss

    marker = tmp_path / "MARKER"
    evil = _evil_files(tmp_path / "f", marker)["zip"]
    _assert_refused(str(_err(load_checkpoint, evil)), evil)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
    _assert_refused(str(_err(load_model, run)), run / "checkpoints" / "last.pt")
    _assert_refused(str(_err(_load_backbone, "resnet18", evil)), evil)
    _assert_refused(str(_err(VGG19Loss, evil)), evil)
    from evaluation.flow_methods import _weights_info

    _assert_refused(str(_err(_weights_info, evil)), evil)
    assert not marker.exists()
    # and a real weights file still loads
    from faceflow.nets.dffnet import DFFNet

    net = DFFNet("depth", width=0.125)
    p = save_weights(net, "dffnet", {"use_pncc": "depth", "width": 0.125}, tmp_path / "ok.pt")
    assert not load_weights(p).training


def _cli(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faceflow", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_cli_exits_nonzero_with_the_message(tmp_path):
    from faceflow import io as vio

    marker = tmp_path / "MARKER"
    evil = _evil_files(tmp_path / "f", marker)["zip"]
    # python -m faceflow train export RUN (reads the run's checkpoint)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ck = run / "checkpoints" / "last.pt"
    ck.write_bytes(evil.read_bytes())
    r = _cli(["train", "export", str(run), "--which", "last", "--out", str(tmp_path / "w.pt")], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    _assert_refused(r.stderr, ck)
    assert not (tmp_path / "w.pt").exists()
    # python -m faceflow flow --weights DIR (meshreg.pt / dffnet.pt)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for name in ("meshreg.pt", "dffnet.pt"):
        (wdir / name).write_bytes(evil.read_bytes())
    img = np.full((64, 64, 3), 120, np.uint8)
    vio.write_image(tmp_path / "a.png", img)
    vio.write_image(tmp_path / "b.png", img)
    r = _cli(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--weights", str(wdir),
              "--out", str(tmp_path / "out"), "--device", "cpu"], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    _assert_refused(r.stderr, wdir / "meshreg.pt")
    # a truncated weights file: the corrupt message, non-zero exit too
    (wdir / "meshreg.pt").write_bytes(evil.read_bytes()[:100])
    r = _cli(["flow", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--weights", str(wdir),
              "--out", str(tmp_path / "out"), "--device", "cpu"], tmp_path)
    assert r.returncode == 2 and "not a readable weights file (corrupt, truncated" in r.stderr, r.stderr[-2000:]
    assert not any(a in r.stderr for a in ADVICE)
    assert not marker.exists()

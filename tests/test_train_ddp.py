"""DDP in the training harness: ``torchrun --nproc_per_node 2`` (gloo, CPU) on the fake task of
test_train.py gives the weights of a single-process run with the same global batch, and only
rank 0 writes files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from test_train import FakeConfig, FakeTask, _cfg

from faceflow.engine.checkpoint import checkpoint_path, load_checkpoint
from faceflow.engine.logbook import read_csv
from faceflow.engine.trainer import train

pytestmark = pytest.mark.slow  # starts two training processes

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Launched by torchrun: records every file write of the harness per rank, then trains.
SCRIPT = r'''
import json, os, sys
sys.path[:0] = [{root!r}, {tests!r}]
import torch
torch.set_num_threads(1)
import faceflow.io as fio
import faceflow.engine.trainer as T
from test_train import FakeConfig, FakeTask

rank = os.environ["RANK"]
record = open(os.path.join({logdir!r}, "writes_rank" + rank + ".txt"), "a")

def spy(name, fn, where):
    def wrapped(*a, **k):
        record.write(name + " " + str(where(a)) + "\n")
        record.flush()
        return fn(*a, **k)
    return wrapped

T.atomic_torch_save = spy("save", T.atomic_torch_save, lambda a: a[1])
fio.save_json = spy("json", fio.save_json, lambda a: a[0])
T.CsvLog.__init__ = spy("csv", T.CsvLog.__init__, lambda a: a[1])
T.CsvLog.write = spy("csv", T.CsvLog.write, lambda a: a[0].path)
cfg = T.TrainConfig(**json.loads(sys.argv[1]))
summary = T.train(FakeTask(FakeConfig(dropout=0.0)), cfg, progress=False)
record.write("done " + json.dumps(summary["step"]) + "\n")
'''


def _distributed_ok() -> str | None:
    import torch.distributed as dist
    if not dist.is_available():
        return "torch.distributed is not available in this PyTorch build"
    if not dist.is_gloo_available():
        return "the gloo backend of torch.distributed is not available"
    return None


@pytest.mark.skipif(_distributed_ok() is not None, reason=str(_distributed_ok()))
def test_ddp_two_processes_match_single_process(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path / "ddp", iterations=6, batch_size=8, val_every=3)
    script = tmp_path / "launch.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(TESTS), logdir=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # the same run in one process (global batch 8 in one piece)
    train(FakeTask(FakeConfig(dropout=0.0)), _cfg(tmp_path / "one", iterations=6, batch_size=8, val_every=3),
          progress=False)
    a, b = load_checkpoint(checkpoint_path(tmp_path / "one")), load_checkpoint(checkpoint_path(tmp_path / "ddp"))
    assert b["step"] == 6 and len(b["rng"]) == 2  # one RNG state per rank
    for k, v in a["models"]["net"].items():
        assert torch.allclose(v, b["models"]["net"][k], rtol=1e-5, atol=1e-6), k
    la, lb = read_csv(tmp_path / "one" / "log.csv"), read_csv(tmp_path / "ddp" / "log.csv")
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for ra, rb in zip(la, lb):  # losses averaged over the ranks = the global batch's loss
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    va, vb = read_csv(tmp_path / "one" / "val.csv"), read_csv(tmp_path / "ddp" / "val.csv")
    assert [r["step"] for r in va] == [r["step"] for r in vb] == [3.0, 6.0]
    for ra, rb in zip(va, vb):  # rank shards weighted by their sample counts = the whole set
        assert rb["val_metric"] == pytest.approx(ra["val_metric"], rel=1e-5)

    w0 = (tmp_path / "writes_rank0.txt").read_text().splitlines()
    w1 = (tmp_path / "writes_rank1.txt").read_text().splitlines()
    assert w1 == ["done 6"]  # rank 1 trained to the end and wrote nothing
    assert w0[-1] == "done 6"
    assert any(line.startswith("save") and line.endswith("last.pt") for line in w0)
    assert any(line.startswith("json") and line.endswith("config.json") for line in w0)
    assert any(line.startswith("csv") and line.endswith("log.csv") for line in w0)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "checkpoints", "config.json", "log.csv", "manifest.json", "val.csv"]

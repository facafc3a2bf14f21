"""The benchmark commands' run paths: the flow benchmark's busy-neighbour row, the neighbour
process itself, and the command table the start-up benchmark walks."""

from __future__ import annotations

import json
import time

import pytest

from faceflow import cli
from faceflow.commands import bench
from faceflow.runtime.threads import busy_neighbour


def test_busy_neighbour_keeps_a_core_busy_and_stops():
    with busy_neighbour() as nb:
        procs = list(nb._procs)
        assert len(procs) == 1 and procs[0].poll() is None
        t0 = time.process_time()
        time.sleep(0.5)
        # the neighbour burns CPU time of its own, not ours
        with open(f"/proc/{procs[0].pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime of the child
        assert ticks > 0 and time.process_time() - t0 < 0.2
    assert procs[0].poll() is not None  # stopped when the block ends


@pytest.mark.slow
def test_flow_bench_reports_stages_and_the_busy_ratio(capsys):
    parser = cli.command_parser(bench.FLOW, "faceflow bench flow")
    args = parser.parse_args(["--random", "--batches", "1", "--repeat", "2", "--json", "--device", "cpu"])
    assert bench.FLOW.run(args) == 0
    res = json.loads(capsys.readouterr().out)
    row = res["results"][0]
    assert row["batch"] == 1 and row["end_to_end_ms"] > 0 and row["meshreg_ms"] > 0
    assert row["dis_ms"] == 0  # the random light DFFNet takes no DIS input
    b = res["busy_neighbour"]
    assert b["quiet_ms"] > 0 and b["busy_ms"] > 0
    assert b["slowdown"] == pytest.approx(b["busy_ms"] / b["quiet_ms"], abs=0.01)
    assert b["omp_wait_policy"] and b["target_slowdown"] == 2.0
    assert res["provenance"]["versions"]["torch"]


@pytest.mark.slow
def test_flow_bench_times_dis_for_weights_that_take_it(capsys, tmp_path):
    """DFFNet weights trained with init='dis' need DIS's flow as an input: the benchmark computes
    it, times it as its own stage and counts it in the end-to-end time."""
    from faceflow.engine.weights import save_weights
    from faceflow.estimate import WEIGHTS_DIR
    from faceflow.nets import DFFNet

    (tmp_path / "meshreg.pt").symlink_to(WEIGHTS_DIR / "meshreg.pt")
    cfg = {"use_pncc": "full", "width": 0.125, "init": "dis"}
    save_weights(DFFNet(**cfg), "dffnet", cfg, tmp_path / "dffnet.pt")
    parser = cli.command_parser(bench.FLOW, "faceflow bench flow")
    args = parser.parse_args(["--weights", str(tmp_path), "--batches", "1", "--repeat", "1", "--json",
                              "--device", "cpu", "--no-busy"])
    assert bench.FLOW.run(args) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    assert row["dis_ms"] > 0 and row["dffnet_ms"] > 0
    assert row["end_to_end_ms"] > row["registration_ms"] + row["dis_ms"]


def test_the_table_lists_every_command_once():
    from apps.cli import COMMANDS

    found = cli.leaves(COMMANDS)
    paths = [p for p, _ in found]
    assert all(isinstance(c, cli.Command) for _, c in found)
    assert ("flow",) in paths and ("reenact", "train") in paths and ("evaluate", "self-reenact") in paths
    assert ("bench", "startup") in paths and ("app",) in paths and len(paths) == len(set(paths))
    for path in paths:  # every path resolves to a command through the same dispatch as the user's
        node = COMMANDS
        for word in path:
            node = {c.name: c for c in node.commands}[word]
        assert isinstance(node, cli.Command)


def test_reenact_bench_end_to_end_and_bad_device(capsys):
    from reenact.bench import main

    assert main(["--presets", "tiny", "--frames", "2", "--size", "64", "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    g, c = res["generator"][0], res["conditioning"]
    e = res["end_to_end"][0]                                    # conditioning, then the generator, per frame
    assert e["preset"] == "tiny" and e["ms_per_frame"] == pytest.approx(g["ms_per_frame"] + c["ms_per_frame"], abs=0.02)
    assert e["fps"] == pytest.approx(1000 / e["ms_per_frame"], abs=0.1) and e["fps"] < g["fps"]
    assert main(["--device", "tpu"]) == 2 and "tpu" in capsys.readouterr().err

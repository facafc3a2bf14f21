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
    b = res["busy_neighbour"]
    assert b["quiet_ms"] > 0 and b["busy_ms"] > 0
    assert b["slowdown"] == pytest.approx(b["busy_ms"] / b["quiet_ms"], abs=0.01)
    assert b["omp_wait_policy"] and b["target_slowdown"] == 2.0
    assert res["provenance"]["versions"]["torch"]


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

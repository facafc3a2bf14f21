"""The command line: one table of commands, each imported only when chosen, help that reads as
help, usage lines that name the command typed, and a passive OpenMP wait policy."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faceflow import cli
from faceflow.runtime import threads

REPO = Path(__file__).resolve().parents[1]

# builds the parser of every leaf of the installed command's table in one fresh interpreter and
# reports the help texts and whether torch (or torchvision, mediapipe, gradio) got imported on the way
_HELP_ALL = r"""
import json, sys
from apps.cli import COMMANDS
from faceflow.cli import command_parser, leaves, load_target
out = {}
for path, c in leaves(COMMANDS):
    out[" ".join(path)] = command_parser(load_target(c.target), "faceflow " + " ".join(path)).format_help()
heavy = sorted(m for m in ("torch", "torchvision", "mediapipe", "gradio") if m in sys.modules)
print(json.dumps({"help": out, "heavy": heavy}))
"""


def _python(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.fixture(scope="module")
def all_help():
    r = _python("-c", _HELP_ALL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_command_of_the_issue_is_in_the_table(all_help):
    want = {"render", "annotate", "flow", "data synth", "data real", "train meshreg", "train dffnet", "train export",
            "bench flow", "bench startup", "reenact preprocess", "reenact train", "reenact run", "reenact pack",
            "evaluate flow", "evaluate cross-reenact",
            "evaluate self-reenact",
            "app"}
    assert want <= set(all_help["help"])


def test_help_of_every_command_loads_no_heavy_module(all_help):
    assert all_help["heavy"] == [], "building the parsers imported " + ", ".join(all_help["heavy"])


def test_help_reads_as_help(all_help):
    for name, text in all_help["help"].items():
        assert text.startswith(f"usage: faceflow {name}"), name
        for markup in (":func:`", ":class:`", ":mod:`", ":meth:`", ":data:`", "``"):
            assert markup not in text, (name, markup)
        for line in text.replace("\n                        ", " ").splitlines():
            assert line.count("(default:") <= 1, (name, line)
    assert "cycle" in all_help["help"]["reenact run"] and "--back-model" in all_help["help"]["reenact run"]
    assert "--upsample" in all_help["help"]["reenact train"] and "--perceptual" in all_help["help"]["reenact train"]


@pytest.mark.slow
def test_usage_names_the_command_typed():
    r = _python("-m", "faceflow", "flow", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m faceflow flow "), r.stdout[:200]
    r = _python("-m", "reenact", "run", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m reenact run "), r.stdout[:200]
    r = _python("-m", "evaluation.flow_benchmark", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m evaluation.flow_benchmark "), r.stdout[:200]
    script = Path(sys.executable).parent / "faceflow"
    if not script.exists():
        pytest.skip("the project is not installed in this environment (scripts/env.sh installs it)")
    r = subprocess.run([str(script), "reenact", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("usage: faceflow reenact train "), r.stdout[:200]


def test_unknown_or_missing_command_is_a_usage_error():
    r = _python("-m", "apps.cli", "fly")
    assert r.returncode == 2 and "invalid choice: 'fly'" in r.stderr and "Traceback" not in r.stderr
    r = _python("-m", "apps.cli", "data")
    assert r.returncode == 2 and "required: COMMAND" in r.stderr
    r = _python("-m", "apps.cli", "--help")
    assert r.returncode == 0 and "evaluate" in r.stdout and "reenact" in r.stdout and "app" in r.stdout


@pytest.mark.slow
def test_a_command_error_exits_2_without_traceback(tmp_path):
    r = _python("-m", "apps.cli", "flow", str(tmp_path / "missing.png"), str(tmp_path / "b.png"),
                "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_plain_text_removes_sphinx_markup():
    doc = """Line with :func:`~faceflow.io.read_frames`, :class:`FaceFlow` and ``code``.

        Indented :mod:`faceflow.render` and :func:`the thing <faceflow.x.y>`."""
    assert cli.plain_text(doc) == ("Line with read_frames, FaceFlow and code.\n\n"
                                   "Indented faceflow.render and the thing.")


def test_help_formatter_prints_each_default_once():
    p = argparse.ArgumentParser(formatter_class=cli.HelpFormatter)
    p.add_argument("--a", type=int, default=3, help="plain")
    p.add_argument("--b", default=None, help="no default shown")
    p.add_argument("--c", type=int, default=2, help="says it (default: the preset's)")
    p.add_argument("--d", nargs="+", default=[1, 2], help="a list")
    p.add_argument("--e", nargs="+", default=[], help="empty list")
    p.add_argument("--flag", action="store_true", help="a flag")
    text = " ".join(p.format_help().split())
    assert "plain (default: 3)" in text and "a list (default: 1 2)" in text
    assert "no default shown --c" in text and "says it (default: the preset's) --d" in text
    assert "empty list --flag" in text and "a flag" in text and text.count("(default:") == 3


def test_program_name(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=None))
    monkeypatch.setattr(sys, "argv", ["/venv/bin/faceflow", "flow"])
    assert cli.program_name("apps.cli") == "faceflow"
    assert cli.program_name("apps.cli", ["flow"]) == "python -m apps.cli"  # main(argv) called from Python
    spec = types.SimpleNamespace(name="reenact.__main__")
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=spec))
    assert cli.program_name("reenact") == "python -m reenact"


def test_passive_wait_policy_unless_the_user_chose_one():
    code = "import os, faceflow; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.strip() == "PASSIVE"
    r = _python("-c", code, env={"OMP_WAIT_POLICY": "ACTIVE"})
    assert r.stdout.strip() == "ACTIVE"


def test_thread_budget_for_workers():
    assert threads.worker_threads(1, cores=2) == 2
    assert threads.worker_threads(2, cores=2) == 1 and threads.worker_threads(4, cores=2) == 1
    assert threads.worker_threads(3, cores=16) == 5
    env = threads.subprocess_env(3, {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE"})
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["PATH"] == "/bin"
    assert threads.subprocess_env(0, {})["OMP_WAIT_POLICY"] == "PASSIVE"
    assert threads.subprocess_env(0, {})["OMP_NUM_THREADS"] == "1"

"""The environment is the locked one: every package at the lock's version, one OpenCV, no broken
requirements (scripts/check_env.py, also run by scripts/env.sh when it builds the venv)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
spec = importlib.util.spec_from_file_location("check_env", REPO / "scripts" / "check_env.py")
check_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_env)


def test_lock_pins_every_package_exactly():
    text = LOCK.read_text().splitlines()
    reqs = [ln for ln in text if ln.strip() and not ln.lstrip().startswith("#")]
    pins = check_env.read_lock(LOCK)
    assert len(pins) == len(reqs) > 50  # every requirement line is a name==version pin
    assert "torch" in pins and "torchvision" in pins and pins["mediapipe"] == "0.10.21"
    assert not any(name.startswith("opencv") and name != "opencv-contrib-python" for name in pins)


in_locked_venv = pytest.mark.skipif(
    sys.prefix == sys.base_prefix, reason="not running in a virtual environment (scripts/env.sh builds the locked one)")


@in_locked_venv
def test_installed_versions_match_the_lock():
    assert check_env.differences(check_env.read_lock(LOCK), check_env.installed()) == []


@in_locked_venv
def test_one_package_provides_cv2():
    assert check_env.cv2_providers() == ["opencv-contrib-python"]


def test_differences_reports_missing_and_other_versions(tmp_path):
    lock = tmp_path / "r.lock"
    lock.write_text("# header\nfoo==1.0  # via bar\nBar_Baz==2.0\nqux==3 ; python_version >= '3'\n")
    pins = check_env.read_lock(lock)
    assert pins == {"foo": "1.0", "bar-baz": "2.0", "qux": "3"}
    diff = check_env.differences(pins, {"foo": "1.0", "bar-baz": "2.1"})
    assert diff == ["bar-baz: locked 2.0, installed 2.1", "qux: locked 3, not installed"]


def test_pip_check_passes():
    r = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

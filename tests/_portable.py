"""Checks that a written manifest holds no absolute path of this machine (faceflow.runtime.provenance)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def assert_portable(path, *roots) -> dict:
    """Parse the JSON file ``path`` and assert that none of ``roots`` (e.g. tmp_path), the
    machine's usual absolute prefixes nor the repository / home directory appears anywhere in
    it; returns the parsed object."""
    text = Path(path).read_text()
    obj = json.loads(text)
    repo = Path(__file__).resolve().parents[1]
    bad = {str(r) for r in roots} | {os.path.realpath(r) for r in roots}
    bad |= {"/root/", "/work/", "/tmp/", "/home/", str(repo), str(Path.home()) + "/", os.getcwd() + "/"}
    found = sorted(b for b in bad if b and b in text)
    assert not found, f"{path} holds absolute paths of this machine: {found}"
    return obj

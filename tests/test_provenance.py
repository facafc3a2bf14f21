"""faceflow.runtime.provenance: the command, versions, commit, weights hashes and portable paths that
every manifest records."""

import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

from faceflow import __version__
from faceflow.runtime import provenance as P

REPO = Path(__file__).resolve().parents[1]


def test_file_sha256_streams_and_matches_hashlib(tmp_path):
    f = tmp_path / "w.bin"
    data = bytes(range(256)) * 5000 + b"tail"              # several chunks of 1 KiB below
    f.write_bytes(data)
    assert P.file_sha256(f, chunk=1024) == hashlib.sha256(data).hexdigest()
    assert P.file_sha256(f) == hashlib.sha256(data).hexdigest()   # cached, same answer
    f.write_bytes(b"other")                                   # a changed file is hashed again
    assert P.file_sha256(f) == hashlib.sha256(b"other").hexdigest()
    rec = P.file_record(f, tmp_path)
    assert rec == {"file": "w.bin", "bytes": 5, "sha256": hashlib.sha256(b"other").hexdigest()}


def test_command_line_shows_the_users_command_without_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    venv_script = str(tmp_path / "venv" / "bin" / "faceflow")
    assert P.command_line([venv_script, "flow", "a.png", "b b.png", "--out", str(tmp_path / "o")]) == \
        "faceflow flow a.png 'b b.png' --out o"
    assert P.command_line([str(REPO / "faceflow" / "__main__.py"), "render", f"--out={REPO / 'outputs' / 'r'}"]) == \
        "python -m faceflow render --out=outputs/r"
    assert P.command_line([str(REPO / "evaluation" / "self_reenact.py"), "v.mp4"]) == \
        "python -m evaluation.self_reenact v.mp4"
    # a string someone else built (older checkpoints hold such)
    assert P.portable_command(f"{REPO}/faceflow/__main__.py train dffnet --data /elsewhere/data/synth") == \
        "python -m faceflow train dffnet --data synth"
    # from sys.argv, as the console script runs it (its __main__ has no module spec)
    monkeypatch.setattr(sys, "argv", [venv_script, "render", "--out", str(tmp_path / "r")])
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=None))
    assert P.command_line() == "faceflow render --out r"
    # python -m faceflow ...: the module spec names the package
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=types.SimpleNamespace(
        name="faceflow.__main__")))
    monkeypatch.setattr(sys, "argv", [str(REPO / "faceflow" / "__main__.py"), "flow", "a.png", "b.png"])
    assert P.command_line() == "python -m faceflow flow a.png b.png"


def test_provenance_fields(tmp_path):
    w = tmp_path / "net.pt"
    w.write_bytes(b"weights")
    rec = P.provenance(argv=["faceflow", "flow", "x.png"], weights={"dffnet": w, "absent": None},
                       device="cpu", base=tmp_path)
    assert rec["command"] == "faceflow flow x.png"
    v = rec["versions"]
    assert v["faceflow"] == __version__ and v["python"] == ".".join(map(str, sys.version_info[:3]))
    import numpy
    import torch
    assert v["torch"] == torch.__version__ and v["numpy"] == numpy.__version__
    sha = hashlib.sha256(b"weights").hexdigest()
    assert rec["weights"] == {"dffnet": {"file": "net.pt", "bytes": 7, "sha256": sha}}
    assert rec["device"].startswith("cpu (")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if (REPO / ".git").exists() and head.returncode == 0:
        assert rec["git_commit"] == head.stdout.strip() and isinstance(rec["git_dirty"], bool)
    else:
        assert rec["git_commit"] is None
    assert "device" not in P.provenance(argv=["x"])
    json.dumps(rec)                                           # JSON-able as it is


def test_versions_import_nothing_new():
    code = ("import sys; from faceflow.runtime.provenance import versions; v = versions(); "
            "assert 'mediapipe' not in sys.modules and 'cv2' not in sys.modules, sorted(sys.modules); "
            "assert 'torch' not in sys.modules; print(sorted(v))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "'torch'" in r.stdout and "'numpy'" in r.stdout and "'mediapipe'" not in r.stdout


def test_git_missing_is_not_an_error(monkeypatch):
    P.git_state.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        assert P.git_state() == (None, None)
    finally:
        P.git_state.cache_clear()


def test_portable_paths(tmp_path):
    out = tmp_path / "out"
    assert P.portable_path(out / "checkpoints" / "best.pt", out) == "checkpoints/best.pt"
    assert P.portable_path(REPO / "faceflow" / "weights" / "dffnet.pt", out) == "faceflow/weights/dffnet.pt"
    assert P.portable_path(tmp_path / "videos" / "clip.mp4", out) == "clip.mp4"
    assert P.portable_path(tmp_path / "videos" / "clip.mp4", out, climb=True) == "../videos/clip.mp4"
    assert P.resolve_recorded("../videos/clip.mp4", out) == out / "../videos/clip.mp4"
    assert P.resolve_recorded("/old/abs.mp4", out) == Path("/old/abs.mp4")
    assert P.portable_path("/elsewhere/clip.mp4", out, climb=True) == "clip.mp4"   # only / in common
    obj = {"path": str(tmp_path / "x" / "y.pt"), "note": f"read {out}/a/b.npy.", "n": 1, "frac": "1/2, n/a",
           "command": f"{tmp_path}/venv/bin/faceflow train --out {out}", "list": [str(out / "z.png")]}
    got = P.portable_json(obj, out)
    assert got == {"path": "y.pt", "note": "read a/b.npy.", "n": 1, "frac": "1/2, n/a",
                   "command": "faceflow train --out out", "list": ["z.png"]}
    assert str(tmp_path) not in json.dumps(got)


def test_documentation_text_is_left_alone():
    from faceflow.annotate.pipeline import LAYOUT

    assert P.portable_json(LAYOUT) == LAYOUT

"""The main job: ``python -m faceflow render``."""

import json
import subprocess
import sys

import numpy as np
import pytest

from faceflow.__main__ import main
from faceflow.io import read_image


def test_render_writes_consistent_outputs(tmp_path, skin_model):
    out = tmp_path / "demo"
    rc = main(["render", "--out", str(out), "--size", "96", "--seed", "3",
               "--exp2", "jawOpen=0.7", "--yaw2", "20"])
    assert rc == 0
    expected = {"shaded.png", "pncc.png", "nmfc.png", "shaded2.png", "pncc2.png", "nmfc2.png", "flow3d.png",
                "flow2d.png", "flow2d_wheel.png", "flow.npy", "flow_mask.npy", "mesh.obj", "mesh2.obj", "render.json"}
    assert expected <= {p.name for p in out.iterdir()}
    flow, mask = np.load(out / "flow.npy"), np.load(out / "flow_mask.npy")
    assert flow.shape == (96, 96, 3) and flow.dtype == np.float32 and mask.shape == (96, 96)
    pncc = read_image(out / "pncc.png")
    assert np.array_equal(pncc.any(-1), mask)  # the flow is defined exactly where I1 shows the face
    assert (flow[~mask] == 0).all() and np.abs(flow[mask]).max() > 1
    # the camera rotates about the face's landmark centre, so a yaw of +35 degrees moves the
    # nearest points (nose, the largest PNCC depth codes) right and the far ones (ears, neck) left
    z = pncc[..., 2].astype(float)
    near = mask & (z >= np.percentile(z[mask], 98))
    far = mask & (z <= np.percentile(z[mask], 10))
    assert flow[near][:, 0].mean() > 2 and flow[far][:, 0].mean() < -2
    f3 = read_image(out / "flow3d.png")[16:16 + 96, :96]  # under the title band, above the legend
    assert (f3[~mask] == 0).all() and (f3[mask].max(-1) > 0).mean() > 0.5  # black background in the 3D coding
    meta = json.loads((out / "render.json").read_text())
    assert meta["config"]["second"]["expression"] == {"jawOpen": 0.7}
    assert meta["cameras"][1]["angles_deg"][1] == pytest.approx(20.0, abs=1e-3)
    assert meta["foreground_pixels"] == int(mask.sum())


@pytest.mark.slow
def test_render_cli_errors_exit_nonzero(tmp_path):
    cmd = [sys.executable, "-m", "faceflow", "render", "--out", str(tmp_path / "x")]
    bad = subprocess.run(cmd + ["--exp", "jawOpen"], capture_output=True, text=True)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(cmd + ["--exp", "smile=1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown expression" in bad.stderr
    bad = subprocess.run(cmd + ["--size", "5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "size" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_render_without_assets_says_where_it_looked(tmp_path, monkeypatch, capsys):
    import faceflow.runtime.assets as assets
    monkeypatch.setattr(assets, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("FACEFLOW_ASSETS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc = main(["render", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "ict_facekit.npz" in err and str(tmp_path / "empty") in err and "ICT" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_render_json_records_provenance_without_absolute_paths(tmp_path, skin_model):
    import hashlib
    import os
    from pathlib import Path

    from _portable import assert_portable

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    r = subprocess.run([sys.executable, "-m", "faceflow", "render", "--out", str(tmp_path / "r"), "--size", "32"],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = assert_portable(tmp_path / "r" / "render.json", tmp_path)
    prov = meta["provenance"]
    assert prov["command"] == "python -m faceflow render --out r --size 32"
    assert {"faceflow", "python", "torch", "numpy"} <= set(prov["versions"]) and prov["device"].startswith("cpu")
    w = prov["weights"]["morphable_model"]
    assert Path(w["file"]).name == Path(skin_model.path).name and not Path(w["file"]).is_absolute()
    assert w["sha256"] == hashlib.sha256(Path(skin_model.path).read_bytes()).hexdigest()

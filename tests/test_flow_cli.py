"""`faceflow flow` refuses what it cannot answer with a message and exit status 2, and writes no
manifest: a second image without a face or with another face, a video named without a frame, bad
frame numbers, an unknown device, an output path that is a file, options of the other mode."""
from __future__ import annotations

import numpy as np
import pytest
from _media import media

from faceflow import io as vio
from faceflow.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    video = media("videos/EDTalk_uncrop_Obama.mp4")
    a, b, blank = d / "a.png", d / "b.png", d / "blank.png"
    f = list(vio.read_frames(video, max_frames=2))
    vio.write_image(a, f[0])
    vio.write_image(b, f[1])
    vio.write_image(blank, np.full((160, 160, 3), 90, np.uint8))
    return {"video": video, "a": a, "b": b, "blank": blank, "other": media("stills/deepface_img11.jpg"), "dir": d}


def _flow(capsys, *args) -> tuple[int, str]:
    code = main(["flow", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case, words", [
    ("no face in image 2", ["image 2", "no face"]),
    ("another person", ["do not show the same face", "--force"]),
    ("video without a frame", ["is a video", ":N", "faceflow flow"]),
    ("negative frame", ["frame number counted from 0", "'-1'"]),
    ("frame not a number", ["frame number counted from 0", "'abc'"]),
    ("frame past the end", ["has no frame 99999", "500 frames"]),
    ("unknown device", ["device", "tpu"]),
    ("out is a file", ["is an existing file"]),
    ("one still", ["is not a video"]),
    ("video option on a pair", ["--gap", "only apply to a whole video"]),
])
def test_bad_input_exit_2_with_a_message(files, capsys, tmp_path, case, words):
    out = tmp_path / "out"
    a, b, v = files["a"], files["b"], files["video"]
    args = {"no face in image 2": [a, files["blank"]], "another person": [a, files["other"]],
            "video without a frame": [v, b], "negative frame": [f"{v}:-1", b], "frame not a number": [f"{v}:abc", b],
            "frame past the end": [f"{v}:99999", b], "unknown device": [a, b, "--device", "tpu"],
            "out is a file": [a, b], "one still": [a], "video option on a pair": [a, b, "--gap", "2"]}[case]
    if case == "out is a file":
        out = files["a"]
    code, err = _flow(capsys, *args, "--out", out)
    assert code == 2, err
    assert "Traceback" not in err and all(w in err for w in words), err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_another_person_with_force_and_a_good_pair(files, capsys, tmp_path):
    code, err = _flow(capsys, files["a"], files["other"], "--out", tmp_path / "forced", "--force", "--device", "cpu")
    assert code == 0 and (tmp_path / "forced" / "manifest.json").is_file(), err
    import json

    code, err = _flow(capsys, files["a"], files["b"], "--out", tmp_path / "good", "--device", "cpu",
                      "--max-flow", "4", "--min-flow", "0.2")
    assert code == 0, err
    man = json.loads((tmp_path / "good" / "manifest.json").read_text())
    assert man["colour_scale_px"] == 4.0 and man["no_motion_below_px"] == 0.2 and man["landmark_shift_iod"] < 0.1
    fig = vio.read_image(tmp_path / "good" / "flow3d.png")
    h, w = vio.read_image(files["a"]).shape[:2]
    assert fig.shape[0] > h + 60 and fig.shape[1] >= w          # titled, legend below

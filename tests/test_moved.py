"""Old flat import paths (before the stage sub-packages) keep working: faceflow.moved."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from faceflow.moved import MOVED

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_each_old_path_imports_the_module_that_now_holds_it(old):
    module = importlib.import_module(old)
    targets = [importlib.import_module(t) for t in MOVED[old]]
    if len(targets) == 1:
        assert module is targets[0]  # the very same module: classes and functions are identical
        assert module.__spec__.name == MOVED[old][0]  # its own spec is kept
    public = [n for t in targets for n in dir(t) if not n.startswith("_")]
    assert public and all(getattr(module, n) is not None for n in public)


def test_the_names_the_issue_names_are_identical_objects():
    import faceflow.geometry.morphable
    import faceflow.io
    import faceflow.morphable
    from faceflow import FaceFlow
    from faceflow.estimate import FaceFlow as Facade

    assert faceflow.morphable.MorphableModel is faceflow.geometry.morphable.MorphableModel
    assert FaceFlow is Facade
    assert callable(faceflow.io.read_video) and callable(faceflow.io.write_image) and callable(faceflow.io.save_npy)


def test_old_from_imports_work_in_a_fresh_interpreter():
    code = ("from faceflow.landmarks import track_video, make_detector\n"
            "from faceflow.train import train\n"
            "from faceflow.registration import Similarity\n"
            "import faceflow.flowviz as fv, faceflow.render.flowcolor as fc\n"
            "assert fv is fc\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_an_unknown_old_name_still_fails_to_import():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("faceflow.no_such_module")


def test_the_old_annotate_module_names_resolve_on_the_package():
    from faceflow.annotate import LAYOUT, AnnotateConfig, annotate, config, layout, pipeline

    assert annotate is pipeline.annotate and AnnotateConfig is config.AnnotateConfig and LAYOUT is layout.LAYOUT
    with pytest.raises(ImportError):
        from faceflow.annotate import no_such_name  # noqa: F401  (the import itself is the test)

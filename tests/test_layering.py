"""The import graph has no cycle and respects the layers faceflow < vid2vid < reenact <
evaluation < apps (scripts/import_graph.py; function-local imports count)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
ig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ig)


def test_the_project_has_no_import_cycle_and_respects_the_layers():
    graph = ig.module_graph(str(REPO))
    assert "faceflow.io.safeload" in graph["faceflow.engine.checkpoint"]  # the graph is real
    assert ig.cycles(graph) == []
    assert ig.against_layers(graph) == []


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cycles_and_layer_breaches_are_found(tmp_path):
    _write(tmp_path, "faceflow/__init__.py", "")
    _write(tmp_path, "faceflow/a.py", "from . import b\n")
    _write(tmp_path, "faceflow/b.py", "def f():\n    from .c import g\n")  # a late import still counts
    _write(tmp_path, "faceflow/c.py", "import faceflow.a\n")
    _write(tmp_path, "faceflow/d.py", "from faceflow import a\nif __name__ == '__main__':\n    import reenact.x\n")
    _write(tmp_path, "reenact/__init__.py", "")
    _write(tmp_path, "reenact/x.py", "import faceflow.d\n")
    _write(tmp_path, "vid2vid/__init__.py", "")
    _write(tmp_path, "vid2vid/y.py", "from reenact import x\nimport vid2vid\n")  # upward; own package is fine
    graph = ig.module_graph(str(tmp_path))
    assert ig.cycles(graph) == [["faceflow.a", "faceflow.b", "faceflow.c"]]
    assert ig.against_layers(graph) == [("vid2vid.y", "reenact"), ("vid2vid.y", "reenact.x")]
    assert "reenact.x" not in graph["faceflow.d"]  # the __main__ block is the command line, not the library


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    # faceflow.engine.t imports faceflow.nets.m, which first runs faceflow/nets/__init__.py; that
    # __init__ importing faceflow.nets.w, which imports faceflow.engine.t, closes a cycle
    _write(tmp_path, "faceflow/__init__.py", "")
    _write(tmp_path, "faceflow/nets/__init__.py", "from faceflow.nets.w import save\n")
    _write(tmp_path, "faceflow/nets/m.py", "")
    _write(tmp_path, "faceflow/nets/w.py", "from faceflow.engine.t import atomic_save\n")
    _write(tmp_path, "faceflow/engine/__init__.py", "")
    _write(tmp_path, "faceflow/engine/t.py", "from faceflow.nets.m import count\n")
    graph = ig.module_graph(str(tmp_path))
    assert ig.cycles(graph) == [["faceflow.engine.t", "faceflow.nets", "faceflow.nets.w"]]
    # and a stage importing a later stage is named: nets (before engine) imports engine
    assert ("faceflow.nets.w", "faceflow.engine.t") in ig.against_stages(graph)
    assert ("faceflow.engine.t", "faceflow.nets.m") not in ig.against_stages(graph)


def test_every_faceflow_folder_is_a_known_stage():
    stages = {p.name for p in (REPO / "faceflow").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    stages |= {p.stem for p in (REPO / "faceflow").glob("*.py") if p.stem != "__init__"}
    assert stages <= set(ig.STAGES), sorted(stages - set(ig.STAGES))

"""RunState (faceflow.io.rundir): the state file of a resumable run."""
from __future__ import annotations

import json

import pytest

from faceflow.errors import FaceflowError
from faceflow.io import files
from faceflow.io.rundir import RunState


def _refuse(old: dict) -> str:
    return f"made with {old.get('signature')}; pass --overwrite to replace it"


def _open(out, sig, **kw) -> RunState:
    return RunState(out, {"version": 1, "signature": sig, "records": {}}, refuse=_refuse, **kw)


def test_fresh_then_resume_keeps_the_completed_records(tmp_path):
    state = _open(tmp_path / "run", {"video": "a.mp4"})
    assert state.data == {"version": 1, "signature": {"video": "a.mp4"}, "records": {}}
    state.section("records", "zero")["3"] = {"n": 7}
    state.save()
    assert json.loads((tmp_path / "run" / "state.json").read_text())["records"] == {"zero": {"3": {"n": 7}}}

    again = _open(tmp_path / "run", {"video": "a.mp4"})
    assert again.section("records", "zero") == {"3": {"n": 7}}
    assert again.section("records", "dis") == {}  # created empty


def test_fresh_state_is_a_copy(tmp_path):
    fresh = {"version": 1, "signature": {}, "stages": {}}
    state = RunState(tmp_path, fresh, refuse=_refuse)
    state.section("stages", "fit")["done"] = True
    assert fresh["stages"] == {}


def test_other_signature_refused_unless_overwrite(tmp_path):
    _open(tmp_path, {"size": 64}).save()
    with pytest.raises(FaceflowError, match=r"made with \{'size': 64\}; pass --overwrite"):
        _open(tmp_path, {"size": 96})
    with pytest.raises(FaceflowError, match="overwrite"):  # another version of the file: refused too
        RunState(tmp_path, {"version": 2, "signature": {"size": 64}}, refuse=_refuse)
    assert json.loads((tmp_path / "state.json").read_text())["signature"] == {"size": 64}  # untouched

    state = _open(tmp_path, {"size": 96}, overwrite=True)
    assert state.data["signature"] == {"size": 96} and state.data["records"] == {}


def test_overwrite_deletes_the_named_outputs_only(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.npy").write_bytes(b"x")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("mine")
    _open(tmp_path, {"a": 1}).save()
    _open(tmp_path, {"a": 2}, overwrite=True, outputs=("state.json", "manifest.json", "data", "absent"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_match_names_the_entries_that_tie_the_file_to_its_run(tmp_path):
    RunState(tmp_path, {"format": "f/1", "done": 0}, refuse=_refuse, match=("format",), name="s.json").save()
    state = RunState(tmp_path, {"format": "f/1", "done": 0}, refuse=_refuse, match=("format",), name="s.json")
    state.data["done"] = 5
    state.save()
    assert RunState(tmp_path, {"format": "f/1", "done": 0}, refuse=_refuse, match=("format",),
                    name="s.json").data["done"] == 5
    with pytest.raises(FaceflowError):
        RunState(tmp_path, {"format": "f/2", "done": 0}, refuse=_refuse, match=("format",), name="s.json")


def test_unreadable_or_non_object_state_is_refused(tmp_path):
    (tmp_path / "state.json").write_text('{"version": 1, "signa')
    with pytest.raises(FaceflowError, match=r"unreadable.*another output directory.*delete it"):
        _open(tmp_path, {})
    (tmp_path / "state.json").write_text("[1, 2]")
    with pytest.raises(FaceflowError, match="overwrite"):
        _open(tmp_path, {})
    assert _open(tmp_path, {}, overwrite=True).data["records"] == {}


def test_atomic_writes_leave_no_partial_file(tmp_path, monkeypatch):
    state = _open(tmp_path, {"a": 1})
    state.save()
    before = (tmp_path / "state.json").read_text()
    state.data["records"]["bad"] = object()  # not JSON-able: nothing is written

    with pytest.raises(TypeError):
        state.save()
    assert (tmp_path / "state.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary file left behind

    def crash(*a, **k):
        raise KeyboardInterrupt

    state.data["records"] = {"ok": 1}
    monkeypatch.setattr(files.os, "replace", crash)  # interrupted just before the rename
    with pytest.raises(KeyboardInterrupt):
        state.save()
    assert (tmp_path / "state.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_every_s_throttles_unless_forced(tmp_path):
    state = _open(tmp_path, {"a": 1}, every_s=3600, indent=None)
    state.save()
    assert not (tmp_path / "state.json").exists()  # opened a moment ago: skipped
    state.save(force=True)
    assert (tmp_path / "state.json").read_text() == json.dumps(state.data)  # one line (indent None)
    state.data["records"]["x"] = 1
    state.save()
    assert json.loads((tmp_path / "state.json").read_text())["records"] == {}


def test_a_signature_with_tuples_resumes(tmp_path):
    # the signature is compared as it reads back from JSON: a tuple in it is the stored list
    first = _open(tmp_path, {"pairs": ("consecutive", "gap"), "size": 256})
    first.section("records")["0"] = 1
    first.save()
    again = _open(tmp_path, {"pairs": ("consecutive", "gap"), "size": 256})
    assert again.data["records"] == {"0": 1}

"""The progress file of a resumable run: :class:`RunState`.

A long command (``faceflow annotate``, ``faceflow data synth``, the flow benchmark, the
self-reenactment evaluation) fills its output directory piece by piece and writes what it has
finished into a JSON file there (``state.json``, or ``config.json``). Rerun with the same inputs
and options it resumes where it stopped; rerun with other ones it refuses, because the finished
pieces would mix two experiments, unless asked to start over.

    state = RunState(out, {"version": 1, "signature": sig, "stages": {}}, overwrite=args.overwrite,
                     outputs=("state.json", "data"), refuse=lambda old: f"{out} holds another run; "
                     "pass --overwrite to replace it")
    st = state.section("stages", "track")      # {} the first time, the stored dict when resuming
    st.update(done=True)
    state.save()                               # atomic: the old file or the new one, never half

What ties the file to its run are the entries named in ``match`` (by default ``version``, the
file's format, and ``signature``, a JSON-able description of the inputs and options the results
depend on): a stored file is resumed only when those entries equal the fresh state's.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from faceflow.errors import FaceflowError
from faceflow.io.files import save_json

__all__ = ["RunState"]


class RunState:
    """The progress of a run in ``out / name``, a JSON object held in :attr:`data`.

    Opening decides between starting afresh and resuming:

    - ``overwrite``: the ``outputs`` (names of files and folders in ``out``, e.g. the state file,
      ``data``) are deleted, and the run starts from a copy of ``fresh``;
    - no stored file: start from a copy of ``fresh``;
    - a stored file whose ``match`` entries equal ``fresh``'s: resume, :attr:`data` is the stored
      object (its other entries, the progress, are kept as they were);
    - otherwise :class:`~faceflow.errors.FaceflowError` with the text ``refuse(stored object)``
      (it should tell the user to pass --overwrite or choose another directory); nothing is
      deleted. A stored file that is not a JSON object is refused in the same way.

    :meth:`save` rewrites the file atomically (:func:`faceflow.io.files.save_json`: a hidden
    temporary file renamed over the old one, so a crash leaves the old or the new state, never
    a partial file), with ``indent`` (None: one line); with ``every_s`` > 0 it writes at most that
    often unless ``force``. The directory is created by the first save.
    """

    def __init__(self, out: str | Path, fresh: dict, *, refuse: Callable[[dict], str], overwrite: bool = False,
                 outputs: Iterable[str] = (), match: Iterable[str] = ("version", "signature"),
                 name: str = "state.json", indent: int | None = 1, every_s: float = 0.0):
        self.out = Path(out)
        self.path = self.out / name
        self.indent, self.every_s = indent, float(every_s)
        if overwrite:
            self._delete(outputs)
        fresh = json.loads(json.dumps(fresh))  # as it reads back from disk (tuples become lists)
        self.data = fresh
        if not overwrite and self.path.is_file():
            old = self._read(refuse)
            if any(old.get(k) != fresh.get(k) for k in match):
                raise FaceflowError(refuse(old))
            self.data = old
        self._last = time.monotonic()

    def _delete(self, outputs: Iterable[str]) -> None:
        for name in outputs:
            p = self.out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def _read(self, refuse: Callable[[dict], str]) -> dict:
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise FaceflowError(f"{self.path} is unreadable ({e}); choose another output directory or "
                                "delete it to start afresh") from e
        if not isinstance(old, dict):
            raise FaceflowError(refuse({}))
        return old

    def section(self, *keys: str) -> dict:
        """The dict at ``data[k1][k2]...``, created empty where missing (and stored by :meth:`save`)."""
        d = self.data
        for k in keys:
            d = d.setdefault(k, {})
        return d

    def save(self, force: bool = False) -> None:
        """Write :attr:`data` to the file atomically; with ``every_s``, skipped (unless ``force``)
        when the last write is more recent than that."""
        if force or self.every_s <= 0 or time.monotonic() - self._last > self.every_s:
            save_json(self.path, self.data, indent=self.indent)
            self._last = time.monotonic()

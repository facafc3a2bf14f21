"""The run's CSV logs (``OUT/log.csv``, ``OUT/val.csv``): :class:`CsvLog` writes them, appending
a row at a time and widening the header when a new column appears; :func:`read_csv` reads them."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from faceflow.io import atomic_path


class CsvLog:
    """An append-only CSV with a header; new columns rewrite the file with the wider header.
    ``keep_until`` truncates rows of a resumed run beyond the checkpointed step."""

    def __init__(self, path: Path, keep_until: int | None = None):
        self.path = path
        self.fields: list[str] = []
        rows = self._read()
        if keep_until is None:
            rows = []
        else:
            rows = [r for r in rows if _int(r.get("step")) is not None and _int(r["step"]) <= keep_until]
        self._rewrite(rows)

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self.fields = list(reader.fieldnames or [])
            return list(reader)

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                if self.fields:
                    w.writeheader()
                w.writerows(rows)

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.fields]
        if new:
            rows = self._read() if self.fields else []
            self.fields = self.fields + new
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: _fmt(v) for k, v in row.items()})


def _int(v):
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def _fmt(v):
    if isinstance(v, float):
        return repr(v)  # exact round trip
    return v


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a log CSV as dicts of floats (empty cells dropped)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]

"""Named stage timings: :class:`Stopwatch`."""
from __future__ import annotations

import time

__all__ = ["Stopwatch"]


class Stopwatch:
    """Named laps in seconds: :meth:`lap` adds the time since the previous lap (the first: since
    construction) to ``laps[name]``. ``laps`` may start from earlier totals (a resumed run)."""

    def __init__(self, laps: dict[str, float] | None = None):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {k: float(v) for k, v in (laps or {}).items()}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now

    def rounded(self, digits: int = 3) -> dict[str, float]:
        """The laps rounded, for a manifest."""
        return {k: round(v, digits) for k, v in self.laps.items()}

    def total(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.start

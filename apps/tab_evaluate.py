"""The app's fourth tab, **Evaluate** (:mod:`apps.gradio_app`): the self-reenactment tables
(``OUT/table.md``, ``OUT/tables/*.md``, heatmaps) of an evaluation folder (default ``WORKDIR/eval``),
read only from the folders the app serves (:func:`_served`); until the folder holds tables of the
user's own, the project's published tables (:func:`published_tables`, the README's flow and
self-reenactment sections, with their commands), labelled as such."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apps.app_state import TAB_NAMES, AppConfig, AppContext, fail, gradio_module
from faceflow.errors import FaceflowError

__all__ = ["read_evaluation", "evaluate_tab", "published_tables"]

README = Path(__file__).resolve().parents[1] / "README.md"
PUBLISHED = (("### Evaluation (`evaluation/flow_benchmark.py`)", "### Speed"),
             ("## Self-reenactment tables", "## The app"))

MAX_HEATMAPS = 48
MAX_TABLE_BYTES = 1 << 20
MAX_WALK_ENTRIES = 20000  # folder entries looked at when listing heatmaps


def _inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (both real, absolute paths; compared by components)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # e.g. different drives
        return False


def _served(cfg: AppConfig, real: str) -> bool:
    """Whether the Evaluate tab may read the real path ``real``: under ``results_root`` or
    ``eval_dir``, and not in the app's own ``jobs/`` or ``tmp/`` (other users' uploads and results)
    nor in the models folder (previews and samples made from the targets' videos)."""
    roots = {os.path.realpath(r) for r in (cfg.results_root, cfg.eval_dir)}
    private = [os.path.realpath(cfg.workdir / sub) for sub in ("jobs", "tmp")] + [os.path.realpath(cfg.models_dir)]
    return any(_inside(real, r) for r in roots) and not any(_inside(real, q) for q in private)


def _results_folder(cfg: AppConfig, folder) -> Path:
    """The real path of the evaluation folder typed in the Evaluate tab (empty: ``eval_dir``).
    A relative path is taken relative to ``results_root``; symlinks and '..' are resolved first,
    and anything not served (see :func:`_served`) is refused before it is looked at."""
    text = str(folder).strip() if folder is not None else ""
    if not text:
        return Path(os.path.realpath(cfg.eval_dir))
    if "\x00" in text or len(text) > 4096:
        raise fail("not a folder name")
    p = Path(text)
    real = os.path.realpath(p if p.is_absolute() else cfg.results_root / p)
    if not _served(cfg, real):
        raise fail(f"`{text}` is outside the evaluation results this app serves: give a folder under "
                    f"`{cfg.results_root}` (absolute, or relative to it, e.g. `eval`)")
    return Path(real)


def _heatmaps(d: Path, ok) -> list[tuple[Path, Path]]:
    """(path, real path) of the PNGs below ``d`` (not following symlinked folders) whose real path
    ``ok`` accepts, sorted, at most :data:`MAX_HEATMAPS`."""
    found, seen = [], 0
    for top, dirs, files in os.walk(d, followlinks=False):
        dirs[:] = sorted(x for x in dirs if ok(os.path.realpath(os.path.join(top, x))))
        seen += len(dirs) + len(files)
        for f in files:
            if f.endswith(".png"):
                real = os.path.realpath(os.path.join(top, f))
                if ok(real) and os.path.isfile(real):
                    found.append((Path(top) / f, Path(real)))
        if seen > MAX_WALK_ENTRIES:
            break
    return sorted(found)[:MAX_HEATMAPS]


def read_evaluation(folder: str | Path, served=None) -> tuple[str, list[tuple[np.ndarray, str]]]:
    """The evaluate tab: Markdown of ``folder/table.md`` and ``folder/tables/*.md`` (each under a
    heading) and the heatmap PNGs in the folder (as (image, caption) pairs); a readable message
    when there are none. Only files whose real path (symlinks resolved) ``served(real path)``
    accepts are read; by default, those inside ``folder`` itself."""
    from faceflow import io as vio

    d = Path(folder).expanduser()
    if served is None:
        top = os.path.realpath(d)
        served = lambda real: _inside(real, top)
    if not d.is_dir():
        return (f"No evaluation results in `{d}` yet (the folder does not exist). Run the self-reenactment "
                f"evaluation (`faceflow evaluate self-reenact VIDEOS --out FOLDER`) with this folder as its output, "
                f"then press Refresh."), []
    parts = []
    for p in [d / "table.md"] + sorted((d / "tables").glob("*.md")):
        real = os.path.realpath(p)
        if served(real) and os.path.isfile(real):
            text = Path(real).read_bytes()[:MAX_TABLE_BYTES].decode("utf-8", "replace").strip()
            parts.append(text if p.name == "table.md" and p.parent == d
                         else f"### {p.stem.replace('_', ' ')}\n\n{text}")
    images = []
    for p, real in _heatmaps(d, served):
        try:
            images.append((vio.read_image(real), p.stem.replace("_", " ")))
        except FaceflowError:
            continue
    if not parts:
        return (f"No evaluation tables in `{d}` (no table.md or tables/*.md). Run the self-reenactment "
                f"evaluation (`faceflow evaluate self-reenact VIDEOS --out FOLDER`) with this folder as its output, "
                f"then press Refresh."), images
    return "\n\n".join(parts), images


def published_tables(readme: Path = README) -> str:
    """The README's sections with the published flow tables (paper Tables 1-2) and
    self-reenactment tables (Table 3), with their commands, under a heading that says what they
    are; a short note when the README is not there (an installed copy without it)."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return "The project's published tables are in its README (not found next to this installation)."
    parts = []
    for start, end in PUBLISHED:
        a = text.find(start)
        if a < 0:
            continue
        b = text.find(end, a + len(start))
        parts.append(text[a:b if b > 0 else None].strip().replace(start, "#### " + start.lstrip("# "), 1))
    return ("## Published tables (the project's README)\n\nThe numbers the project measured with its shipped "
            "weights, with the commands that made them. Your own evaluation appears here instead once the "
            "folder above holds its tables.\n\n" + "\n\n".join(parts))


def evaluate_tab(ctx: AppContext) -> tuple:
    """The Evaluate tab (made inside the app's ``gr.Tabs``) and its ``evaluation`` event. Returns the
    tables' refresh as (fn, inputs, outputs), run again on page load."""
    gr = gradio_module()
    cfg = ctx.config

    def eval_fn(folder):  # only results under results_root / eval_dir: the folder is typed by any user
        text, images = read_evaluation(_results_folder(cfg, folder), served=lambda real: _served(cfg, real))
        if text.startswith("No evaluation"):  # nothing of the user's own yet: the published tables
            text = text + "\n\n" + published_tables()
        return text, images

    with gr.Tab(TAB_NAMES[3], id="evaluate"):
        with gr.Row():
            efolder = gr.Textbox(str(cfg.eval_dir), label="Evaluation output folder", scale=4)
            erefresh = gr.Button("Refresh", scale=1)
        etables = gr.Markdown()
        eheat = gr.Gallery(label="Heatmaps", columns=3, height="auto", format="png")
        erefresh.click(eval_fn, efolder, [etables, eheat], api_name="evaluation")
    return eval_fn, efolder, [etables, eheat]

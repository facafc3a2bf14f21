"""Annotating a real video: track the face, fit the morphable model over the whole clip, render
the conditioning (PNCC, NMFC, eye sketches) and the 3D flows between frame pairs into a resumable
output directory (``faceflow annotate VIDEO OUT_DIR``).

- :mod:`.config`: :class:`AnnotateConfig`, the options (no torch: the command's ``--help``).
- :mod:`.pipeline`: :func:`annotate` and its stages (track, fit, render, pairs, previews).
- :mod:`.layout`: the arrays an annotation holds (:data:`LAYOUT`) and the template size.
- :mod:`.previews`: the preview pictures.
- :mod:`.conditioning`: :class:`FitRenderer`, the arrays drawn from the fits (PNCC, NMFC, eyes, 3D flow).
- :mod:`.store`: :class:`Annotation`, either storage form (full memmaps, compact JPEG + fits) row by
  row, and the converter. Many videos at once: :mod:`faceflow.data.annotate_dataset`.

Before the stage sub-packages ``faceflow.annotate`` was one module; its names are still found here
(``from faceflow.annotate import annotate, AnnotateConfig``), loaded on first use.
"""


def __getattr__(name: str):
    import importlib

    for module in ("faceflow.annotate.config", "faceflow.annotate.pipeline", "faceflow.annotate.layout"):
        found = importlib.import_module(module)
        if hasattr(found, name):
            return getattr(found, name)
    raise AttributeError(f"module 'faceflow.annotate' has no attribute {name!r}")

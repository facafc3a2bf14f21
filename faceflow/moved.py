"""Old import paths of modules that moved into the stage sub-packages (issue 13), kept working.

Before the stage sub-packages (issue 13), the modules of :mod:`faceflow` sat in one flat folder.
Code written against those paths (``import faceflow.morphable``, ``from faceflow.landmarks import
track_video``, ``faceflow.train``) still runs: a finder on ``sys.meta_path`` answers each old name
with the module that now holds it, the very same module object, so classes and functions are
identical (``faceflow.morphable.MorphableModel is faceflow.geometry.morphable.MorphableModel``).
Where one old module was split in several, the old name is a read-only view that looks names up in
each new module in turn. New code should import the new paths; the table below is the map from old
to new.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

# old module -> the module (or modules, searched in order) that now holds its names
MOVED: dict[str, tuple[str, ...]] = {
    "faceflow.meshio": ("faceflow.io.mesh",),
    "faceflow.safeload": ("faceflow.io.safeload",),
    "faceflow.morphable": ("faceflow.geometry.morphable",),
    "faceflow.camera": ("faceflow.geometry.camera",),
    "faceflow.flowviz": ("faceflow.render.flowcolor",),
    "faceflow.render_demo": ("faceflow.commands.render",),
    "faceflow.landmarks": ("faceflow.face.landmarks", "faceflow.face.tracking"),
    "faceflow.registration": ("faceflow.face.registration", "faceflow.geometry.similarity"),
    "faceflow.eyes": ("faceflow.face.eyes",),
    "faceflow.correspondence": ("faceflow.face.correspondence",),
    "faceflow.fitting": ("faceflow.face.fitting", "faceflow.face.fit_energy", "faceflow.face.fit_cameras"),
    "faceflow.train": ("faceflow.engine.trainer", "faceflow.engine.task", "faceflow.engine.sampler",
                       "faceflow.engine.checkpoint", "faceflow.engine.logbook", "faceflow.engine.distributed",
                       "faceflow.engine.config"),
    "faceflow.train_config": ("faceflow.engine.config",),
    "faceflow.task_options": ("faceflow.engine.dff_options",),
    "faceflow.opticalflow": ("faceflow.ops.opticalflow",),
    "faceflow.assets": ("faceflow.runtime.assets",),
    "faceflow.threads": ("faceflow.runtime.threads",),
    "faceflow.provenance": ("faceflow.runtime.provenance",),
    "faceflow.bench": ("faceflow.commands.bench",),
    "faceflow.nets.weights": ("faceflow.engine.weights",),
    "faceflow.nets.tasks": ("faceflow.engine.dff_tasks",),
    # modules of the other packages that moved (only names here: faceflow imports none of them)
    "vid2vid.flow": ("reenact.flows",),  # flow providers live with reenactment (vid2vid imports faceflow first)
    "evaluation.methods": ("evaluation.flow_config",),
}


class _SplitModule(types.ModuleType):
    """The old name of a module that was split: attribute lookups go to each new module in turn."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Moved: the names of {name} now live in {', '.join(targets)}.")
        self.__targets = targets

    def __getattr__(self, attr: str):
        for target in self.__targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self.__targets)}) has no attribute "
                             f"{attr!r}")

    def __dir__(self):
        return sorted({n for t in self.__targets for n in dir(importlib.import_module(t))})


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of :data:`MOVED` and loads them as the module that now holds them."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        targets = MOVED[spec.name]
        if len(targets) > 1:
            return _SplitModule(spec.name, targets)
        module = importlib.import_module(targets[0])
        self._own_spec = module.__spec__  # the import system stamps the old name's spec on it: undone below
        return module

    def exec_module(self, module):
        if not isinstance(module, _SplitModule):
            module.__spec__ = self._own_spec


def install() -> None:
    """Put the finder of old paths on ``sys.meta_path`` (once; :mod:`faceflow` does it on import)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())

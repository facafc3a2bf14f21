"""faceflow: DeepFaceFlow-style dense 3D facial flow and the geometry it stands on.

The facade is :class:`FaceFlow` (:mod:`faceflow.estimate`: two images -> 3D flow). The stages live
in sub-packages, each importing only those listed before it (docs/architecture.md has the map):
:mod:`~faceflow.runtime` (assets, threads, provenance, flags), :mod:`~faceflow.io` (media and
files), :mod:`~faceflow.geometry` (morphable model, camera, similarities), :mod:`~faceflow.ops`
(shared tensor ops), :mod:`~faceflow.render` (rasteriser, PNCC / NMFC, flow ground truth, shading,
flow colours), :mod:`~faceflow.face` (landmarks, tracking, registration, eyes, correspondence,
fitting), :mod:`~faceflow.annotate`, :mod:`~faceflow.data`, :mod:`~faceflow.nets`,
:mod:`~faceflow.engine` (the training harness), then the facade, :mod:`~faceflow.cli` and
:mod:`~faceflow.commands` (the command-line tools). Old flat paths (``faceflow.morphable``,
``faceflow.landmarks``, ...) still import: :mod:`faceflow.moved`.
"""

__version__ = "0.1.0"

from faceflow.errors import AssetNotFoundError, FaceflowError, MediaError
from faceflow.moved import install as _install_moved_paths
from faceflow.runtime.threads import prefer_passive_wait

_install_moved_paths()  # the flat module paths of before the sub-packages keep importing: faceflow.moved
prefer_passive_wait()  # OMP_WAIT_POLICY=PASSIVE before torch loads, unless set: see faceflow.runtime.threads

__all__ = ["FaceFlow", "FaceflowError", "AssetNotFoundError", "MediaError", "__version__"]


def __getattr__(name: str):
    # FaceFlow (faceflow.estimate) pulls in torch and the networks: import it on demand
    if name == "FaceFlow":
        from faceflow.estimate import FaceFlow

        return FaceFlow
    raise AttributeError(f"module 'faceflow' has no attribute {name!r}")

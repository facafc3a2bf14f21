"""faceflow: DeepFaceFlow-style dense 3D facial flow and the geometry it stands on.

Modules: :mod:`~faceflow.morphable` (3D morphable model), :mod:`~faceflow.camera` (scaled
orthographic camera), :mod:`~faceflow.render` (rasteriser, PNCC/NMFC, 3D flow ground truth,
shading), :mod:`~faceflow.flowviz` (flow colour coding), :mod:`~faceflow.meshio` (.obj/.ply),
:mod:`~faceflow.io` (video and image I/O), :mod:`~faceflow.assets` (locating data files),
:mod:`~faceflow.estimate` (``FaceFlow``: two images -> 3D flow).
"""

__version__ = "0.1.0"

from .errors import AssetNotFoundError, FaceflowError, MediaError
from .threads import prefer_passive_wait

prefer_passive_wait()  # OMP_WAIT_POLICY=PASSIVE before torch loads, unless set: see faceflow.threads

__all__ = ["FaceFlow", "FaceflowError", "AssetNotFoundError", "MediaError", "__version__"]


def __getattr__(name: str):
    # FaceFlow (faceflow.estimate) pulls in torch and the networks: import it on demand
    if name == "FaceFlow":
        from .estimate import FaceFlow

        return FaceFlow
    raise AttributeError(f"module 'faceflow' has no attribute {name!r}")

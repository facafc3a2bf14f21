"""faceflow: DeepFaceFlow-style dense 3D facial flow and the geometry it stands on.

Modules: :mod:`~faceflow.morphable` (3D morphable model), :mod:`~faceflow.camera` (scaled
orthographic camera), :mod:`~faceflow.render` (rasteriser, PNCC/NMFC, 3D flow ground truth,
shading), :mod:`~faceflow.flowviz` (flow colour coding), :mod:`~faceflow.meshio` (.obj/.ply),
:mod:`~faceflow.io` (video and image I/O), :mod:`~faceflow.assets` (locating data files).
"""

__version__ = "0.1.0"

from .errors import AssetNotFoundError, FaceflowError, MediaError  # noqa: E402

__all__ = ["FaceflowError", "AssetNotFoundError", "MediaError", "__version__"]

"""DeepFaceFlow's networks and their pure-PyTorch operators (paper Sec. 4).

- :mod:`.correlation`: FlowNetC's correlation layer.
- :mod:`.warp`: the occlusion-aware warping W of eq. (5).
- :mod:`.meshreg`: 3DMeshReg (Sec. 4.1) and the mesh loss, eq. (4).
- :mod:`.dffnet`: DFFNet (Sec. 4.2, Fig. 3).
- :mod:`.losses`: the flow loss, eq. (5).
- :mod:`.metrics`: AEPE and vertex errors shared by validation and the benchmarks.
- :mod:`.weights`: weights files (fp16 export, safe loading).
- :mod:`.tasks`: the training tasks for :mod:`faceflow.train` (import it directly); their options and
  presets live in :mod:`faceflow.task_options` (no torch, for the command line).
- :mod:`.resnet`: the ResNet trunks of 3DMeshReg.
"""

from .correlation import benchmark_correlation, correlation, correlation_channels
from .dffnet import DFFNet
from .losses import default_scale_weights, flow_loss, masked_downsample, masked_epe
from .meshreg import MeshReg, mesh_edges, mesh_loss
from .modules import count_parameters, unwrap
from .warp import moved_zbuffer, warp_by_flow
from .weights import export_run, load_weights, save_weights, weights_info

__all__ = ["benchmark_correlation", "correlation", "correlation_channels", "DFFNet", "count_parameters",
           "default_scale_weights", "flow_loss", "masked_downsample", "masked_epe", "MeshReg", "mesh_edges",
           "mesh_loss", "unwrap", "moved_zbuffer", "warp_by_flow", "export_run", "load_weights", "save_weights",
           "weights_info"]

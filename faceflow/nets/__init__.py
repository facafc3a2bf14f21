"""DeepFaceFlow's networks and their pure-PyTorch operators (paper Sec. 4).

- :mod:`.correlation`: FlowNetC's correlation layer.
- :mod:`.warp`: the occlusion-aware warping W of eq. (5).
- :mod:`.meshreg`: 3DMeshReg (Sec. 4.1) and the mesh loss, eq. (4).
- :mod:`.dffnet`: DFFNet (Sec. 4.2, Fig. 3).
- :mod:`.losses`: the flow loss, eq. (5).
- :mod:`.metrics`: AEPE and vertex errors shared by validation and the benchmarks.
- :mod:`.resnet`: the ResNet trunks of 3DMeshReg.
- :mod:`.modules`: the parameter counter, DDP unwrap and device resolver.

The training tasks that use them (:mod:`faceflow.engine.dff_tasks`) and their weights files
(:mod:`faceflow.engine.weights`) live with the harness in :mod:`faceflow.engine`.
"""

from faceflow.nets.correlation import benchmark_correlation, correlation, correlation_channels
from faceflow.nets.dffnet import DFFNet
from faceflow.nets.losses import default_scale_weights, flow_loss, masked_downsample, masked_epe
from faceflow.nets.meshreg import MeshReg, mesh_edges, mesh_loss
from faceflow.nets.modules import count_parameters, unwrap
from faceflow.nets.warp import moved_zbuffer, warp_by_flow

__all__ = ["benchmark_correlation", "correlation", "correlation_channels", "DFFNet", "count_parameters",
           "default_scale_weights", "flow_loss", "masked_downsample", "masked_epe", "MeshReg", "mesh_edges",
           "mesh_loss", "unwrap", "moved_zbuffer", "warp_by_flow"]

"""Rendering of image-space meshes: rasterisation, PNCC / NMFC codes, 3D flow, shading (the main
functions are importable from here), and :mod:`.overlay` (meshes and points drawn over frames) and
:mod:`.flowcolor` (colour codings of flow, numpy only)."""

from faceflow.render.flow import flow_ground_truth
from faceflow.render.pncc import nmfc, nmfc_colors, pncc, pncc_to_points
from faceflow.render.rasterize import Fragments, interpolate, rasterize, vertex_normals
from faceflow.render.shading import shade

__all__ = ["Fragments", "rasterize", "interpolate", "vertex_normals", "pncc", "pncc_to_points",
           "nmfc", "nmfc_colors", "flow_ground_truth", "shade"]

"""Rendering of image-space meshes: rasterisation, PNCC / NMFC codes, 3D flow, shading."""

from .flow import flow_ground_truth
from .pncc import nmfc, nmfc_colors, pncc, pncc_to_points
from .rasterize import Fragments, interpolate, rasterize, vertex_normals
from .shading import shade

__all__ = ["Fragments", "rasterize", "interpolate", "vertex_normals", "pncc", "pncc_to_points",
           "nmfc", "nmfc_colors", "flow_ground_truth", "shade"]

"""Scaled orthographic camera (DeepFaceFlow Sec. 3.1; Head2Head++ eq. (3.2)).

A model-space point S (centimetres; +X subject's left, +Y up, +Z out of the face) maps to
image space as::

    p = f * C R S + t,        C = diag(1, -1, -1)

- R (3, 3): head rotation from Euler angles (pitch about X, yaw about Y, roll about Z),
  ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``; positive yaw turns the face toward the image's
  right, positive pitch tilts the face down, positive roll turns it counter-clockwise on screen.
- C flips the model's y-up, z-toward-viewer axes into image axes: x right, y down, z into the
  screen (depth; smaller = nearer). C R is a proper rotation, so image space is right-handed.
- f: pixels per centimetre; t = (tx, ty, tz) in pixels. ``p[..., :2]`` are pixel coordinates
  with the centre of pixel (col j, row i) at (j + 0.5, i + 0.5); ``p[..., 2]`` is depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLIP = (1.0, -1.0, -1.0)  # the diagonal of C


def _flip(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(FLIP, dtype=like.dtype, device=like.device)


def euler_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from Euler angles.

    angles (..., 3) = (pitch, yaw, roll) in radians. Returns (..., 3, 3) = Rz(roll) Ry(yaw) Rx(pitch).
    """
    a, b, c = angles.unbind(-1)
    ca, sa, cb, sb, cc, sc = a.cos(), a.sin(), b.cos(), b.sin(), c.cos(), c.sin()
    rows = [
        [cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa],
        [sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa],
        [-sb, cb * sa, cb * ca],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def rotation_to_euler(R: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_rotation`: (..., 3, 3) -> (..., 3) (pitch, yaw, roll), radians.

    Yaw is returned in [-pi/2, pi/2]. At gimbal lock (|yaw| = 90 degrees) roll is set to 0.
    """
    cb = torch.sqrt(R[..., 0, 0] ** 2 + R[..., 1, 0] ** 2)
    yaw = torch.atan2(-R[..., 2, 0], cb)
    lock = cb < 1e-6
    pitch = torch.where(lock, torch.atan2(-R[..., 1, 2], R[..., 1, 1]), torch.atan2(R[..., 2, 1], R[..., 2, 2]))
    roll = torch.where(lock, torch.zeros_like(yaw), torch.atan2(R[..., 1, 0], R[..., 0, 0]))
    return torch.stack([pitch, yaw, roll], -1)


def axis_angle_to_rotation(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices exp([w]x) (B, 3, 3) from axis-angle vectors w (B, 3) (Rodrigues)."""
    theta = w.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    k = w / theta
    Kx = torch.zeros(w.shape[0], 3, 3, dtype=w.dtype, device=w.device)
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    Kx = Kx - Kx.transpose(1, 2)
    th = theta[..., None]
    return torch.eye(3, dtype=w.dtype, device=w.device) + th.sin() * Kx + (1 - th.cos()) * Kx @ Kx


@dataclass
class Camera:
    """A batch of scaled orthographic cameras: rotation (B, 3, 3), translation (B, 3), scale (B,)."""

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def from_euler(cls, angles: torch.Tensor, translation: torch.Tensor, scale: torch.Tensor) -> "Camera":
        """angles (B, 3) radians (pitch, yaw, roll); translation (B, 3) pixels; scale (B,) px/cm."""
        return cls(euler_to_rotation(angles), translation, scale)

    @property
    def angles(self) -> torch.Tensor:
        """(B, 3) Euler angles (pitch, yaw, roll) in radians."""
        return rotation_to_euler(self.rotation)

    def project(self, verts: torch.Tensor) -> torch.Tensor:
        """Model space (B, V, 3) -> image space (B, V, 3): x, y pixels (y down), z depth in pixels."""
        return project(verts, self.rotation, self.translation, self.scale)

    def unproject(self, points: torch.Tensor) -> torch.Tensor:
        """Image space (B, V, 3) -> model space (B, V, 3); exact inverse of :meth:`project`."""
        return unproject(points, self.rotation, self.translation, self.scale)

    def to(self, device) -> "Camera":
        return Camera(self.rotation.to(device), self.translation.to(device), self.scale.to(device))

    def __getitem__(self, i) -> "Camera":
        return Camera(self.rotation[i], self.translation[i], self.scale[i])


def project(verts: torch.Tensor, R: torch.Tensor, t: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``p = f * C R S + t``. verts (B, V, 3), R (B, 3, 3), t (B, 3), f (B,) -> (B, V, 3)."""
    rotated = torch.einsum("bij,bvj->bvi", R, verts) * _flip(verts)
    return f[:, None, None] * rotated + t[:, None, :]


def unproject(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``S = R^T C (p - t) / f`` (C is its own inverse). points (B, V, 3) -> (B, V, 3)."""
    q = (points - t[:, None, :]) / f[:, None, None] * _flip(points)
    return torch.einsum("bji,bvj->bvi", R, q)


def frame_face(center: torch.Tensor, extent_cm: float, size: tuple[int, int], angles: torch.Tensor,
               fill: float = 0.75) -> Camera:
    """A camera that puts model point ``center`` (B, 3) at the image centre, with a model length
    of ``extent_cm`` spanning ``fill`` of the image's smaller side; depth 0 at the centre.

    size = (H, W); angles (B, 3) radians. Returns a :class:`Camera` of batch B.
    """
    H, W = size
    B = angles.shape[0]
    R = euler_to_rotation(angles)
    f = torch.full((B,), fill * min(H, W) / extent_cm, dtype=angles.dtype, device=angles.device)
    centre_img = torch.tensor([W / 2.0, H / 2.0, 0.0], dtype=angles.dtype, device=angles.device)
    rotated = torch.einsum("bij,bj->bi", R, center.to(angles)) * _flip(angles)
    t = centre_img - f[:, None] * rotated
    return Camera(R, t, f)


def degrees(*values: float) -> torch.Tensor:
    """Helper: a (1, len(values)) tensor of radians from degrees."""
    return torch.tensor([[math.radians(v) for v in values]], dtype=torch.float32)

import math

import torch

from faceflow.geometry.camera import Camera, euler_to_rotation, frame_face, project, rotation_to_euler, unproject


def random_angles(n, max_deg=(80.0, 85.0, 170.0), seed=1):
    g = torch.Generator().manual_seed(seed)
    lim = torch.tensor([math.radians(d) for d in max_deg], dtype=torch.float64)
    return (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * lim


def test_rotation_is_proper_and_matches_axis_definitions():
    ang = random_angles(500)
    R = euler_to_rotation(ang)
    eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(500, dtype=torch.float64), atol=1e-12)
    # Each angle alone is the textbook rotation about its axis.
    a = 0.3
    c, s = math.cos(a), math.sin(a)
    Rx = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    Ry = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    Rz = torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)
    for k, ref in enumerate((Rx, Ry, Rz)):
        v = torch.zeros(3, dtype=torch.float64)
        v[k] = a
        assert torch.allclose(euler_to_rotation(v), ref, atol=1e-12)
    # Composition order Rz(roll) Ry(yaw) Rx(pitch).
    v = torch.tensor([0.2, -0.4, 0.7], dtype=torch.float64)
    comp = euler_to_rotation(torch.tensor([0, 0, 0.7], dtype=torch.float64)) @ \
        euler_to_rotation(torch.tensor([0, -0.4, 0], dtype=torch.float64)) @ \
        euler_to_rotation(torch.tensor([0.2, 0, 0], dtype=torch.float64))
    assert torch.allclose(euler_to_rotation(v), comp, atol=1e-12)


def test_euler_round_trip_many_poses():
    ang = random_angles(2000)
    back = rotation_to_euler(euler_to_rotation(ang))
    assert (back - ang).abs().max() < 1e-9


def test_euler_gimbal_lock_still_reproduces_rotation():
    ang = torch.tensor([[0.3, math.pi / 2, 0.2], [-0.1, -math.pi / 2, 0.5]], dtype=torch.float64)
    R = euler_to_rotation(ang)
    assert torch.allclose(euler_to_rotation(rotation_to_euler(R)), R, atol=1e-7)


def test_project_unproject_round_trip_and_scale():
    B, V = 64, 50
    ang = random_angles(B).float()
    cam = Camera.from_euler(ang, torch.randn(B, 3) * 50, torch.rand(B) * 10 + 0.5)
    S = torch.randn(B, V, 3) * 10
    p = cam.project(S)
    assert torch.allclose(cam.unproject(p), S, atol=1e-4)
    # scaled orthographic: distances scale by f exactly, for x, y, z together
    d_model = (S[:, 0] - S[:, 1]).norm(dim=-1)
    d_img = (p[:, 0] - p[:, 1]).norm(dim=-1)
    assert torch.allclose(d_img, cam.scale * d_model, rtol=1e-4)
    assert torch.allclose(project(S, cam.rotation, cam.translation, cam.scale), p)
    assert torch.allclose(unproject(p, cam.rotation, cam.translation, cam.scale), S, atol=1e-4)


def test_image_axes_conventions():
    # identity pose: model +Y (up) maps to smaller image y, +Z (toward viewer) to smaller depth
    cam = Camera.from_euler(torch.zeros(1, 3), torch.tensor([[100.0, 100.0, 0.0]]), torch.tensor([2.0]))
    pts = cam.project(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]]))[0]
    assert torch.allclose(pts[0], torch.tensor([102.0, 100.0, 0.0]))  # subject's left -> image right
    assert torch.allclose(pts[1], torch.tensor([100.0, 98.0, 0.0]))  # up -> up on screen
    assert torch.allclose(pts[2], torch.tensor([100.0, 100.0, -2.0]))  # forward -> nearer
    nose = torch.tensor([[[0.0, 0.0, 10.0]]])
    yaw = Camera.from_euler(torch.tensor([[0.0, 0.3, 0.0]]), torch.zeros(1, 3), torch.ones(1)).project(nose)
    pitch = Camera.from_euler(torch.tensor([[0.3, 0.0, 0.0]]), torch.zeros(1, 3), torch.ones(1)).project(nose)
    assert yaw[0, 0, 0] > 2.9  # positive yaw: the face turns toward the image's right
    assert pitch[0, 0, 1] > 2.9  # positive pitch: the face tilts down (y grows downward)
    top = torch.tensor([[[0.0, 10.0, 0.0]]])
    roll = Camera.from_euler(torch.tensor([[0.0, 0.0, 0.3]]), torch.zeros(1, 3), torch.ones(1)).project(top)
    assert roll[0, 0, 0] < -2.9  # positive roll: counter-clockwise on screen (top moves left)


def test_frame_face_centres_point():
    ang = random_angles(8).float()
    centre = torch.randn(8, 3)
    cam = frame_face(centre, 20.0, (120, 200), ang, fill=0.5)
    p = cam.project(centre[:, None])[:, 0]
    assert torch.allclose(p, torch.tensor([100.0, 60.0, 0.0]).expand(8, 3), atol=1e-4)
    assert torch.allclose(cam.scale, torch.full((8,), 0.5 * 120 / 20.0))

"""PNCC, NMFC and 3D flow ground truth against analytic answers."""

import math

import torch

from faceflow.geometry.camera import frame_face
from faceflow.render import flow_ground_truth, interpolate, nmfc, nmfc_colors, pncc, pncc_to_points, rasterize

SIZE = (96, 112)  # H, W: non-square on purpose


def pixel_centres(H, W):
    jj, ii = torch.meshgrid(torch.arange(W) + 0.5, torch.arange(H) + 0.5, indexing="xy")
    return torch.stack([jj, ii], -1)  # (H, W, 2)


def plane(z_of_xy, H, W):
    """Two triangles covering the whole image with depth z = a x + b y + c."""
    xy = torch.tensor([[-5.0, -5.0], [W + 5.0, -5.0], [W + 5.0, H + 5.0], [-5.0, H + 5.0]])
    z = torch.tensor([z_of_xy(x, y) for x, y in xy.tolist()])
    return torch.cat([xy, z[:, None]], 1)[None], torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_pncc_of_a_plane_is_the_normalised_pixel_position():
    H, W = SIZE
    verts, faces = plane(lambda x, y: 0.1 * x - 0.2 * y + 3.0, H, W)
    code, mask = pncc(verts, faces, SIZE, depth_range=200.0)
    assert mask.all()
    c = pixel_centres(H, W)
    z = 0.1 * c[..., 0] - 0.2 * c[..., 1] + 3.0
    expect = torch.stack([c[..., 0] / W, c[..., 1] / H, 0.5 - z / 200.0], -1)
    assert torch.allclose(code[0], expect, atol=1e-5)
    pts = pncc_to_points(code, SIZE, depth_range=200.0)[0]
    assert torch.allclose(pts[..., :2], c, atol=1e-3) and torch.allclose(pts[..., 2], z, atol=1e-3)


def posed(model, id_coeffs, exp, angles_deg, size=SIZE):
    S = model.shape(id_coeffs, exp)
    ang = torch.tensor([[math.radians(a) for a in angles_deg]])
    cam = frame_face(model.mean[model.lmk68].mean(0, keepdim=True), 22.0, size, ang, fill=0.8)
    return S, cam


def test_pncc_of_the_face_encodes_visible_surface_points(skin_model):
    m = skin_model
    S, cam = posed(m, torch.randn(1, 100), m.expression({"jawOpen": 0.4}), (5, -20, 3))
    V = cam.project(S)
    code, mask = pncc(V, m.triangles, SIZE, cull_backfaces=True)
    assert 0.2 < mask.float().mean() < 0.9
    assert (code[~mask] == 0).all() and (code[mask] >= 0).all() and (code[mask] <= 1).all()
    pts = pncc_to_points(code, SIZE)[0][mask[0]]
    # x, y decode to the pixel centres; the decoded points unproject onto the model surface
    assert torch.allclose(pts[:, :2], pixel_centres(*SIZE)[mask[0]], atol=1e-3)
    frags = rasterize(V, m.triangles, SIZE, cull_backfaces=True)
    surface = interpolate(S, m.triangles, frags)[0][mask[0]]
    assert torch.allclose(cam.unproject(pts[None])[0], surface, atol=1e-3)
    # nearer points have larger depth codes: the nose tip is the brightest z in a frontal view
    Sf, camf = posed(m, None, None, (0, 0, 0))
    Vf = camf.project(Sf)
    codef, _ = pncc(Vf, m.triangles, SIZE, cull_backfaces=True)
    tip = Vf[0, int(torch.argmin(Vf[0, :, 2]))]
    i, j = int(tip[1]), int(tip[0])
    assert codef[0, i, j, 2] >= codef[0][..., 2].max() - 0.01


def test_flow_equals_projected_displacement_of_the_same_surface_point(skin_model):
    """Eq. (2): F_xy must be the 2D optical flow of the surface point, found by projecting the
    barycentric model-space point with the second camera; F_z its depth change."""
    m = skin_model
    i = torch.randn(1, 100)
    S1, cam1 = posed(m, i, m.expression({"mouthSmile_L": 0.5}), (0, -15, 0))
    S2, cam2 = posed(m, i, m.expression({"jawOpen": 0.6, "eyeBlink_R": 1.0}), (8, 12, -5))
    cam2.translation = cam2.translation + torch.tensor([[4.0, -3.0, 1.0]])
    cam2.scale = cam2.scale * 1.1
    V1, V2 = cam1.project(S1), cam2.project(S2)
    flow, mask = flow_ground_truth(V1, V2, m.triangles, SIZE)
    frags = rasterize(V1, m.triangles, SIZE)
    assert torch.equal(mask, frags.mask) and (flow[~mask] == 0).all()
    S2_point = interpolate(S2, m.triangles, frags)  # same triangle + barycentrics, second shape
    p2 = cam2.project(S2_point.reshape(1, -1, 3)).reshape(1, *SIZE, 3)[0][mask[0]]
    start = pixel_centres(*SIZE)[mask[0]]
    assert torch.allclose(start + flow[0][mask[0]][:, :2], p2[:, :2], atol=2e-3)
    z1 = frags.depth[0][mask[0]]
    assert torch.allclose(z1 + flow[0][mask[0]][:, 2], p2[:, 2], atol=2e-3)
    assert flow[0][mask[0]].norm(dim=-1).mean() > 3  # a real motion was tested


def test_rigid_motions_give_analytic_flows(skin_model):
    m = skin_model
    S, cam = posed(m, None, None, (0, 10, 0))
    V1 = cam.project(S)
    # pure translation: constant flow
    d = torch.tensor([3.5, -2.0, 7.0])
    flow, mask = flow_ground_truth(V1, V1 + d, m.triangles, SIZE)
    assert torch.allclose(flow[mask], d.expand(int(mask.sum()), 3), atol=1e-4)
    # in-plane rotation by a about the image centre: F_xy = (Rot(a) - I)(p - c)
    a = 0.2
    c = torch.tensor([SIZE[1] / 2, SIZE[0] / 2])
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    V2 = V1.clone()
    V2[..., :2] = (V1[..., :2] - c) @ rot.T + c
    flow, mask = flow_ground_truth(V1, V2, m.triangles, SIZE)
    p = pixel_centres(*SIZE)[mask[0]]
    assert torch.allclose(flow[0][mask[0]][:, :2], (p - c) @ rot.T + c - p, atol=1e-3)
    assert flow[0][mask[0]][:, 2].abs().max() < 1e-4


def test_nmfc_gives_the_same_colour_to_the_same_point_for_everyone(skin_model):
    m = skin_model
    colors = nmfc_colors(m.mean, m.narrow_face_mask)
    face = colors[m.narrow_face_mask]
    assert torch.allclose(face.amin(0), torch.zeros(3)) and torch.allclose(face.amax(0), torch.ones(3))
    nose = int(m.lmk68[30])
    seen = []
    cases = ((1, {}, (0, 0, 0)), (2, {"jawOpen": 0.5}, (5, 20, 0)), (3, {"mouthSmile_R": 1.0}, (-5, -25, 8)))
    for seed, exp, ang in cases:
        g = torch.Generator().manual_seed(seed)
        S, cam = posed(m, torch.randn(1, 100, generator=g) * 1.5, m.expression(exp), ang, size=(224, 224))
        V = cam.project(S)
        img, mask = nmfc(V, m.triangles, colors, (224, 224))
        x, y = V[0, nose, :2]
        seen.append(img[0, int(y), int(x)])
        assert mask[0, int(y), int(x)]
    for s in seen:  # within a pixel's worth of colour change
        assert torch.allclose(s, colors[nose], atol=0.03)

import numpy as np
import pytest
import torch

from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.geometry.camera import euler_to_rotation
from faceflow.geometry.morphable import MorphableModel, similarity_transform
from faceflow.render import rasterize
from faceflow.runtime.assets import find_asset, search_dirs


def test_missing_asset_error_lists_places_and_how_to_get(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEFLOW_ASSETS", str(tmp_path))
    assert search_dirs()[0] == tmp_path
    with pytest.raises(AssetNotFoundError) as e:
        find_asset("ict_facekit/does_not_exist.npz")
    msg = str(e.value)
    assert str(tmp_path) in msg and "shared" in msg and ".cache" in msg and "ICT" in msg


def test_env_var_takes_priority(monkeypatch, tmp_path):
    (tmp_path / "ict_facekit").mkdir()
    fake = tmp_path / "ict_facekit" / "ict_facekit.npz"
    fake.write_bytes(b"not an npz")
    monkeypatch.setenv("FACEFLOW_ASSETS", str(tmp_path))
    assert find_asset("ict_facekit/ict_facekit.npz") == fake
    with pytest.raises(FaceflowError, match="cannot read morphable model"):
        MorphableModel.load("skin")


def test_skin_model_contents(skin_model):
    m = skin_model
    assert m.mean.shape == (11248, 3) and m.id_basis.shape == (100, 11248, 3) and m.exp_basis.shape == (53, 11248, 3)
    assert m.triangles.shape == (22288, 3) and int(m.triangles.max()) == 11247
    assert m.lmk68.shape == (68,) and len(m.exp_names) == 53
    # documented geometry: nose tip near (0, 0.4, 13.1), outer eye corners ~8.9 cm apart
    lm = m.mean[m.lmk68]
    assert abs(float((lm[36] - lm[45]).norm()) - 8.9) < 0.5
    assert float(m.mean[:, 2].max()) == pytest.approx(13.1, abs=0.5)


def test_full_model_loads_and_shares_skin_vertices(skin_model, full_model):
    assert full_model.mean.shape == (26719, 3) and full_model.triangles.shape == (52220, 3)
    assert full_model.id_basis.dtype == torch.float32
    assert torch.allclose(full_model.mean[:11248], skin_model.mean)
    assert torch.equal(full_model.lmk68, skin_model.lmk68)
    i = torch.randn(2, 100)
    assert torch.allclose(full_model.shape(i)[:, :11248], skin_model.shape(i), atol=2e-3)  # float16 bases
    assert "teeth" in full_model.region_names
    teeth = full_model.region_mask("teeth")
    assert int(teeth.sum()) == 21451 - 17039  # the documented vertex range of the teeth
    assert not bool(full_model.region_mask("teeth")[:11248].any())
    assert int(skin_model.region_mask("face", "head_neck").sum()) == 11248
    with pytest.raises(FaceflowError, match="unknown region"):
        skin_model.region_mask("hair")
    # the see-through eye helper layers are not drawn; every other triangle is
    helpers = {"eye_blend_left", "eye_blend_right", "eye_occlusion_left", "eye_occlusion_right",
               "lacrimal_fluid_left", "lacrimal_fluid_right"}
    regions = [full_model.region_names[r] for r in full_model.tri_region.tolist()]
    assert len(full_model.render_triangles) == sum(r not in helpers for r in regions)
    assert torch.equal(full_model.render_triangles[:100], full_model.triangles[:100])  # face first, kept
    assert len(skin_model.render_triangles) == len(skin_model.triangles)


def test_shape_is_linear_batched_and_differentiable(skin_model):
    m = skin_model
    assert torch.equal(m.shape()[0], m.mean)
    i, e = torch.randn(4, 100), torch.rand(4, 53)
    S = m.shape(i, e)
    assert S.shape == (4, 11248, 3) and S.dtype == torch.float32
    manual = m.mean + (i[1, :, None, None] * m.id_basis).sum(0) + (e[1, :, None, None] * m.exp_basis).sum(0)
    assert torch.allclose(S[1], manual, atol=1e-4)
    assert torch.allclose(m.shape(2 * i) - m.mean, 2 * (m.shape(i) - m.mean), atol=1e-4)
    idx = m.subset("meshreg").indices
    assert torch.allclose(m.shape(i, e, vertex_idx=idx), S[:, idx])
    ig = i.clone().requires_grad_(True)
    m.shape(ig, e)[:, 5, 1].sum().backward()
    assert torch.allclose(ig.grad[0], m.id_basis[:, 5, 1])


def test_expression_by_name(skin_model):
    e = skin_model.expression({"jawOpen": 0.7})
    assert e[0, skin_model.exp_names.index("jawOpen")] == pytest.approx(0.7) and e.sum() == pytest.approx(0.7)
    with pytest.raises(FaceflowError, match="jawOpen"):
        skin_model.expression({"jawOpn": 1.0})
    # jaw opening moves the chin (landmark 8) down by centimetres
    chin = skin_model.landmarks(skin_model.shape(exp_coeffs=e))[0, 8] - skin_model.mean[skin_model.lmk68[8]]
    assert chin[1] < -1.0


def test_subsets_are_consistent(skin_model):
    m = skin_model
    face = m.subset("face")
    assert len(face) == int(m.narrow_face_mask.sum()) == 6706
    reg = m.subset("meshreg")
    assert 1500 <= len(reg) <= 5000
    assert bool(m.narrow_face_mask[reg.indices].all()) and len(torch.unique(reg.indices)) == len(reg)
    for s in (face, reg):
        assert int(s.triangles.min()) >= 0 and int(s.triangles.max()) < len(s)
    assert m.subset("meshreg") is reg  # computed once
    with pytest.raises(FaceflowError):
        m.subset("nose")


def test_meshreg_subset_covers_the_face_like_the_dense_mesh(skin_model):
    """The decimated mesh renders (nearly) the same silhouette as the dense face region."""
    m = skin_model
    S = m.mean[None]
    img = S[..., :2] * torch.tensor([8.0, -8.0]) + torch.tensor([112.0, 112.0])
    V = torch.cat([img, -8 * S[..., 2:]], -1)
    face, reg = m.subset("face"), m.subset("meshreg")
    a = rasterize(V[:, face.indices], face.triangles, (224, 224)).mask
    b = rasterize(V[:, reg.indices], reg.triangles, (224, 224)).mask
    iou = (a & b).sum() / (a | b).sum()
    assert iou > 0.95, float(iou)


def test_fit_to_mesh_recovers_coefficients(skin_model):
    m = skin_model
    g = torch.Generator().manual_seed(3)
    i, e = torch.randn(3, 100, generator=g), torch.rand(3, 53, generator=g) * 0.9
    X = m.shape(i, e)
    r = m.fit_to_mesh(X, exp_bounds=None, id_weight=1e-8, exp_weight=1e-8)
    assert (r.id - i).abs().max() < 1e-3 and (r.exp - e).abs().max() < 1e-3 and r.rms.max() < 1e-4
    # bounded solve keeps the box and still explains the mesh on a vertex subset
    e_out = e.clone()
    e_out[:, 26] = 1.6  # jawOpen far outside [0, 1]
    idx = m.subset("meshreg").indices
    r = m.fit_to_mesh(m.shape(i, e_out, vertex_idx=idx), idx)
    assert r.exp.min() >= 0 and r.exp.max() <= 1 + 1e-6
    assert r.exp[:, 26].min() > 0.99  # pushed to the bound
    unb = m.fit_to_mesh(m.shape(i, e_out, vertex_idx=idx), idx, exp_bounds=None)
    assert unb.exp[:, 26].min() > 1.4 and unb.rms.max() < r.rms.min()


def test_fit_to_mesh_with_unknown_similarity(skin_model):
    m = skin_model
    g = torch.Generator().manual_seed(4)
    i, e = torch.randn(2, 100, generator=g), torch.rand(2, 53, generator=g) * 0.8
    idx = m.subset("meshreg").indices
    R = euler_to_rotation(torch.tensor([[0.3, -0.6, 0.2], [-0.2, 0.4, -0.1]]))
    t = torch.tensor([[100.0, 80.0, -5.0], [20.0, 10.0, 0.0]])
    s = torch.tensor([4.0, 2.5])
    Y = s[:, None, None] * m.shape(i, e, vertex_idx=idx) @ R.transpose(1, 2) + t[:, None]
    r = m.fit_to_mesh(Y, idx, similarity=True, id_weight=1e-6, exp_weight=1e-6)
    assert torch.allclose(r.scale, s, rtol=1e-3)
    assert (r.rotation - R).abs().max() < 1e-3
    assert (r.translation - t).abs().max() < 0.05
    assert (r.exp - e).abs().max() < 0.02 and (r.id - i).abs().max() < 0.05
    assert (r.rms / s).max() < 1e-3


def test_similarity_transform_matches_known_transform():
    src = torch.randn(5, 40, 3, dtype=torch.float64)
    R = euler_to_rotation(torch.randn(5, 3, dtype=torch.float64))
    s = torch.rand(5, dtype=torch.float64) + 0.5
    t = torch.randn(5, 3, dtype=torch.float64)
    dst = s[:, None, None] * src @ R.transpose(1, 2) + t[:, None]
    s2, R2, t2 = similarity_transform(src, dst)
    assert torch.allclose(s2, s) and torch.allclose(R2, R) and torch.allclose(t2, t)
    # a mirrored target still yields a proper rotation
    _, Rm, _ = similarity_transform(src, dst * torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    assert np.allclose(torch.linalg.det(Rm).numpy(), 1.0)


def test_meshreg_subset_is_deterministic_and_keeps_the_vertex_nearest_each_cell_centroid():
    """3DMeshReg's output vertex i must mean the same model vertex in every process (weights,
    stored datasets and fresh computations agree): two fresh loads give the same subset, and
    each kept vertex is, by brute force, the face vertex nearest the centroid of its 0.42 cm cell."""
    import numpy as np

    a = MorphableModel.load().subset("meshreg")
    m = MorphableModel.load()
    b = m.subset("meshreg")
    assert torch.equal(a.indices, b.indices) and torch.equal(a.triangles, b.triangles)
    face = torch.nonzero(m.narrow_face_mask).squeeze(1).numpy()
    P = m.mean[face].double().numpy()
    cells = np.floor(P / 0.42).astype(np.int64)
    groups: dict = {}
    for k, c in enumerate(map(tuple, cells)):
        groups.setdefault(c, []).append(k)
    expect = []
    for ks in groups.values():
        cen = P[ks].mean(0)
        d = np.linalg.norm(P[ks] - cen, axis=1)
        expect.append(face[ks[int(np.lexsort((np.arange(len(ks)), d))[0])]])
    assert sorted(expect) == b.indices.tolist()

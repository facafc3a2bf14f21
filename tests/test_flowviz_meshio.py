import numpy as np
import pytest
import torch

from faceflow.io.mesh import read_obj, read_ply, write_obj, write_ply
from faceflow.render.flowcolor import colour_wheel, flow2d_to_rgb, flow3d_to_rgb, hsv_to_rgb, shared_max_magnitude


def test_hsv_matches_colorsys():
    import colorsys
    g = np.random.default_rng(0)
    hsv = g.uniform(size=(200, 3))
    ours = hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2])
    ref = np.array([colorsys.hsv_to_rgb(*x) for x in hsv])
    assert np.allclose(ours, ref, atol=1e-12)


def test_flow2d_colour_wheel_semantics():
    f = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [1.0, 0.0]]])
    rgb = flow2d_to_rgb(f, max_magnitude=2.0)[0]
    assert rgb[0].tolist() == [255, 255, 255]  # no motion is white
    assert rgb[1].tolist() == [255, 0, 0]  # full motion to the right: saturated red
    assert rgb[2].tolist() == [128, 255, 0]  # down (y down) is a quarter turn: chartreuse
    assert rgb[3].tolist() == [0, 255, 255]  # left: cyan
    assert rgb[4].tolist() == [255, 128, 128]  # half magnitude: half saturation
    masked = flow2d_to_rgb(f, mask=np.array([[True, False, True, True, True]]), max_magnitude=2.0)[0]
    assert masked[1].tolist() == [255, 255, 255]
    wheel = colour_wheel(64)
    assert wheel.shape == (64, 64, 3) and wheel[0, 0].tolist() == [255, 255, 255]


def test_flow3d_spherical_semantics():
    f = np.array([[[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 4.0], [0.0, 0.0, -4.0], [2.0, 0.0, 0.0]]])
    rgb = flow3d_to_rgb(f, max_magnitude=4.0)[0]
    assert rgb[0].tolist() == [0, 0, 0]  # no motion is black
    assert rgb[1].tolist() == [255, 128, 128]  # in-plane (phi = 90 deg): half saturation, hue red
    assert rgb[2].tolist() == [255, 255, 255]  # straight into the screen: phi = 0, unsaturated
    assert rgb[3].tolist() == [255, 0, 0]  # straight out: phi = 180 deg, fully saturated
    assert rgb[4].tolist() == [128, 64, 64]  # half magnitude halves the value
    torch_in = flow3d_to_rgb(torch.from_numpy(f), max_magnitude=4.0)
    assert np.array_equal(torch_in[0], rgb)


def test_shared_normalisation_makes_pairs_comparable():
    a = np.zeros((4, 4, 3))
    a[..., 0] = 1.0
    b = 3 * a
    m = shared_max_magnitude([a, b], percentile=100)
    assert m == pytest.approx(3.0)
    ra, rb = flow3d_to_rgb(a, max_magnitude=m), flow3d_to_rgb(b, max_magnitude=m)
    assert ra[0, 0, 0] < rb[0, 0, 0]  # smaller motion is darker under the shared scale
    # each on its own scale, both would look the same
    assert np.array_equal(flow3d_to_rgb(a), flow3d_to_rgb(b))


@pytest.mark.parametrize("writer,reader,ext", [(write_obj, read_obj, "obj"), (write_ply, read_ply, "ply")])
def test_mesh_round_trip(tmp_path, writer, reader, ext):
    g = np.random.default_rng(1)
    v = g.normal(size=(30, 3)).astype(np.float32)
    f = g.integers(0, 30, size=(40, 3))
    c = g.uniform(size=(30, 3))
    path = tmp_path / f"m.{ext}"
    writer(path, torch.from_numpy(v), torch.from_numpy(f), c)
    v2, f2, c2 = reader(path)
    assert np.allclose(v2, v, atol=1e-5) and np.array_equal(f2, f)
    assert np.allclose(c2, c, atol=1 / 255 if ext == "ply" else 1e-6)
    writer(path, v, f)  # overwrite without colours
    assert reader(path)[2] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m.{ext}"]  # no temp files left


def test_mesh_writer_rejects_bad_input_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_obj(tmp_path / "bad.obj", np.zeros((3, 3)), np.array([[0, 1, 5]]))
    with pytest.raises(ValueError):
        write_ply(tmp_path / "bad.ply", np.zeros((3, 2)), np.array([[0, 1, 2]]))
    assert list(tmp_path.iterdir()) == []

"""evaluation.meshreg_benchmark: vertex errors against brute force, template baseline row."""
import numpy as np
import pytest
import torch

from evaluation import meshreg_benchmark
from evaluation.meshreg_benchmark import evaluate
from faceflow.errors import FaceflowError
from faceflow.nets.metrics import vertex_errors


def test_vertex_errors_match_a_loop():
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.randn(3, 50, 3, generator=g), torch.randn(3, 50, 3, generator=g)
    e3, e2 = vertex_errors(pred, gt)
    assert e3.shape == e2.shape == (3,)
    for b in range(3):
        d = [float(np.sqrt(sum((pred[b, v, k] - gt[b, v, k]) ** 2 for k in range(3)))) for v in range(50)]
        d2 = [float(np.sqrt(sum((pred[b, v, k] - gt[b, v, k]) ** 2 for k in range(2)))) for v in range(50)]
        assert abs(float(e3[b]) - np.mean(d)) < 1e-5 and abs(float(e2[b]) - np.mean(d2)) < 1e-5
    assert meshreg_benchmark.vertex_errors is vertex_errors  # one implementation (training validates with it)
    with pytest.raises(FaceflowError, match="both be"):
        vertex_errors(pred, gt[:, :10])


class _Shift(torch.nn.Module):
    """A fake 3DMeshReg: the template moved by a per-image offset read from the image."""

    def __init__(self, template):
        super().__init__()
        self.register_buffer("template", template)

    def forward(self, img):
        return self.template[None] + img[:, :, 0, 0].view(-1, 1, 3)


def test_evaluate_rows_and_even_spacing():
    tpl = torch.zeros(4, 3)
    data = [{"i1": torch.full((3, 8, 8), float(k)), "mesh1": torch.full((4, 3), float(k))} for k in range(10)]
    res = evaluate(_Shift(tpl), data, max_pairs=4, batch_size=3)
    assert res["meshreg"]["vertex_px"] < 1e-6 and res["meshreg"]["pairs"] == 4
    # evenly spaced items 0, 3, 6, 9: the template is off by k * sqrt(3) (3D) and k * sqrt(2) (2D)
    np.testing.assert_allclose(res["template"]["vertex_px"], np.mean([0, 3, 6, 9]) * np.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(res["template"]["vertex_px_2d"], np.mean([0, 3, 6, 9]) * np.sqrt(2), rtol=1e-6)


def test_yaw_bins_split_the_same_errors():
    from evaluation.meshreg_benchmark import yaw_bin

    assert [yaw_bin(y) for y in (0, -14.9, 15, 29.99, -30, 44, 45, -59, 60, 80)] == [
        "0-15", "0-15", "15-30", "15-30", "30-45", "30-45", "45-60", "45-60", "60+", "60+"]
    tpl = torch.zeros(4, 3)
    data = [{"i1": torch.full((3, 8, 8), float(k)), "mesh1": torch.full((4, 3), 0.0)} for k in range(6)]
    yaw = np.array([5.0, -20.0, 40.0, 3.0, 25.0, -50.0])
    res = evaluate(_Shift(tpl), data, max_pairs=6, batch_size=4, yaw=yaw)
    bins = res["by_yaw"]
    assert list(bins) == ["0-15", "15-30", "30-45", "45-60"]  # in order, only the bins present
    assert [bins[b]["meshreg"]["pairs"] for b in bins] == [2, 2, 1, 1]
    # item k is off by k * sqrt(3): bin 0-15 holds items 0 and 3
    np.testing.assert_allclose(bins["0-15"]["meshreg"]["vertex_px"], 1.5 * np.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(bins["45-60"]["meshreg"]["vertex_px"], 5 * np.sqrt(3), rtol=1e-6)
    assert bins["0-15"]["template"]["vertex_px"] == 0

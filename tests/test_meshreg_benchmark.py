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

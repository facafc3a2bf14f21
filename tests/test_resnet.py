"""Our ResNet trunks against torchvision's (the brute-force reference): same parameter names,
same outputs for the same weights, a torchvision ImageNet state dict loads as it is."""

from __future__ import annotations

import pytest
import torch

from faceflow.nets.resnet import ResNet

torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_trunk_equals_torchvision(name):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None)
    for m in ref.modules():  # non-trivial BatchNorm statistics, so eval mode is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ours = ResNet(name)
    theirs = ref.state_dict()
    assert set(ours.state_dict()) == {k for k in theirs if not k.startswith("fc.")}
    ours.load_classifier_state(theirs)
    ref.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 96)
    ref_trunk = torch.nn.Sequential(*list(ref.children())[:-2])
    with torch.no_grad():
        want = ref_trunk(x)
        got = ours.trunk()(x)
    assert got.shape == want.shape == (2, ours.channels, 2, 3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_trunk_keeps_the_indices_of_the_shipped_weights():
    trunk = ResNet("resnet18").trunk()
    keys = set(trunk.state_dict())
    assert "0.weight" in keys and "1.running_mean" in keys  # conv1, bn1
    assert "4.0.conv1.weight" in keys and "5.0.downsample.0.weight" in keys and "7.1.bn2.bias" in keys
    assert not any(k.startswith(("2.", "3.")) for k in keys)  # relu and maxpool hold no parameters

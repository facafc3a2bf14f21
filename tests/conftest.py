"""Shared fixtures. Assets and media live outside the repository (see faceflow.runtime.assets); tests
that need them skip when they are absent, unless FACEFLOW_REQUIRE_ASSETS=1 (set by CI), in
which case a missing asset is a failure."""

from __future__ import annotations

import os

import pytest
import torch

from faceflow.errors import AssetNotFoundError


def _need(exc: Exception):
    if os.environ.get("FACEFLOW_REQUIRE_ASSETS") == "1":
        raise exc
    pytest.skip(f"asset missing: {exc}")


@pytest.fixture(scope="session")
def skin_model():
    from faceflow.geometry.morphable import MorphableModel
    try:
        return MorphableModel.load("skin")
    except AssetNotFoundError as e:
        _need(e)


@pytest.fixture(scope="session")
def full_model():
    from faceflow.geometry.morphable import MorphableModel
    try:
        return MorphableModel.load("full")
    except AssetNotFoundError as e:
        _need(e)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module single-threaded: small convolutions are faster so, and OpenMP spinning makes
    them up to 30x slower when the 2 cores are shared with other processes. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Where the tests find the real media: ``$FACEFLOW_MEDIA`` or ``<repo>/../shared/media``.

``media(rel)`` returns the path of a file there; when it is absent the calling test skips, or
fails when FACEFLOW_REQUIRE_ASSETS=1 (as in CI).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from faceflow.runtime.assets import media_dir

REPO = Path(__file__).resolve().parents[1]
MEDIA = media_dir()


def media(rel: str) -> Path:
    path = MEDIA / rel
    if not path.is_file():
        msg = f"real test media {path} not found (set FACEFLOW_MEDIA to the shared media folder)"
        if os.environ.get("FACEFLOW_REQUIRE_ASSETS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path

import os

import pytest
import torch

os.environ.setdefault("MOBILEVIT_OFFLINE", "1")  # the suite never downloads


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    # a clean weight cache per test, so nothing depends on the user's ~/.cache
    monkeypatch.setenv("MOBILEVIT_HOME", str(tmp_path / "cache"))

import os
import sys
from pathlib import Path

import pytest
import torch

# Tests are CPU-only and must not depend on the number of threads the machine offers.
torch.set_num_threads(min(2, os.cpu_count() or 1))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def python_exe():
    return sys.executable


@pytest.fixture(scope="session")
def match_feature_cache(tmp_path_factory):
    """One feature-cache folder for every end-to-end matching test module: the shapes scenes they share are
    extracted (real Lite0 + MiniLM) once per session, not once per module."""
    return tmp_path_factory.mktemp("match_cache")

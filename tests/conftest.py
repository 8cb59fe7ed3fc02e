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

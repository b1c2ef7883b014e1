import sys
from pathlib import Path

# tests import the shared procedural scenes as `scenes`
sys.path.append(str(Path(__file__).parent))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_thread_offline(monkeypatch):
    """No hub access and one torch thread (runs repeat bit for bit and leave the other core free)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

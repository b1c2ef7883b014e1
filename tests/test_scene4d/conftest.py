"""Fixtures shared by the scene4d tests."""

import pytest
import torch


@pytest.fixture
def one_thread_offline(monkeypatch):
    """No hub access and one torch thread (runs repeat bit for bit and leave the other core free)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

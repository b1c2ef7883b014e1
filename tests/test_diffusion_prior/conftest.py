"""Fixtures for the diffusion-prior tests: tiny random diffusers folders, built once per session.

Nothing is downloaded: HF_HUB_OFFLINE is set before diffusers/transformers are imported, and the
tiny folders carry a local tokenizer (diffusion_prior.tiny)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """``tiny_dir(kind) -> Path``: a tiny prior folder of that kind (built on first use, seed 0)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusion_prior.tiny import tiny_folder

    cache = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = tiny_folder(kind, tmp_path_factory.mktemp(f"tiny_{kind}"), seed=0)
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def tiny_prior(tiny_dir):
    """``tiny_prior(kind) -> DiffusionPrior`` loaded by path with load_prior (cached)."""
    from diffusion_prior.loading import load_prior

    cache = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = load_prior(kind, tiny_dir(kind), device="cpu")
        return cache[kind]

    return get


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)

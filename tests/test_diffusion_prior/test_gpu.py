"""The diffusers priors on a CUDA device: fp32 parity with the CPU, fp16 and bf16 steps with finite
gradients, model CPU offload (skipped without a GPU)."""

import pytest
import torch

from conftest import gen
from diffusion_prior.loading import load_prior

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
KINDS = ["sd", "zeroscope", "animatediff", "svd"]


def _emb(p, kind):
    if kind == "svd":
        return p.encode_image(torch.rand(3, 32, 32, generator=gen(1)), generator=gen(2))
    return p.encode_prompt("a red ball bouncing", "blurry")


def _grad(p, kind, device):
    img = torch.rand(1, 4 if kind != "sd" else 1, 3, 32, 32, generator=gen(3)).to(device).requires_grad_(True)
    out = p.sds(img, _emb(p, kind), generator=gen(4))
    out.loss.backward()
    return img.grad.float().cpu()


@pytest.fixture
def no_tf32():
    """fp32 parity needs true fp32 convolutions and matmuls (cuDNN uses TF32 by default)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("kind", KINDS)
def test_cuda_fp32_matches_cpu(tiny_dir, kind, no_tf32):
    a = _grad(load_prior(kind, tiny_dir(kind), device="cpu"), kind, "cpu")
    b = _grad(load_prior(kind, tiny_dir(kind), device="cuda", dtype="fp32"), kind, "cuda")
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(a.abs().max()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("opts", [dict(dtype="fp16"), dict(dtype="bf16"), dict(dtype="fp16", offload=True),
                                  dict(dtype="fp16", attention_slicing=True)])
def test_cuda_half_and_offload(tiny_dir, kind, opts):
    p = load_prior(kind, tiny_dir(kind), device="cuda", **opts)
    g = _grad(p, kind, "cuda")
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    if opts.get("offload"):
        assert next(p.unet.parameters()).device.type == "cpu"  # back home after the step

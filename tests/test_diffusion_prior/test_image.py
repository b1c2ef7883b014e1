"""StableDiffusionPrior on a tiny random SD folder: gradients reach the renders, seeds repeat,
diffusers' CFG convention, view-dependent prompts, and a folder saved by diffusers' own pipeline."""

import math

import pytest
import torch

from conftest import gen
from diffusion_prior import PriorError
from diffusion_prior.image import camera_azimuth_elevation, view_directions


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """World-to-camera (OpenCV: +x right, +y down, +z forward) of a camera at ``eye`` looking at ``target``."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    f = (target - eye) / (target - eye).norm()
    r = torch.linalg.cross(f, up)
    if r.norm() < 1e-8:  # looking straight down: any right vector
        r = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    r = r / r.norm()
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c.float()


def orbit(az_deg, el_deg, radius=3.0):
    a, e = math.radians(az_deg), math.radians(el_deg)
    return look_at((radius * math.cos(e) * math.cos(a), radius * math.cos(e) * math.sin(a), radius * math.sin(e)))


def test_azimuth_elevation_of_orbit_cameras():
    for az, el in [(0, 0), (90, 10), (-120, 30), (179, -20)]:
        a, e = camera_azimuth_elevation(orbit(az, el))
        assert abs(float(a) - az) < 1e-3 and abs(float(e) - el) < 1e-3


def test_view_directions_follow_threestudio_rule():
    cams = torch.stack([orbit(0, 10), orbit(30, 0), orbit(90, 20), orbit(-60, 0), orbit(170, 5), orbit(-150, 0),
                        orbit(90, 75)])
    assert view_directions(cams) == ["front", "front", "side", "side", "back", "back", "overhead"]
    # the front direction is a setting: facing +y, a camera on +y sees the front
    assert view_directions(orbit(90, 0)[None], front_azimuth_deg=90.0) == ["front"]


def test_sd_sds_reaches_renders(tiny_prior):
    p = tiny_prior("sd")
    assert (p.kind, p.group_size, p.native_size) == ("image", 1, 32)
    emb = p.encode_prompt("a red ball", "blurry")
    img = torch.rand(2, 1, 3, 24, 24, requires_grad=True)
    out = p.sds(img, emb, guidance_scale=7.5, generator=gen(0), want_preview=True)
    out.loss.backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    assert out.t.shape == (2,) and out.preview.shape == (2, 1, 3, 32, 32)
    assert float(out.grad_norm) > 0


def test_same_seed_same_result(tiny_prior):
    p = tiny_prior("sd")
    emb = p.encode_prompt("a blue cube")
    runs = []
    for _ in range(2):
        img = torch.full((1, 2, 3, 32, 32), 0.3, requires_grad=True)
        out = p.sds(img, emb, generator=gen(7))
        out.loss.backward()
        runs.append((out.loss.detach(), out.t, img.grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert torch.equal(runs[0][2], runs[1][2])
    img = torch.full((1, 2, 3, 32, 32), 0.3, requires_grad=True)
    other = p.sds(img, emb, generator=gen(8))
    assert not torch.equal(other.loss.detach(), runs[0][0])


def _grad(p, emb, guidance, seed=3, cameras=None):
    img = torch.full((1, 1, 3, 32, 32), 0.5, requires_grad=True)
    p.sds(img, emb, guidance_scale=guidance, generator=gen(seed), cameras=cameras).loss.backward()
    return img.grad


def test_cfg_convention_is_diffusers(tiny_prior):
    """eps_u + s (eps_c - eps_u): s = 1 is the conditional model alone (the negative prompt has no
    effect), s = 0 the unconditional alone (the prompt has no effect)."""
    p = tiny_prior("sd")
    a, b = p.encode_prompt("a red ball", "blurry"), p.encode_prompt("a red ball", "ugly photo")
    g1a, g1b = _grad(p, a, 1.0), _grad(p, b, 1.0)
    assert torch.allclose(g1a, g1b, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(_grad(p, a, 7.5), _grad(p, b, 7.5), atol=1e-6, rtol=1e-5)
    c = p.encode_prompt("a green cone", "blurry")
    assert torch.allclose(_grad(p, a, 0.0), _grad(p, c, 0.0), atol=1e-6, rtol=1e-5)


def test_view_dependent_prompts_change_the_gradient(tiny_prior):
    p = tiny_prior("sd")
    emb = p.encode_prompt("a red ball")
    assert set(emb.extra["views"]) == {"front", "side", "back", "overhead"}
    front, back = orbit(0, 10)[None, None], orbit(180, 10)[None, None]
    assert not torch.allclose(_grad(p, emb, 7.5, cameras=front), _grad(p, emb, 7.5, cameras=back))
    assert torch.equal(_grad(p, emb, 7.5, cameras=front), _grad(p, emb, 7.5, cameras=orbit(10, 0)[None, None]))


def test_empty_prompt_refused(tiny_prior):
    with pytest.raises(PriorError, match="empty prompt"):
        tiny_prior("sd").encode_prompt("   ")


def test_folder_saved_by_diffusers_pipeline_loads(tmp_path):
    """A folder written by StableDiffusionPipeline.save_pretrained (not our writer) loads by path."""
    from diffusers import StableDiffusionPipeline

    from diffusion_prior.loading import load_prior
    from diffusion_prior.tiny import tiny_components

    _, c = tiny_components("sd", tmp_path / "work", seed=1)
    pipe = StableDiffusionPipeline(vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=c["tokenizer"],
                                   unet=c["unet"], scheduler=c["scheduler"], safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "pipe")
    p = load_prior("sd", tmp_path / "pipe", device="cpu")
    img = torch.rand(1, 1, 3, 32, 32, requires_grad=True)
    p.sds(img, p.encode_prompt("a red ball"), generator=gen(0)).loss.backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    # the same weights as the components it was made from
    assert torch.equal(p.unet.conv_in.weight, c["unet"].conv_in.weight)


@pytest.mark.parametrize("kind", ["sd", "zeroscope", "svd"])
def test_attention_slicing_same_gradient(tiny_dir, tiny_prior, kind):
    """Sliced attention and separate conditional/unconditional passes change memory, not the result."""
    from diffusion_prior.loading import load_prior

    sliced = load_prior(kind, tiny_dir(kind), device="cpu", attention_slicing=True)
    grads = []
    for p in (tiny_prior(kind), sliced):
        if kind == "svd":
            emb = p.encode_image(torch.rand(3, 32, 32, generator=gen(1)), generator=gen(2))
        else:
            emb = p.encode_prompt("a red ball", "blurry")
        img = torch.rand(1, 2, 3, 32, 32, generator=gen(3)).requires_grad_(True)
        p.sds(img, emb, generator=gen(4)).loss.backward()
        grads.append(img.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)

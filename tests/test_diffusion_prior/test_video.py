"""Video priors on tiny random folders: UNet3D (zeroscope layout), AnimateDiff (folder and
"SD_DIR,ADAPTER_DIR"), Stable Video Diffusion (image-conditioned, x0-form SDS)."""

import pytest
import torch

from conftest import gen
from diffusion_prior import PriorError
from diffusion_prior.loading import load_prior


def _run(p, emb, G=4, seed=0, size=24):
    img = torch.linspace(0, 1, 2 * G * 3 * size * size).reshape(2, G, 3, size, size).requires_grad_(True)
    out = p.sds(img, emb, guidance_scale=5.0, generator=gen(seed), want_preview=True)
    out.loss.backward()
    return out, img.grad


@pytest.mark.parametrize("kind", ["zeroscope", "animatediff"])
def test_text_to_video_sds(tiny_prior, kind):
    p = tiny_prior(kind)
    assert (p.kind, p.group_size, p.native_size) == ("video", 16, 32)
    assert p.motion == (kind == "animatediff")
    emb = p.encode_prompt("a red ball bouncing", "low motion, static statue")
    out, g = _run(p, emb)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert out.preview.shape == (2, 4, 3, 32, 32) and out.t.shape == (2,)
    _, g2 = _run(p, emb)
    assert torch.equal(g, g2)  # same generator seed, same gradient


def test_video_frames_are_denoised_together(tiny_prior):
    """Changing one frame changes the noise prediction of another frame (temporal layers), which an
    image prior would never do."""
    p = tiny_prior("zeroscope")
    emb = p.encode_prompt("a red ball bouncing")
    x = torch.randn(1, 4, 4, 16, 16)
    t = torch.tensor([500])
    e1, _ = p.predict_noise(x, t, emb, cameras=None, times=None)
    x2 = x.clone()
    x2[:, 0] += 1.0
    e2, _ = p.predict_noise(x2, t, emb, cameras=None, times=None)
    assert not torch.allclose(e1[:, 1:], e2[:, 1:])


def test_animatediff_from_sd_folder_and_adapter(tiny_dir):
    d = tiny_dir("animatediff")
    p = load_prior("animatediff", f"{d},{d / 'motion_adapter'}", device="cpu")
    assert p.motion
    _, g = _run(p, p.encode_prompt("a cat walking"), G=3)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_svd_sds(tiny_prior):
    p = tiny_prior("svd")
    assert (p.kind, p.group_size, p.native_size) == ("image_to_video", 4, 32)
    with pytest.raises(PriorError, match="conditions on an image"):
        p.encode_prompt("a red ball")
    ref = torch.rand(3, 40, 40, generator=gen(1))
    emb = p.encode_prompt(image=ref, generator=gen(2))
    assert emb.cond.shape == (1, 1, 32) and emb.extra["image_latents"].shape == (1, 4, 16, 16)
    out, g = _run(p, emb)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    _, g2 = _run(p, p.encode_prompt(image=ref, generator=gen(2)))
    assert torch.equal(g, g2)


def test_svd_x0_form_matches_edm_preconditioning(tiny_prior):
    """eps_hat from predict_noise equals (z - x0_hat) / sigma with diffusers' Euler v-prediction
    x0_hat, the UNet called at c_noise = 0.25 log sigma on c_in z."""
    p = tiny_prior("svd")
    emb = p.encode_image(torch.rand(3, 32, 32, generator=gen(3)), generator=gen(4))
    x_t = torch.randn(1, 4, 4, 16, 16, generator=gen(5))
    t = torch.tensor([700])
    eps_c, _ = p.predict_noise(x_t, t, emb, cameras=None, times=None)
    ab = p.alphas_cumprod[700]
    sigma = float(((1 - ab) / ab).sqrt())
    z = x_t * (sigma**2 + 1) ** 0.5
    lat = emb.extra["image_latents"][:, None].expand(1, 4, -1, -1, -1)
    with torch.no_grad():
        c_noise = torch.tensor([0.25 * torch.log(torch.tensor(sigma))])
        F = p.unet(torch.cat([z / (sigma**2 + 1) ** 0.5, lat], 2), c_noise, emb.cond,
                   added_time_ids=emb.extra["time_ids"]).sample
    x0 = F * (-sigma / (sigma**2 + 1) ** 0.5) + z / (sigma**2 + 1)  # EulerDiscreteScheduler, v_prediction
    assert torch.allclose(eps_c, (z - x0) / sigma, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["zeroscope", "animatediff", "svd"])
def test_folder_saved_by_diffusers_pipeline_loads(tmp_path, kind):
    """Folders written by diffusers' own pipelines load: TextToVideoSDPipeline, AnimateDiffPipeline
    (which saves its UNet as a UNetMotionModel) and StableVideoDiffusionPipeline."""
    import diffusers
    from transformers import CLIPImageProcessor

    from diffusion_prior.tiny import tiny_components

    _, c = tiny_components(kind, tmp_path / "work", seed=2)
    if kind == "zeroscope":
        pipe = diffusers.TextToVideoSDPipeline(**c)
    elif kind == "animatediff":
        pipe = diffusers.AnimateDiffPipeline(**c)
    else:
        c.pop("_preprocessor")
        pipe = diffusers.StableVideoDiffusionPipeline(**c, feature_extractor=CLIPImageProcessor(crop_size=32, size=32))
    pipe.save_pretrained(tmp_path / "pipe")
    p = load_prior(kind, tmp_path / "pipe", device="cpu")
    if kind == "animatediff":
        assert p.motion and (tmp_path / "pipe" / "unet" / "config.json").read_text().count("UNetMotionModel")
    emb = (p.encode_image(torch.rand(3, 32, 32), generator=gen(0)) if kind == "svd"
           else p.encode_prompt("a dog walking"))
    _, g = _run(p, emb, G=2)
    assert torch.isfinite(g).all() and g.abs().sum() > 0

"""The torch rasterizer against the brute-force per-pixel reference, finite differences and gsplat.

(``backend="torch"`` where a test is about the reference backend: "auto" picks the compiled CPU
backend, which tests/test_renderers/test_cpu_backend.py holds against this one.)"""

from __future__ import annotations

import math

import pytest
import torch

from cameras import CameraError, Cameras, intrinsics_from_fov, look_at
from renderers import (
    GaussianError,
    Gaussians,
    RasterOptions,
    RenderError,
    gsplat_available,
    rasterize,
    rgb_to_sh0,
)
from renderers.gaussians import eval_sh
from renderers.reference import rasterize_bruteforce
from scenes import random_gaussians, ring_cameras

F64 = torch.float64


@pytest.mark.parametrize("seed,sh_degree,tile", [(0, 0, None), (1, 1, 4), (2, 3, 16), (3, 2, 8)])
def test_forward_matches_bruteforce(seed, sh_degree, tile):
    g = random_gaussians(40, seed=seed, sh_degree=sh_degree, opacity_range=(0.2, 1.0))
    cams = ring_cameras(3, width=37, height=29)
    bg = torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [0.0, 0.5, 0.0]], dtype=F64)
    out = rasterize(g, cams, background=bg, options=RasterOptions(tile_size=tile), backend="torch")
    rgb, alpha, depth = rasterize_bruteforce(g, cams, background=bg)
    assert out.rgb.shape == (3, 29, 37, 3) and out.alpha.shape == (3, 29, 37, 1)
    assert alpha.mean() > 0.1  # the scene covers the image: the comparison means something
    assert (out.rgb - rgb).abs().mean() < 1e-3
    assert (out.alpha - alpha).abs().mean() < 1e-3
    # in float64 the two agree to rounding
    assert (out.rgb - rgb).abs().max() < 1e-9
    assert (out.depth - depth).abs().max() < 1e-8


def test_forward_float32_matches_reference_and_saturated_pixels():
    # dense, nearly opaque scene: exercises the transmittance stop and the alpha clamp
    g = random_gaussians(120, seed=5, sh_degree=1, opacity_range=(0.9, 1.0), scale_range=(0.1, 0.4))
    cams = ring_cameras(2, width=33, height=31)
    out = rasterize(g.to(dtype=torch.float32), cams.to(dtype=torch.float32), background=0.5, backend="torch")
    rgb, alpha, _ = rasterize_bruteforce(g, cams, background=torch.tensor([0.5, 0.5, 0.5], dtype=F64))
    assert (alpha > 0.999).float().mean() > 0.2
    assert (out.rgb.double() - rgb).abs().mean() < 1e-3
    assert (out.alpha.double() - alpha).abs().mean() < 1e-3


def _loss_params(g, cams):
    return [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.sh, cams.world_to_camera)]


def _weighted(params, cams, weights, fn):
    g = Gaussians(*params[:5])
    c = Cameras(cams.K, params[5], cams.width, cams.height)
    bg = torch.tensor([0.2, 0.3, 0.4], dtype=F64)
    if fn == "torch":
        o = rasterize(g, c, background=bg, backend="torch")
        r, a, d = o.rgb, o.alpha, o.depth
    else:
        r, a, d = rasterize_bruteforce(g, c, background=bg)
    return (torch.cat([r, a, d], -1) * weights).sum()


def test_gradients_match_bruteforce_autograd():
    g = random_gaussians(25, seed=2, sh_degree=2, opacity_range=(0.3, 1.0))
    cams = ring_cameras(2, width=21, height=17)
    w = torch.randn(2, 17, 21, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    p1, p2 = _loss_params(g, cams), _loss_params(g, cams)
    _weighted(p1, cams, w, "torch").backward()
    _weighted(p2, cams, w, "brute").backward()
    for name, a, b in zip(["means", "quats", "scales", "opacities", "sh", "pose"], p1, p2):
        assert b.grad.abs().max() > 1e-3, name  # the loss depends on it
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-9, msg=name)


def test_gradients_match_finite_differences():
    g = random_gaussians(12, seed=7, sh_degree=1, opacity_range=(0.3, 0.95))
    cams = ring_cameras(2, width=15, height=13)
    w = torch.randn(2, 13, 15, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    params = _loss_params(g, cams)
    assert torch.autograd.gradcheck(
        lambda *p: _weighted(list(p), cams, w, "torch"), params, eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_batch_equals_single_camera_renders():
    g = random_gaussians(30, seed=3, dtype=torch.float32)
    cams = ring_cameras(4, width=40, height=30, dtype=torch.float32)
    batch = rasterize(g, cams, background=(0.0, 0.0, 1.0))
    for i in range(4):
        one = rasterize(g, cams[i], background=(0.0, 0.0, 1.0))
        torch.testing.assert_close(batch.rgb[i : i + 1], one.rgb, atol=1e-6, rtol=0)


def test_results_do_not_depend_on_tiles_or_chunks():
    g = random_gaussians(60, seed=4)
    cams = ring_cameras(2, width=50, height=35)
    ref = rasterize(g, cams, options=RasterOptions(tile_size=16), backend="torch")
    for opts in [RasterOptions(tile_size=4), RasterOptions(tile_size=8, chunk_elements=64)]:
        out = rasterize(g, cams, options=opts, backend="torch")
        torch.testing.assert_close(out.rgb, ref.rgb, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.depth, ref.depth, atol=1e-10, rtol=0)


def test_gradients_do_not_depend_on_chunks():
    """Small frames keep the forward pass's blending terms for the backward pass; frames over the
    chunk budget recompute them chunk by chunk. Both give the same gradients."""
    g = random_gaussians(60, seed=5, sh_degree=1, opacity_range=(0.3, 0.95))
    cams = ring_cameras(2, width=50, height=35)
    w = torch.randn(2, 35, 50, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    grads = []
    for opts in [RasterOptions(tile_size=4), RasterOptions(tile_size=4, chunk_elements=64)]:
        params = _loss_params(g, cams)
        gg = Gaussians(*params[:5])
        o = rasterize(gg, Cameras(cams.K, params[5], cams.width, cams.height), background=0.3, options=opts,
                      backend="torch")
        (torch.cat([o.rgb, o.alpha, o.depth], -1) * w).sum().backward()
        grads.append([p.grad for p in params])
    for a, b in zip(*grads):
        assert float(a.abs().max()) > 0
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_single_gaussian_known_image():
    """An isotropic Gaussian straight ahead: centre pixel colour, depth and footprint are analytic."""
    cams = Cameras(
        intrinsics_from_fov(math.radians(60), 64, 64, dtype=F64),
        look_at(torch.tensor([0.0, 0.0, -5.0], dtype=F64), torch.zeros(3, dtype=F64), torch.tensor([0.0, 1.0, 0.0], dtype=F64)),
        64, 64,
    )
    rgb = torch.tensor([[0.9, 0.2, 0.1]], dtype=F64)
    g = Gaussians(torch.zeros(1, 3, dtype=F64), torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
                  torch.full((1, 3), 0.2, dtype=F64), torch.tensor([0.8], dtype=F64), rgb_to_sh0(rgb)[:, None])
    out = rasterize(g, cams, background=0.0, backend="torch")
    f = float(cams.K[0, 0, 0])
    sigma_px2 = (f * 0.2 / 5.0) ** 2 + 0.3
    # pixel (32, 32) has centre (32.5, 32.5); the Gaussian's centre projects to (32, 32)
    alpha_c = 0.8 * math.exp(-0.5 * (0.25 + 0.25) / sigma_px2)
    assert float(out.alpha[0, 32, 32, 0]) == pytest.approx(alpha_c, rel=1e-9)
    torch.testing.assert_close(out.rgb[0, 32, 32], rgb[0] * alpha_c)
    assert float(out.depth[0, 32, 32, 0]) == pytest.approx(5.0, rel=1e-9)
    assert float(out.alpha[0, 0, 0, 0]) == 0.0
    assert out.radii[0, 0].tolist() == [math.ceil(3.33 * math.sqrt(sigma_px2))] * 2


def test_sh_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    sh = torch.randn(50, 16, 3, dtype=F64)
    dirs = torch.randn(50, 3, dtype=F64)
    for d in range(4):
        ours = eval_sh(d, sh, dirs)
        theirs = torch.clamp_min(_spherical_harmonics(d, dirs, sh[:, : (d + 1) ** 2]) + 0.5, 0.0)
        torch.testing.assert_close(ours, theirs)


def test_empty_gaussians_render_background():
    cams = ring_cameras(2, width=8, height=6, dtype=torch.float32)
    out = rasterize(Gaussians.empty(), cams, background=(0.25, 0.5, 1.0))
    assert out.rgb.shape == (2, 6, 8, 3)
    assert torch.all(out.rgb == torch.tensor([0.25, 0.5, 1.0]))
    assert torch.all(out.alpha == 0)


def test_gaussians_behind_camera_are_culled():
    g = random_gaussians(10, seed=0)
    cams = ring_cameras(1, width=16, height=16)
    # put every Gaussian behind the camera
    center = cams.centers[0]
    fwd = cams.world_to_camera[0, 2, :3]
    behind = Gaussians(center - 2 * fwd + 0.01 * g.means, g.quats, g.scales, g.opacities, g.sh)
    out = rasterize(behind, cams, background=0.0)
    assert torch.all(out.alpha == 0) and not out.visible.any()


def test_nan_means_raise_clear_error():
    g = random_gaussians(5, seed=0)
    means = g.means.clone()
    means[3, 1] = float("nan")
    with pytest.raises(GaussianError, match=r"means.*non-finite.*\[3\]"):
        rasterize(Gaussians(means, g.quats, g.scales, g.opacities, g.sh), ring_cameras(1))


def test_bad_gaussian_inputs():
    g = random_gaussians(5, seed=0)
    with pytest.raises(GaussianError, match="opacities must lie in"):
        rasterize(Gaussians(g.means, g.quats, g.scales, g.opacities * 10 - 5, g.sh), ring_cameras(1))
    with pytest.raises(GaussianError, match=r"quats must have shape \(5, 4\), got \(5, 3\)"):
        Gaussians(g.means, g.quats[:, :3], g.scales, g.opacities, g.sh)
    with pytest.raises(GaussianError, match="1, 4, 9 or 16"):
        Gaussians(g.means, g.quats, g.scales, g.opacities, torch.zeros(5, 5, 3, dtype=F64))
    with pytest.raises(RenderError, match="sh_degree=2"):
        rasterize(random_gaussians(3, sh_degree=1), ring_cameras(1), sh_degree=2)
    with pytest.raises(RenderError, match="unknown backend"):
        rasterize(g, ring_cameras(1), backend="optix")


def test_non_rotation_camera_raises():
    cams = ring_cameras(1)
    bad = cams.world_to_camera.clone()
    bad[0, :3, :3] *= 1.5
    with pytest.raises(CameraError, match="not a rigid transform"):
        Cameras(cams.K, bad, cams.width, cams.height)
    refl = cams.world_to_camera.clone()
    refl[0, 0, :3] *= -1
    with pytest.raises(CameraError, match="det = -1"):
        Cameras(cams.K, refl, cams.width, cams.height)


def test_gsplat_backend_on_cpu_tensors_is_a_clear_error():
    g = random_gaussians(5, seed=0, dtype=torch.float32)
    with pytest.raises((RenderError, ValueError, ImportError), match="CUDA|gsplat"):
        rasterize(g, ring_cameras(1, dtype=torch.float32), backend="gsplat")


def test_view_space_gradient_available_for_densification():
    g = random_gaussians(20, seed=1, dtype=torch.float32)
    g = Gaussians(g.means.requires_grad_(True), g.quats, g.scales, g.opacities, g.sh)
    out = rasterize(g, ring_cameras(2, width=24, height=24, dtype=torch.float32))
    out.means2d.retain_grad()
    out.rgb.sum().backward()
    grad = out.means2d.grad
    assert grad.shape == (2, 20, 2)
    # visible Gaussians get view-space gradients, culled ones none
    assert (grad[~out.visible] == 0).all()
    assert (grad[out.visible].abs().sum(-1) > 0).float().mean() > 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not gsplat_available(), reason="needs a CUDA GPU with gsplat's kernels")
def test_gsplat_matches_torch_backend():
    g = random_gaussians(2000, seed=0, sh_degree=3, dtype=torch.float32, scale_range=(0.01, 0.1)).to("cuda")
    cams = ring_cameras(4, width=128, height=96, dtype=torch.float32).to("cuda")
    outs, grads = {}, {}
    for be in ("torch", "gsplat"):
        params = [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.sh)]
        o = rasterize(Gaussians(*params), cams, background=(0.1, 0.2, 0.3), backend=be)
        (o.rgb.sum() + o.alpha.sum() + 0.1 * o.depth.sum()).backward()
        outs[be] = o
        grads[be] = [p.grad for p in params]
    for field in ("rgb", "alpha", "depth"):
        err = (getattr(outs["torch"], field) - getattr(outs["gsplat"], field)).abs().mean()
        assert err < 2e-3, (field, float(err))
    for name, a, b in zip(["means", "quats", "scales", "opacities", "sh"], grads["torch"], grads["gsplat"]):
        rel = (a - b).norm() / b.norm()
        assert rel < 1e-2, (name, float(rel))


def test_a_frame_with_too_many_tile_pairs_takes_bigger_tiles_and_the_same_image(monkeypatch):
    """Issue 20 #6: the torch rasterizer's (tile, Gaussian) pairs are kept under a byte budget by
    doubling the tile; the image and the gradients do not change."""
    import renderers.torch_backend as tb

    g = random_gaussians(80, seed=6, sh_degree=1, opacity_range=(0.3, 0.95))
    cams = ring_cameras(2, width=64, height=48)
    proj = tb.project(g.means, g.quats, g.scales, g.opacities, g.sh, 1, cams.world_to_camera, cams.K, 64, 48,
                      eps2d=0.3, near_plane=0.01, far_plane=1e10, alpha_min=1 / 255, radius_clip=0.0)
    pairs4 = int(tb._tile_ranges(proj.means2d, proj.radii, 64, 48, 4)[-1].sum())
    assert tb.tile_size_within(proj.means2d, proj.radii, 64, 48, 4) == 4
    budget = pairs4 * tb.PAIR_BYTES // 3
    assert tb.tile_size_within(proj.means2d, proj.radii, 64, 48, 4, budget) > 4

    def run():
        params = _loss_params(g, cams)
        o = rasterize(Gaussians(*params[:5]), Cameras(cams.K, params[5], 64, 48), background=0.3,
                      options=RasterOptions(tile_size=4), backend="torch")
        (torch.cat([o.rgb, o.alpha, o.depth], -1) * torch.linspace(0, 1, 5, dtype=F64)).sum().backward()
        return o, [p.grad for p in params]

    ref, gref = run()
    monkeypatch.setattr(tb, "PAIR_BUDGET_BYTES", budget)
    out, gout = run()
    torch.testing.assert_close(out.rgb, ref.rgb, atol=1e-12, rtol=0)
    for a, b in zip(gout, gref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_a_million_gaussians_at_1080p_render_within_4_gb():
    """Issue 20: one 1080p frame of 1M Gaussians on the CPU (the default backend), in its own process
    so the peak resident memory is this render's."""
    import subprocess
    import sys

    code = r"""
import math, resource, sys, torch
from renderers import Gaussians, rasterize
from cameras import Cameras, intrinsics_from_fov, look_at
n = 1_000_000
g = torch.Generator().manual_seed(0)
G = Gaussians(torch.randn(n, 3, generator=g) * 0.6, torch.randn(n, 4, generator=g),
              torch.exp(torch.randn(n, 3, generator=g) * 0.3 - 4.0), torch.rand(n, generator=g) * 0.9 + 0.05,
              torch.randn(n, 1, 3, generator=g) * 0.5)
w2c = look_at(torch.tensor([[2.5, -2.5, 1.5]]), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
cam = Cameras(intrinsics_from_fov(math.radians(50), 1920, 1080)[None], w2c, 1920, 1080)
with torch.no_grad():
    out = rasterize(G, cam)
print(float(out.alpha.mean()), out.backend, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    root = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    alpha, backend, peak_mb = res.stdout.split()
    assert float(alpha) > 0.5  # the Gaussians cover the frame (about 11M tile pairs at 16-pixel tiles)
    assert float(peak_mb) < 4096, (backend, peak_mb)

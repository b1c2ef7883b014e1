"""Metrics with known answers: PSNR, SSIM, flicker."""

import math

import torch

from scene4d import losses


def test_psnr_known_value():
    gt = torch.zeros(2, 8, 8, 3)
    pred = torch.full_like(gt, 0.1)  # mse 0.01 -> 20 dB
    assert math.isclose(float(losses.psnr(pred, gt)), 20.0, rel_tol=1e-5)
    # one (H, W, 3) image: one error on one pixel lowers it as for that image, not for one row of it
    one = torch.zeros(8, 8, 3)
    off = one.clone()
    off[0, 0] = 1.0  # mse 3 / 192
    assert math.isclose(float(losses.psnr(off, one)), -10 * math.log10(3 / 192), rel_tol=1e-5)


def test_ssim_identity_and_drop():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 32, 32, 3, generator=g)
    assert math.isclose(float(losses.ssim(img, img)), 1.0, rel_tol=1e-5)
    noisy = (img + 0.2 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    assert float(losses.ssim(noisy, img)) < 0.9
    assert float(losses.dssim(img, img)) < 1e-5


def test_ssim_is_kornias():
    """Our one-pass SSIM is kornia's (window 11, sigma 1.5, reflect padding), values and gradients."""
    import kornia

    g = torch.Generator().manual_seed(1)
    gt = torch.rand(2, 40, 33, 3, generator=g)
    for pred in (torch.rand(2, 40, 33, 3, generator=g), (gt + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1)):
        a = pred.clone().requires_grad_(True)
        b = pred.clone().requires_grad_(True)
        ours = losses.ssim(a, gt)
        ref = kornia.metrics.ssim(b.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2), 11).mean()
        assert abs(float(ours.detach()) - float(ref.detach())) < 1e-6
        ours.backward()
        ref.backward()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-7, rtol=1e-4)


def test_flicker_counts_only_change_the_truth_does_not_have():
    t = torch.linspace(0, 1, 5)[:, None, None, None]
    truth = t.expand(5, 4, 4, 3).clone()  # a steady fade: 0.25 per frame
    assert math.isclose(float(losses.flicker(truth)), 25.0, rel_tol=1e-5)
    assert float(losses.flicker(truth, truth)) == 0.0
    jitter = truth.clone()
    jitter[2] += 0.1  # one frame off by 0.1: two frame steps change by 0.1 each extra
    assert math.isclose(float(losses.flicker(jitter, truth)), 100 * 0.1 * 2 / 4, rel_tol=1e-5)
    static = torch.full((6, 4, 4, 3), 0.5)
    assert float(losses.flicker(static)) == 0.0

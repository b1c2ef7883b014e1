"""The exact test of the SDS machinery: with AnalyticPrior the noise-averaged SDS gradient is known
in closed form (AnalyticPrior.expected_gradient), so the Monte-Carlo mean of many draws must agree
with it within a few standard errors, and must *disagree* with plausible wrong closed forms (the
test can fail). Plain use, classifier-free guidance, a fixed t and a uniform t range."""

import pytest
import torch

from diffusion_prior import PromptEmbeds
from diffusion_prior.analytic import AnalyticPrior

N = 20000  # draws (one group each)
Z_MAX = 4.0  # |z| bound per pixel: 48 pixels, P(any |z| > 4) ~ 0.3% under the null


def _setup():
    g = torch.Generator().manual_seed(123)
    x = torch.rand(1, 1, 3, 4, 4, generator=g, dtype=torch.float64)  # the render, [0, 1]
    mu = torch.rand(1, 1, 3, 4, 4, generator=g, dtype=torch.float64)  # the target
    prior = AnalyticPrior(lambda *a: None, s=0.05, uncond_mean=0.0, uncond_s=0.5)
    return prior, x, mu


def _draws(prior, x, mu, *, t_range, guidance, seed):
    """(N, 1, 3, 4, 4) model-space SDS gradients, one per group: the loss's gradient w.r.t. the
    renders is grad / N * d(2 img - 1)/d img = 2 grad / N."""
    imgs = x.expand(N, -1, -1, -1, -1).clone().requires_grad_(True)
    emb = PromptEmbeds("target", "", None, None)
    cams = torch.eye(4, dtype=torch.float64).expand(N, 1, 4, 4)  # the targets are given: cameras unused
    out = prior.sds(imgs, emb, cameras=cams, times=torch.zeros(N, 1, dtype=torch.float64),
                    targets=mu.expand(N, -1, -1, -1, -1), guidance_scale=guidance, t_range=t_range,
                    generator=torch.Generator().manual_seed(seed))
    out.loss.backward()
    return imgs.grad * N / 2, out.t


def _t_bounds(t_range, T=1000):
    """The integer range TimestepSchedule.sample draws uniformly from, for fractions t_range."""
    a = int(round(t_range[0] * (T - 1)))
    return a, max(a, int(round(t_range[1] * (T - 1))))


def _expected(prior, x, mu, t_range, guidance, form=None):
    form = form or (lambda t: prior.expected_gradient(x, mu, t, guidance_scale=guidance))
    a, b = _t_bounds(t_range)
    return torch.stack([form(t) for t in range(a, b + 1)]).mean(0)


def _max_z(samples, expected):
    mean = samples.mean(0)
    se = samples.std(0) / samples.shape[0] ** 0.5
    return float(((mean - expected[0]) / se).abs().max())


CASES = [  # (t_range, guidance)
    ((0.5, 0.5), 1.0),
    ((0.5, 0.5), 7.5),
    ((0.02, 0.98), 1.0),
    ((0.02, 0.98), 7.5),
]


@pytest.mark.parametrize("t_range,guidance", CASES)
def test_mean_sds_gradient_matches_closed_form(t_range, guidance):
    prior, x, mu = _setup()
    samples, t = _draws(prior, x, mu, t_range=t_range, guidance=guidance, seed=1)
    a, b = _t_bounds(t_range)
    assert int(t.min()) >= a and int(t.max()) <= b
    assert _max_z(samples, _expected(prior, x, mu, t_range, guidance)) < Z_MAX


@pytest.mark.parametrize("t_range,guidance", CASES)
def test_wrong_closed_forms_are_rejected(t_range, guidance):
    """The same statistic rejects closed forms with a plausible mistake: the factor alpha dropped,
    and (with guidance) threestudio's ``eps_c + s (eps_c - eps_u)`` convention (s -> s + 1)."""
    prior, x, mu = _setup()
    samples, _ = _draws(prior, x, mu, t_range=t_range, guidance=guidance, seed=1)
    def no_alpha(t):
        return prior.expected_gradient(x, mu, t, guidance_scale=guidance) / prior.alphas_cumprod[t].sqrt()

    assert _max_z(samples, _expected(prior, x, mu, t_range, guidance, no_alpha)) > 3 * Z_MAX
    if guidance != 1.0:
        ts = lambda t: prior.expected_gradient(x, mu, t, guidance_scale=guidance + 1)  # noqa: E731
        assert _max_z(samples, _expected(prior, x, mu, t_range, guidance, ts)) > 3 * Z_MAX
    if t_range[0] != t_range[1]:  # the range's midpoint is not its mean gradient
        mid = sum(_t_bounds(t_range)) // 2
        wrong = prior.expected_gradient(x, mu, mid, guidance_scale=guidance)
        assert _max_z(samples, wrong) > 3 * Z_MAX

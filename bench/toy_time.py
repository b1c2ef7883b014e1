"""Does a toy prior use the scene time? Three measurements behind README's "Where the toy prior stands".

    python bench/toy_time.py probe [PRIOR_DIR]          # clean-image error with right vs wrong frame times
    python bench/toy_time.py finetune MINUTES           # fine-tune the shipped weights on moving clips only
    python bench/toy_time.py study VARIANT MINUTES [HIGH_T_FROM]
                                                        # from scratch, small U-Net, the narrowest task

``probe``: video groups (one camera, four times) of eight moving prompts are noised at t = 0.5-0.95
with fixed noise; the prior's clean-image estimate is scored against the truth with the clip's own
times, with the times reversed and with every frame at the mean time. A prior blind to time scores
the same. The shipped one (CPU): reversed times cost 0.2-0.4 % at t = 0.5-0.95, and every frame at
the mean time is 0.3-2.2 % *better* than the right times.

``finetune``: the shipped weights on single-object moving clips (video groups) only, timesteps from
[0.4, 1), the epsilon loss weighted by min(1/SNR, 20) (i.e. toward the clean image), AdamW 1e-4,
8 clips per step; the reversed-times gap every 50 steps.

``study``: a fresh small U-Net (channels 16/32/64) on one fixed camera and two motions (sliding,
bouncing), frame times drawn at random, 16 clips of 4 frames per step (each frame its own group, so
the joint attention's cost does not hide the conditioning's); ``film`` builds it with
``resnet_time_scale_shift="scale_shift"``; ``coords`` appends the pixel's x and y as two input
channels (CoordConv: a U-Net otherwise knows where it is only through its zero padding) and
``coords_time`` also the 8 time features as constant channels; ``broad`` is the default model on
every motion and any camera; ``motions`` every motion at the one camera, ``cameras`` the two motions
at any camera (one per clip); ``broad_token`` is ``broad`` with a time token that attends over the
text states (so it can read the motion word; :class:`TimeToken`, its output added to the last text
state, zero at the start); ``cameras_outer`` and ``broad_outer`` append the 16 x 8 products of the
camera numbers and the time features to the class labels (the camera-times-time interaction given
rather than learned). The eval prompts are sliding and bouncing; bouncing (``|sin 2 pi t|``) is the
same mirrored, so the mirrored gap measures the sliding half. ``HIGH_T_FROM`` (e.g. 0.8) draws every
training timestep from ``[HIGH_T_FROM, 1) x T`` instead of all of it (``0.8@300``: only after
300 steps of the uniform draw, as when a prior trained without it is continued). The mirrored-times gap
(t -> 1 - t) every 100 steps. Run with ``OMP_NUM_THREADS=1`` beside other jobs.

Measured (CPU, one thread each, gap at t = 0.7 / 0.9 after 400-450 steps): default +0.5 / +0.3 %,
film +0.4 / +0.2 %, coords +0.45 / +0.14 %, coords_time +0.5 / +0.3 % -- and with every timestep
from [0.8, 1): default **+13.8 / +29.4 %** (MSE at t = 0.9: 0.107, against 0.23 with the uniform
draw), coords_time +2.8 / +12.5 %. The conditioning's form does not matter; where the loss is spent
does: the epsilon loss at t = 0.9 is ~1/40 of the clean-image error it stands for, so with uniform
timesteps the top of the schedule, the only place where the time decides the picture, gets almost
no gradient.

What delays it on the real task is its breadth, the camera and the motion count each (sessions 13-15,
all with every timestep from [0.8, 1), one thread each, two runs at a time unless a row says
otherwise; gap at t = 0.7 / 0.9):

| variant | step 400 | later (step) |
|---|---|---|
| default (one camera, two motions) | **+13.8 / +29.4 %** | |
| ``broad`` (every motion, any camera) | +0.35 / +0.12 % | +0.15 / +0.59 % (700) |
| ``cameras`` (two motions, any camera) | -0.02 / -0.02 % | +0.41 / +0.73 % (600) |
| ``broad_token`` | +0.46 / +0.25 % | +0.09 / +0.59 % (600) |
| ``cameras_outer`` | +0.75 / +0.35 % | +0.79 / +2.15 % (772) |
| ``broad_outer`` | +0.60 / +0.35 % | +0.38 / +0.61 % (700) |
| ``motions`` (every motion, one camera; session 14) | +0.46 / +0.25 % | +0.17 / +1.90 % (668) |
| ``motions``, run on (``motions 80 0.8``, two threads, one run; session 15) | +0.45 / +0.24 % | **+3.7 / +34 %** (900), +9.5 / +96 % (1000), +13.7 / +76 % (1100) |
| ``cameras``, run on (``cameras 46 0.8``, two threads, one run; session 15) | -0.04 / -0.05 % | +0.33 / +0.79 % (1000), +0.05 / +0.29 % (1100) |

Two motions at any camera stall like the whole task: the camera's variation alone is enough to hold
the time back; and so is the motion count alone (``motions``: all seven motions at the one camera),
but only for a while: run on, ``motions`` turns at step 900 as the narrow task did at 400 (the same
jump, about 2.3x later), so the motion count delays the time and does not stop it. The camera
delays it longer: ``cameras`` run on has not turned by step 1100 (2.75x the narrow task's steps).
A plausible why: the toy objects are near-symmetric (four stripes, a light fixed to the object), so a still image says
little about the azimuth and the prior learns to use the camera only weakly, while sliding,
circling and swaying move across the image in a direction set by it. A time token that reads the
text does not help; giving the camera-time products helps a little (``cameras_outer``) but not by
the order that one camera does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scene4d.generate import toyworld as tw  # noqa: E402

CAMERA_DIMS = 16
"""The camera's share of the class labels (MVDream's 16 numbers); the time features follow it."""


def _time_part(labels, n_time: int):
    """The time features of class labels (they follow the camera's numbers)."""
    return labels[:, CAMERA_DIMS:CAMERA_DIMS + n_time]


MOVING_PROMPTS = ["a red ball bouncing", "a yellow cone sliding", "a blue cube circling", "a white cylinder swaying",
                  "a green torus growing", "an orange ball sliding", "a purple cone bouncing", "a red cube circling"]


def _clips(prompts, times, size=32):
    g = torch.Generator().manual_seed(0)
    xs, cs, ts = [], [], []
    for pr, tt in zip(prompts, times):
        c = tw.sample_cameras(len(tt), g, size=size, azimuth=torch.tensor([30.0] * len(tt)), elevation=(15.0, 15.0),
                              times=torch.tensor(tt))
        xs.append(tw.render_gt(tw.parse_prompt(pr), c).permute(0, 3, 1, 2))
        cs.append(c.world_to_camera.float())
        ts.append(torch.tensor(tt, dtype=torch.float32))
    return torch.stack(xs) * 2 - 1, torch.stack(cs), torch.stack(ts)


def x0_errors(prior, x0, cams, times, prompts, T, variants, seeds=2, group=None):
    """Mean squared error of the clamped clean-image estimate at timestep T, per times variant."""
    B, G = x0.shape[:2]
    group = group or G
    st = prior.text_states(prior.tokenize(prompts)).repeat_interleave(G, 0)
    a = prior.alphas_cumprod.float()[T]
    out = {}
    with torch.no_grad():
        for name, tt in variants.items():
            e = 0.0
            for s in range(seeds):
                n = torch.randn(x0.shape, generator=torch.Generator().manual_seed(100 + s))
                xt = a.sqrt() * x0 + (1 - a).sqrt() * n
                eps = prior.unet_eps(xt.flatten(0, 1), torch.full((B * G,), T), st, prior.class_labels(cams, tt),
                                     group).view_as(xt)
                if prior.prediction_type != "epsilon":
                    from diffusion_prior.image import to_epsilon

                    eps = to_epsilon(eps, xt, a, prior.prediction_type)
                est = ((xt - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
                e += float((est - x0).pow(2).mean()) / seeds
            out[name] = e
    return out


def probe(prior_dir=None) -> None:
    from scene4d.generate.priors import load_toy

    p = load_toy(prior_dir)
    x0, cams, times = _clips(MOVING_PROMPTS, [[0.0, 0.25, 0.5, 0.75]] * len(MOVING_PROMPTS))
    for T in (500, 700, 850, 950):
        e = x0_errors(p, x0, cams, times, MOVING_PROMPTS, T, {"right": times, "reversed": times.flip(1),
                                                              "mean": times.mean(1, keepdim=True).expand_as(times)})
        print(f"t = {T}: clean-image MSE with the right times {e['right']:.5f}; reversed "
              f"{100 * (e['reversed'] / e['right'] - 1):+.2f} %, all at the mean time {100 * (e['mean'] / e['right'] - 1):+.2f} %",
              flush=True)


def _step(opt, params, loss) -> None:
    """One AdamW step, gradients clipped to norm 1 (as train-toy)."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def _moving_clip(gen):
    while True:
        sc = tw.sample_scene(gen, split="seen", objects=1)
        if sc.objects[0].motion != "still":
            break
    az = float(torch.rand(1, generator=gen)) * 360
    el = float(torch.rand(1, generator=gen)) * 30
    start = float(torch.rand(1, generator=gen)) * 0.25
    span = 0.5 + float(torch.rand(1, generator=gen)) * (0.5 - start)
    ts = [start + span * i / 3 for i in range(4)]
    c = tw.sample_cameras(4, gen, size=32, azimuth=torch.tensor([az] * 4), elevation=(el, el), times=torch.tensor(ts))
    return tw.render_gt(sc, c).permute(0, 3, 1, 2).clamp(0, 1), c.world_to_camera.float(), torch.tensor(ts), sc.prompt()


def finetune(minutes: str) -> None:
    from diffusion_prior.toy import trainable_parameters
    from scene4d.generate.priors import load_toy

    p = load_toy(None)
    for m in (p.unet, p.text_encoder):
        m.float().train().requires_grad_(True)
    params = trainable_parameters(p)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    x0e, ce, te = _clips(MOVING_PROMPTS, [[0.0, 0.25, 0.5, 0.75]] * len(MOVING_PROMPTS))

    def report(step):
        p.unet.eval()
        e = {T: x0_errors(p, x0e, ce, te, MOVING_PROMPTS, T, {"right": te, "reversed": te.flip(1)}) for T in (850, 950)}
        p.unet.train()
        print(f"step {step}: " + "; ".join(f"t = {T}: MSE {v['right']:.4f}, reversed {100 * (v['reversed'] / v['right'] - 1):+.2f} %"
                                           for T, v in e.items()), flush=True)

    report(0)
    t0, step, B = time.time(), 0, 8
    while time.time() - t0 < float(minutes) * 60:
        step += 1
        gs = [_moving_clip(gen) for _ in range(B)]
        x0 = torch.stack([g[0] for g in gs]) * 2 - 1
        t = torch.randint(400, 1000, (B,), generator=gen)
        a = p.alphas_cumprod.float()[t].view(B, 1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=gen)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        drop = (torch.rand(B, generator=gen) < 0.1).tolist()
        st = p.text_states(p.tokenize(["" if d else g[3] for g, d in zip(gs, drop)])).repeat_interleave(4, 0)
        eps = p.unet_eps(xt.flatten(0, 1), t.repeat_interleave(4), st,
                         p.class_labels(torch.stack([g[1] for g in gs]), torch.stack([g[2] for g in gs])), 4).view_as(xt)
        _step(opt, params, (((1 - a) / a).clamp(max=20.0) * (eps - noise) ** 2).mean())
        if step % 50 == 0:
            report(step)


class TimeToken(torch.nn.Module):
    """The scene time as a token that attends over the text states (so it can read the motion word);
    its output, zero at the start, is added to the last (padding) text state the U-Net cross-attends to."""

    def __init__(self, n_time: int, d: int):
        super().__init__()
        nn = torch.nn
        self.inp = nn.Sequential(nn.Linear(n_time, d), nn.SiLU(), nn.Linear(d, d))
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
        self.out = nn.Linear(d, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, states, tf):
        q = self.inp(tf.to(states.dtype))[:, None]
        q = q + self.attn(q, states, states, need_weights=False)[0]
        q = q + self.mlp(q)
        return torch.cat([states[:, :-1], states[:, -1:] + self.out(q)], 1)


def study(variant: str, minutes: str, high_t_from: str = "") -> None:
    import diffusion_prior.toy as toy
    from diffusers import UNet2DConditionModel
    from scene4d.generate.train_toy import toy_vocabulary

    variants = ("default", "film", "coords", "coords_time", "broad", "motions", "cameras", "broad_token",
                "cameras_outer", "broad_outer")
    if variant not in variants:
        raise SystemExit("study: variant is one of " + ", ".join(variants))
    all_motions = variant in ("broad", "motions", "broad_token", "broad_outer")
    any_camera = variant in ("broad", "cameras", "broad_token", "cameras_outer", "broad_outer")
    outer = variant.endswith("_outer")  # class labels + camera (x) time products
    init = UNet2DConditionModel.__init__
    extra = {"coords": 2, "coords_time": 2 + toy.TOY_CONFIG["time_features"]}.get(variant, 0)

    def film_init(self, *a, **k):
        if variant == "film":
            k["resnet_time_scale_shift"] = "scale_shift"
        k["in_channels"] = 3 + extra
        if outer:
            k["projection_class_embeddings_input_dim"] += CAMERA_DIMS * toy.TOY_CONFIG["time_features"]
        init(self, *a, **k)

    UNet2DConditionModel.__init__ = film_init
    try:
        p = toy.new_toy_prior(toy_vocabulary(), channels=(16, 32, 64), seed=0)
    finally:
        UNet2DConditionModel.__init__ = init
    if extra:  # input planes: x, y in [-1, 1] (+ the time features, constant over the image)
        plain = p.unet_eps
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
        xy = torch.stack([xx, yy])  # once: every call is at 32 x 32

        def unet_eps(x, t, states, labels, nv):
            n = x.shape[0]
            planes = [xy.expand(n, *xy.shape)]
            if extra > 2:
                planes.append(_time_part(labels, p.n_time)[:, :, None, None].expand(n, p.n_time, *xy.shape[1:]))
            return plain(torch.cat([x] + planes, 1), t, states, labels, nv)

        p.unet_eps = unet_eps
    if outer:
        plain_labels = p.class_labels

        def class_labels(cams, ts, **kw):
            lab = plain_labels(cams, ts, **kw)
            cam, tf = lab[:, :CAMERA_DIMS], _time_part(lab, p.n_time)
            return torch.cat([lab, (cam[:, :, None] * tf[:, None, :]).flatten(1)], 1)

        p.class_labels = class_labels
    token = None
    if variant == "broad_token":  # a time token that reads the text: its state is added to the last text state
        token = TimeToken(p.n_time, p.text_encoder.config.hidden_size)
        plain_eps = p.unet_eps

        def unet_eps(x, t, states, labels, nv):
            return plain_eps(x, t, token(states, _time_part(labels, p.n_time)), labels, nv)

        p.unet_eps = unet_eps
    for m in (p.unet, p.text_encoder):
        m.float().train().requires_grad_(True)
    params = toy.trainable_parameters(p) + (list(token.parameters()) if token is not None else [])
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(1)

    def clip(g, prompt=None):
        az, el = 30.0, 15.0
        if prompt is None:
            motions = tw.MOTIONS if all_motions else ("sliding", "bouncing")
            prompt = (f"a {tw.COLOURS[int(torch.randint(len(tw.COLOURS), (1,), generator=g))]} "
                      f"{tw.SHAPES[int(torch.randint(len(tw.SHAPES), (1,), generator=g))]} "
                      f"{motions[int(torch.randint(len(motions), (1,), generator=g))]}")
            if any_camera:  # any camera (one per clip)
                az, el = float(torch.rand(1, generator=g)) * 360, float(torch.rand(1, generator=g)) * 30
        sc = tw.parse_prompt(prompt)
        ts = torch.rand(4, generator=g)
        c = tw.sample_cameras(4, g, size=32, azimuth=torch.tensor([az] * 4), elevation=(el, el), times=ts)
        return tw.render_gt(sc, c).permute(0, 3, 1, 2).clamp(0, 1), c.world_to_camera.float(), ts, sc.prompt()

    eg = torch.Generator().manual_seed(0)
    ev = [clip(eg, pr) for pr in ["a red ball sliding", "a blue cube bouncing", "a yellow cone sliding",
                                  "a green torus bouncing", "a white cylinder sliding", "a purple ball bouncing",
                                  "an orange cube sliding", "a red cone bouncing"]]
    ex = torch.stack([e[0] for e in ev]) * 2 - 1
    ec, et, ep = torch.stack([e[1] for e in ev]), torch.stack([e[2] for e in ev]), [e[3] for e in ev]

    def report(step):
        p.unet.eval()
        e = {T: x0_errors(p, ex, ec, et, ep, T, {"right": et, "mirrored": 1 - et}, group=1) for T in (700, 900)}
        p.unet.train()
        print(f"{variant} step {step}: " + "; ".join(
            f"t = {T}: MSE {v['right']:.4f}, mirrored {100 * (v['mirrored'] / v['right'] - 1):+.2f} %" for T, v in e.items()),
            flush=True)

    # HIGH_T_FROM "0.8@300": the uniform draw for 300 steps, then the top only (a warm start's case)
    high_from, _, switch = high_t_from.partition("@")
    switch = int(switch or 0)
    report(0)
    t0, step, B = time.time(), 0, 16
    while time.time() - t0 < float(minutes) * 60:
        step += 1
        gs = [clip(gen) for _ in range(B)]
        x = torch.stack([g[0] for g in gs]).flatten(0, 1)[:, None]
        cams = torch.stack([g[1] for g in gs]).flatten(0, 1)[:, None]
        ts = torch.stack([g[2] for g in gs]).flatten(0, 1)[:, None]
        hi = dict(high_t_share=1.0, high_t_from=float(high_from)) if high_t_from and step > switch else {}
        _step(opt, params, toy.training_loss(p, x, cams, ts, [g[3] for g in gs for _ in range(4)], gen, **hi))
        if step % 100 == 0:
            report(step)
    report(step)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("probe", "finetune", "study"):
        raise SystemExit(__doc__)
    {"probe": probe, "finetune": finetune, "study": study}[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()

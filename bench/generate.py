"""Text-to-4D measured against known answers.

    python bench/generate.py --analytic [--threads 1]        # the exact prior: static and dynamic targets
    python bench/generate.py --toy [--seeds 3] [--threads 1]  # the embedded toy prior, seen vs held-out prompts

``--analytic``: ``generate --prior analytic:SCENE`` on the shipped static splat scene (64x64) and on
a 4D scene with exact motion (two spheres, motion nodes; :func:`scene4d.procedural.moving_spheres_scene`):
novel-view (and novel-time) PSNR against the target's own renders, the same with the deformation
turned off, and the wall time.

``--toy``: for prompts seen in training and prompts held out (single and two-object: ``seen``,
``held_out``, ``two_objects``, ``two_objects_held_out``; ``--splits`` picks some), several seeds:
generated scenes (PSNR / SSIM against the toy world's ground truth at 64 novel (view, time) pairs,
colour / shape / motion accuracy read by the model-free classifier, deformation-off PSNR, wall
time). Seen and held-out figures are printed apart, never pooled. With ``--samples``: the accuracy
of the prior's own samples (four cameras x four times, read by the same classifier). With
``--ceiling``: the same preset with the analytic prior on the prompt's ground truth
(``--prior analytic:toy``, guidance 1: a perfect prior; it is also what fitting the ground-truth
renders at generate's cameras gives). With ``--initial``: the scene before any step (no score
distillation). With ``--probe``: the pull of the prior's SDS gradient on a static clip toward the
prompt's own motion against the other motions (:mod:`scene4d.generate.probe`; seconds per prompt,
the quick check of a new toy prior). With ``--reconstruct``: ``reconstruct`` on a monocular capture of the prompt's
ground truth, judged the same way.

    python bench/generate.py --toy --samples --no-generate --seeds 2 --threads 1   # the prior alone
    python bench/generate.py --toy --probe --no-generate --threads 1      # does the prior know motion?
    python bench/generate.py --toy --ceiling --initial --reconstruct --seeds 1 --threads 1  # and bounds
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusion_prior.experts import SAMPLE_FROM  # noqa: E402
from scene4d.generate.config import load_generate_preset  # noqa: E402
from scene4d.generate.job import generate  # noqa: E402


def analytic(args) -> dict:
    from scene4d.io import save_scene
    from scene4d.procedural import moving_spheres_scene

    rows = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        target = d / "spheres"
        save_scene(target, moving_spheres_scene())
        runs = [("static: assets/demo_splat.ply", "assets/demo_splat.ply", {"static_share": 1.0}),
                ("dynamic: two spheres with exact motion", str(target), {})]
        if args.only:
            runs = [r for r in runs if r[0].startswith(args.only)]
        for name, path, over in runs:
            cfg = load_generate_preset("analytic")
            cfg.size = args.size
            cfg.preview_every = 0
            for k, v in over.items():
                setattr(cfg, k, v)
            if args.iters:
                cfg.iters = args.iters
            t0 = time.perf_counter()
            res = generate(name, d / f"run{len(rows)}", cfg, prior=f"analytic:{path}", progress=args.progress,
                           video=False)
            m = res.metrics
            rows[name] = {"psnr": m["psnr"], "ssim": m["ssim"], "psnr_deformation_off": m["psnr_deformation_off"],
                          "seconds": round(time.perf_counter() - t0, 1), "steps": res.steps,
                          "gaussians": m.get("n_gaussians"), "size": cfg.size}
            print(f"{name:42s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  deformation off {m['psnr_deformation_off']:6.2f}"
                  f" dB  {rows[name]['seconds']:6.1f} s  {res.steps} steps  {m.get('n_gaussians')} Gaussians  {cfg.size}^2")
    return rows


def _prompts(args) -> dict:
    from scene4d.generate import toyworld as tw

    prompts = {"seen": args.seen or ["a red ball bouncing", "a blue cube spinning", "a yellow cone sliding",
                                     "a green cylinder circling", "a purple torus swaying", "a white ball growing",
                                     "an orange cube still"],
               "held_out": args.held_out or []}
    if not prompts["held_out"]:
        g = torch.Generator().manual_seed(7)
        while len(prompts["held_out"]) < 4:
            s = tw.sample_scene(g, split="held_out", objects=1)
            if s.prompt() not in prompts["held_out"]:
                prompts["held_out"].append(s.prompt())
    # two objects: seen pairs, and pairs with a held-out combination (a held-out colour x shape, or the
    # held-out relation, anything on top of a cube), each put in its split by the toy world
    pairs = args.pairs or ["a red ball bouncing next to a blue cube",
                           "a green ball bouncing on top of a white cylinder",
                           "a yellow cylinder spinning next to a purple cube",
                           "a yellow cylinder spinning next to a purple ball",
                           "a red ball bouncing on top of a blue cube"]
    for p in pairs:
        split = "two_objects" if tw.split_of(tw.parse_prompt(p)) == "seen" else "two_objects_held_out"
        prompts.setdefault(split, []).append(p)
    for split, plist in prompts.items():
        for p in plist:
            s = tw.parse_prompt(p)  # a typo in --seen / --held-out fails before any run
            want = "held_out" if split.endswith("held_out") else "seen"
            if tw.split_of(s) != want:
                raise SystemExit(f"bench/generate.py: {p!r} is a {tw.split_of(s)} prompt, not {want}; move it")
    if args.splits:
        prompts = {k: v for k, v in prompts.items() if k in args.splits}
    if args.limit:
        prompts = {k: v[:args.limit] for k, v in prompts.items()}
    return prompts


def _summary(rows, keys) -> dict:
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        if vals:
            out[k] = round(statistics.mean(vals), 3)
    return out


def _attr_means(rows) -> dict:
    """Mean accuracy per attribute; two-object keys (colour_0, colour_1) are pooled per attribute."""
    pooled = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith("acc_") and isinstance(v, (int, float)):
                pooled.setdefault(k[4:].split("_")[0], []).append(float(v))
    return {a: round(statistics.mean(v), 3) for a, v in sorted(pooled.items())}


def toy_probe(args, prompts) -> dict:
    """The SDS pull toward each one-object moving prompt's motion (scene4d/generate/probe.py), for the
    toy prior and, beside it, the analytic prior (the ceiling) and the analytic prior blind to time."""
    from scene4d.generate import probe
    from scene4d.generate import toyworld as tw
    from scene4d.generate.priors import load_analytic, load_toy_pair

    toy_prior = load_toy_pair(args.prior, args.video_prior or "default")
    out = {}
    for split, plist in prompts.items():
        moving = [p for p in plist if len(tw.parse_prompt(p).objects) == 1 and tw.parse_prompt(p).objects[0].motion != "still"]
        if not moving:
            continue
        res = {"toy": [], "analytic": [], "analytic_time_blind": []}
        for p in moving:
            exact = load_analytic("toy", toy_scene=tw.parse_prompt(p))
            for name, prior in (("toy", toy_prior), ("analytic", exact), ("analytic_time_blind", probe.time_blind(exact))):
                t0 = time.perf_counter()
                r = probe.motion_pull(prior, p, guidance=5.0 if name == "toy" else 1.0)
                res[name].append(r)
                print(f"[probe {split}] {name:20s} {p!r}: pull {r.pull:+.3f}, margin {r.margin:+.3f}, points to "
                      f"{r.points_to} ({time.perf_counter() - t0:.1f} s)", flush=True)
        out[split] = {k: {"summary": probe.summarize(v), "runs": [vars(r) for r in v]} for k, v in res.items()}
        print(f"== probe {split}: " + "; ".join(f"{k} " + ", ".join(f"{a} {b}" for a, b in v["summary"].items())
                                                for k, v in out[split].items()), flush=True)
    return out


def toy_samples(args, prompts) -> dict:
    """Accuracy of the prior's own samples (four cameras x four times, one video group per camera)."""
    from scene4d.generate.priors import load_toy_pair
    from scene4d.generate.samples import judge_prompt

    prior = load_toy_pair(args.prior, args.video_prior or "default")
    out = {}
    for split, plist in prompts.items():
        rows = []
        for p in plist:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                t0 = time.perf_counter()
                j = judge_prompt(prior, p, seed, steps=args.sample_steps, expert_from=args.expert_from)
                rows.append({"prompt": p, "seed": seed, "read_as": j.read_as,
                             **{f"acc_{k}": v for k, v in j.accuracy.items()},
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(f"[samples {split}] {p!r} seed {seed}: read as {j.read_as!r}  "
                      + ", ".join(f"{k} {v:.0f}" for k, v in j.accuracy.items()), flush=True)
        out[split] = {"runs": rows, "accuracy": _attr_means(rows)}
        print(f"== samples {split}: " + ", ".join(f"{k} {v:.2f}" for k, v in out[split]["accuracy"].items()),
              flush=True)
    return out


def _video_spec(video_prior):
    """``--video-prior`` of the bench (a folder list, or none) as generate's spec (None: its default)."""
    if not video_prior:
        return None
    return "none" if video_prior == "none" else f"toy:{video_prior}"


def _setting(text: str):
    import json

    from scene4d.generate.config import GenerateConfig

    key, sep, value = text.partition("=")
    if not sep or key not in GenerateConfig.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE with KEY a field of GenerateConfig")
    try:
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON (e.g. 100, 0.5, [30, 15])") from None


def _generate_row(p, seed, args, prior, over=None, video_prior=None) -> dict:
    cfg = load_generate_preset("toy")
    cfg.seed, cfg.preview_every = seed, 0
    if args.threads:  # the same count for every run (generate's default follows the load, its own runs' too)
        cfg.threads = args.threads
    if args.iters:
        cfg.iters = args.iters
    for k, v in (over or {}).items():
        setattr(cfg, k, v)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "g"
        if args.keep:  # a scene folder to open, render or judge again later
            out = args.keep / f"{'_'.join(p.split())}_seed{seed}"
            if out.exists():
                shutil.rmtree(out)
        t0 = time.perf_counter()
        res = generate(p, out, cfg, prior=prior, video_prior=video_prior, progress=args.progress, video=False)
        return dict(res.metrics, seconds=round(time.perf_counter() - t0, 1), prompt=p, seed=seed)


def _initial_row(p, seed) -> dict:
    """No score distillation at all: the initial scene (a ball of random Gaussians per entity)."""
    from scene4d.generate import toyworld as tw
    from scene4d.generate.job import initial_scene, split_entities, toy_metrics

    cfg = load_generate_preset("toy")
    cfg.seed = seed
    torch.manual_seed(seed)
    scene = initial_scene(cfg, split_entities(p, cfg.entities), (0.0, 0.0, 0.0), 1.0)
    return dict(toy_metrics(scene, tw.parse_prompt(p), cfg), prompt=p, seed=seed)


def _reconstruct_row(p, seed) -> dict:
    """``reconstruct`` (preset fast) on a monocular capture of the prompt's ground truth (100 train
    views at evenly spaced times, 128^2), judged at generate's novel cameras and times like a
    generated scene: what photometric fitting of the truth itself gives."""
    from scene4d.cli import load_scene, main as cli
    from scene4d.data.synthetic import _write_capture
    from scene4d.generate import toyworld as tw
    from scene4d.generate.job import toy_metrics

    scene = tw.parse_prompt(p)
    cfg = load_generate_preset("toy")
    with tempfile.TemporaryDirectory() as d:
        cap = _write_capture(Path(d) / "capture", scene.at, n_train=100, n_test=8, n_val=0, size=128, seed=seed,
                             background="white", alpha=False)
        t0 = time.perf_counter()
        rc = cli(["reconstruct", str(cap), "--out", str(Path(d) / "fit"), "--preset", "fast", "--threads", "1"])
        if rc != 0:
            raise RuntimeError(f"reconstruct on the ground truth of {p!r} failed ({rc})")
        fitted, _, _ = load_scene(Path(d) / "fit")
        return dict(toy_metrics(fitted, scene, cfg), prompt=p, seed=seed, seconds=round(time.perf_counter() - t0, 1))


def toy(args, prompts) -> dict:
    """Generated scenes per split; beside them the bounds: the analytic prior on the toy world's own
    ground truth (the ceiling, same preset and cameras, guidance 1) and no score distillation."""
    runs = [] if args.no_generate else [
        ("toy prior", lambda p, s: _generate_row(p, s, args, f"toy:{args.prior}" if args.prior else "toy",
                                                 dict(args.set or []), video_prior=_video_spec(args.video_prior)))]
    if args.ceiling:
        runs.append(("analytic ceiling", lambda p, s: _generate_row(p, s, args, "analytic:toy",
                                                                  {"guidance": 1.0, "video_guidance": 1.0})))
    if args.initial:
        runs.append(("no score distillation", _initial_row))
    if args.reconstruct:
        runs.append(("reconstruct on ground truth", _reconstruct_row))
    out = {}
    for split, plist in prompts.items():
        out[split] = {}
        for name, fn in runs:
            rows = []
            for p in plist:
                for seed in range(args.first_seed, args.first_seed + (args.seeds if name == "toy prior" else 1)):
                    m = fn(p, seed)
                    rows.append(m)
                    print(f"[{name} {split}] {p!r} seed {seed}: PSNR {m['psnr']:.2f} dB (deformation off "
                          f"{m['psnr_deformation_off']:.2f}), " + ", ".join(
                              f"{k[4:]} {v:.2f}" for k, v in m.items() if k.startswith("acc_"))
                          + (f", {m['seconds']:.0f} s" if "seconds" in m else ""), flush=True)
            summ = {"runs": rows, **_summary(rows, ["psnr", "ssim", "psnr_deformation_off", "seconds"]),
                    "accuracy": _attr_means(rows)}
            out[split][name] = summ
            print(f"== {name}, {split}: PSNR {summ['psnr']:.2f} dB, SSIM {summ['ssim']:.3f}, deformation off "
                  f"{summ['psnr_deformation_off']:.2f} dB; " + ", ".join(f"{k} {v:.2f}" for k, v in summ["accuracy"].items()),
                  flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--analytic", action="store_true")
    ap.add_argument("--toy", action="store_true")
    ap.add_argument("--only", default=None, help="--analytic: only the run whose name starts so (static, dynamic)")
    ap.add_argument("--prior", default=None, help="toy prior folder (default: the shipped one)")
    ap.add_argument("--video-prior", default=None,
                    help="time expert folders (train-toy --video-camera), comma-separated, paired with the toy "
                         "prior; none: the toy prior alone (default: the shipped expert with the shipped prior)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds first-seed .. first-seed + seeds - 1 (add seeds to a run)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seen", nargs="*")
    ap.add_argument("--held-out", nargs="*")
    ap.add_argument("--pairs", nargs="*", help="two-object prompts (each goes to its split, seen or held out)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--samples", action="store_true", help="--toy: also judge the prior's own samples")
    ap.add_argument("--probe", action="store_true",
                    help="--toy: the SDS pull toward each moving prompt's motion (seconds per prompt)")
    ap.add_argument("--sample-steps", type=int, default=25, help="ancestral sampling steps per sample")
    ap.add_argument("--expert-from", type=float, default=SAMPLE_FROM,
                    help="--samples with time experts: where an expert's groups pass to the prior (a fraction "
                         "of the schedule; 0.8: where the experts were trained)")
    ap.add_argument("--no-generate", action="store_true", help="--toy: skip the toy prior's scenes (the bounds still run)")
    ap.add_argument("--ceiling", action="store_true", help="--toy: also the analytic prior on the ground truth")
    ap.add_argument("--initial", action="store_true", help="--toy: also the scene before any step")
    ap.add_argument("--reconstruct", action="store_true",
                    help="--toy: also reconstruct (preset fast) on a capture of the ground truth")
    ap.add_argument("--limit", type=int, default=None, help="--toy: the first N prompts of each split")
    ap.add_argument("--splits", nargs="*", choices=("seen", "held_out", "two_objects", "two_objects_held_out"),
                    help="--toy: only these prompt splits (default: all four)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--set", type=_setting, action="append", metavar="KEY=VALUE",
                    help="--toy: a generate preset value for the toy prior's scenes (JSON value), e.g. motion_strength=2")
    ap.add_argument("--keep", type=Path, default=None,
                    help="--toy: keep each generated scene folder under this folder (PROMPT_seedN)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = {}
    if args.analytic:
        res["analytic"] = analytic(args)
    if args.toy:
        prompts = _prompts(args)
        if args.probe:
            res["probe"] = toy_probe(args, prompts)
        if args.samples:
            res["samples"] = toy_samples(args, prompts)
        if not args.no_generate or args.ceiling or args.initial or args.reconstruct:
            res["toy"] = toy(args, prompts)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

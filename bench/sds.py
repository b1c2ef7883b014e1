"""Time and peak memory of one score-distillation step, per diffusion prior.

    OMP_NUM_THREADS=1 python bench/sds.py                 # tiny random priors on the CPU
    python bench/sds.py --device cuda --real --out g.json # real sizes, random weights, fp16

One step = ``prior.sds(renders, emb, guidance_scale=7.5)`` (VAE encode with gradients, one UNet
call over conditional + unconditional halves, the SDS loss) + ``loss.backward()`` to the renders.
Times are medians of ``--repeat`` steps after one warm-up. Peak memory: on the CPU the process's
peak RSS during the timed steps (VmHWM, reset through /proc/self/clear_refs before them) and its
growth over the RSS before them; on a GPU ``torch.cuda.max_memory_allocated`` (reset before).

Tiny: each prior kind is built by ``diffusion_prior.tiny.tiny_folder`` into a temporary folder and
loaded by path with ``load_prior``, exactly as a user's folder would be. Real (``--real``): the real
configs written in ``diffusion_prior.tiny.real_configs`` (SD 2.1-base at 512², MVDream 4 x 256²,
zeroscope 16 frames of 40 x 72 latents, AnimateDiff 16 frames at 256², SVD 14 frames of 72 x 128
latents), random weights built directly on the device in ``--dtype`` (nothing downloaded), and
random text/image states in place of the text/image encoders (they run once per prompt, not per
step). Meant for one GPU; the whole real run takes about 1-3 min on an H200.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from diffusion_prior import PromptEmbeds  # noqa: E402

KINDS = ("sd", "mvdream", "zeroscope", "animatediff", "svd")
TINY_GROUPS = {"sd": 1, "mvdream": 4, "zeroscope": 8, "animatediff": 8, "svd": 4}
REAL_CASES = {  # kind -> (G, render (H, W))
    "sd": (1, (512, 512)),
    "mvdream": (4, (256, 256)),
    "zeroscope": (16, (320, 576)),
    "animatediff": (16, (256, 256)),
    "svd": (14, (576, 1024)),
}


# ------------------------------------------------------------------------------------ memory
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------- steps
def _camera_ring(G: int) -> torch.Tensor:
    """(1, G, 4, 4) world-to-camera (OpenCV) cameras on a ring at elevation 15°, looking at the origin."""
    import math

    cams = []
    for i in range(G):
        a, e, r = 2 * math.pi * i / G, math.radians(15), 3.0
        eye = torch.tensor([r * math.cos(e) * math.cos(a), r * math.cos(e) * math.sin(a), r * math.sin(e)])
        f = -eye / eye.norm()
        right = torch.linalg.cross(f, torch.tensor([0.0, 0.0, 1.0]))
        right = right / right.norm()
        down = torch.linalg.cross(f, right)
        R = torch.stack([right, down, f])
        w2c = torch.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ eye
        cams.append(w2c)
    return torch.stack(cams)[None]


def time_step(prior, emb, G: int, hw, device: torch.device, repeat: int) -> dict:
    """Median seconds and peak memory of one SDS step + backward on (1, G, 3, H, W) renders."""
    cams = _camera_ring(G).to(device) if getattr(prior, "needs_cameras", False) else None
    times = torch.linspace(0, 1, G)[None].to(device) if getattr(prior, "needs_times", False) else None
    gen = torch.Generator().manual_seed(0)

    def step():
        img = torch.rand(1, G, 3, *hw, generator=gen).to(device).requires_grad_(True)
        out = prior.sds(img, emb, cameras=cams, times=times, guidance_scale=7.5, generator=gen)
        out.loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        assert torch.isfinite(img.grad).all(), "non-finite gradient"
        return out

    step()  # warm-up (allocator, kernels, lazy inits)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_kb = _rss_kb("VmRSS")
    hwm_ok = _reset_peak()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    res = {"seconds": statistics.median(ts)}
    if device.type == "cuda":
        res["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = _rss_kb("VmHWM")
        res["peak_rss_mb"] = peak / 1024
        res["step_rss_mb"] = (peak - base_kb) / 1024 if hwm_ok else None
    return res


# -------------------------------------------------------------------------------------- tiny
def tiny_case(kind: str, device: torch.device, repeat: int, work: Path) -> dict:
    from diffusion_prior.loading import load_prior
    from diffusion_prior.tiny import tiny_folder

    folder = tiny_folder(kind, work / kind, seed=0)
    t0 = time.perf_counter()
    prior = load_prior(kind, folder, device=device, dtype=torch.float32)
    load_s = time.perf_counter() - t0
    if kind == "svd":
        emb = prior.encode_image(torch.rand(3, 32, 32), generator=torch.Generator().manual_seed(0))
    else:
        emb = prior.encode_prompt("a red ball bouncing", "blurry")
    G = TINY_GROUPS[kind]
    size = prior.native_size
    params = sum(p.numel() for p in prior.unet.parameters())
    res = time_step(prior, emb, G, (size, size), device, repeat)
    return dict(prior=kind, kind=prior.kind, G=G, render=f"{size}x{size}", unet_params_m=params / 1e6,
                load_s=load_s, **res)


# -------------------------------------------------------------------------------------- real
def _build(cfg: dict, device, dtype):
    import diffusers

    cfg = dict(cfg)
    cls = getattr(diffusers, cfg.pop("_class_name"))
    with torch.device(device):
        m = cls(**cfg)
    return m.to(dtype)


def real_prior(kind: str, device: torch.device, dtype: torch.dtype, hw):
    """A prior of ``kind`` with random weights at real size, and PromptEmbeds of the right shapes."""
    from diffusion_prior.image import StableDiffusionPrior
    from diffusion_prior.schedule import alphas_cumprod
    from diffusion_prior.tiny import real_configs
    from diffusion_prior.video import ImageToVideoPrior, TextToVideoPrior

    cfgs = real_configs(kind)
    ac = alphas_cumprod("scaled_linear")
    vae = _build(cfgs["vae"], device, dtype)
    g = torch.Generator().manual_seed(0)
    if kind == "animatediff":
        from diffusers import UNetMotionModel

        unet2d = _build(cfgs["unet"], device, dtype)
        adapter = _build(cfgs["motion_adapter"], device, dtype)
        with torch.device(device):  # from_unet2d builds a new model: build it on the device too
            unet = UNetMotionModel.from_unet2d(unet2d, adapter).to(device, dtype)
        del unet2d, adapter
    else:
        unet = _build(cfgs["unet"], device, dtype)
    D = int(unet.config.cross_attention_dim)  # the text (or image) state width the UNet attends to
    if kind == "svd":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, projection_dim=D, num_hidden_layers=1,
                                                             num_attention_heads=4, image_size=32, patch_size=8,
                                                             intermediate_size=37))  # runs once per image: not timed
        prior = ImageToVideoPrior(unet, vae=vae, image_encoder=enc, image_size=32, alphas_cumprod=ac, device=device,
                                  dtype=dtype, render_hw=hw)
        emb = prior.encode_image(torch.rand(3, *hw, generator=g), generator=g)
        return prior, emb, unet
    emb = PromptEmbeds("p", "", torch.randn(1, 77, D, generator=g).to(device, dtype),
                       torch.randn(1, 77, D, generator=g).to(device, dtype))
    if kind == "sd":
        prior = StableDiffusionPrior(unet, vae=vae, alphas_cumprod=ac, device=device, dtype=dtype, render_hw=hw)
        return prior, emb, unet
    if kind == "mvdream":
        from diffusion_prior.multiview import MultiViewPrior

        prior = MultiViewPrior(None, None, unet, ac, {"camera": "mvdream", "num_views": 4, "native_size": hw[0]}, vae)
        return prior.to(device).eval(), emb, unet
    return TextToVideoPrior(unet, vae=vae, alphas_cumprod=ac, device=device, dtype=dtype, render_hw=hw), emb, unet


def real_case(kind: str, device: torch.device, dtype: torch.dtype, repeat: int) -> dict:
    G, hw = REAL_CASES[kind]
    t0 = time.perf_counter()
    prior, emb, unet = real_prior(kind, device, dtype, hw)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in unet.parameters())
    res = time_step(prior, emb, G, hw, device, repeat)
    out = dict(prior=kind, kind=prior.kind, G=G, render=f"{hw[0]}x{hw[1]}", unet_params_m=params / 1e6,
               load_s=build_s, dtype=str(dtype).replace("torch.", ""), **res)
    del prior, emb, unet
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


# -------------------------------------------------------------------------------------- main
def table(rows) -> str:
    head = f"{'prior':<12} {'kind':<15} {'G':>3} {'render':>9} {'UNet M':>8} {'load s':>7} {'step s':>8} {'peak':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['prior']:<12} error: {r['error']}")
            continue
        if "peak_gb" in r:
            peak = f"{r['peak_gb']:.1f} GB"
        else:
            grew = r.get("step_rss_mb")
            peak = f"{r['peak_rss_mb']:.0f} MB" + (f" (+{grew:.0f})" if grew is not None else "")
        lines.append(f"{r['prior']:<12} {r['kind']:<15} {r['G']:>3} {r['render']:>9} {r['unet_params_m']:>8.2f} "
                     f"{r['load_s']:>7.2f} {r['seconds']:>8.3f} {peak:>16}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--real", action="store_true", help="real-size configs with random weights (GPU)")
    ap.add_argument("--dtype", default=None, help="fp16 (default on CUDA), bf16 or fp32 (default on CPU)")
    ap.add_argument("--only", default=",".join(KINDS), help="comma-separated kinds (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="timed steps per prior (median reported)")
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    from diffusion_prior.loading import resolve_dtype

    dtype = resolve_dtype(a.dtype, device)
    if a.real and device.type == "cpu":
        print("bench/sds.py: --real on the CPU would take hours (SD alone ~45 s per step on one thread); use "
              "--device cuda", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in [k.strip() for k in a.only.split(",") if k.strip()]:
            try:
                if a.real:
                    row = real_case(kind, device, dtype, a.repeat)
                else:
                    row = tiny_case(kind, device, a.repeat, Path(tmp))
            except Exception as e:  # one broken prior must not hide the others' numbers
                traceback.print_exc()
                row = dict(prior=kind, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    meta = dict(device=str(device), gpu=torch.cuda.get_device_name() if device.type == "cuda" else None,
                threads=torch.get_num_threads(), torch=torch.__version__, real=a.real, dtype=str(dtype))
    try:
        import diffusers
        meta["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    print()
    print(f"one SDS step (+ backward to the renders), median of {a.repeat}; {meta}")
    print(table(rows))
    if a.out:
        Path(a.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

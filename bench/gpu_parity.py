"""gsplat's CUDA rasterizer against scene4d's torch rasterizer, on a GPU: outputs and gradients.

    python bench/gpu_parity.py            # needs CUDA and gsplat

For each configuration: mean / max absolute difference of rgb, alpha and depth; relative L2
difference of the gradients of every Gaussian parameter (the same loss through each backend);
agreement of projected centres, radii and the visible set (what densification reads).
The torch backend is itself checked against a brute-force per-pixel reference in the CPU tests,
so this closes the chain reference -> torch -> gsplat.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from renderers import Gaussians, gsplat_available, rasterize  # noqa: E402
from scenes import random_gaussians, ring_cameras  # noqa: E402


def compare(n: int, size: int, n_cams: int, sh_degree: int, seed: int) -> dict:
    g = random_gaussians(n, seed=seed, sh_degree=sh_degree, dtype=torch.float32, scale_range=(0.01, 0.1)).to("cuda")
    cams = ring_cameras(n_cams, width=size, height=size, dtype=torch.float32).to("cuda")
    outs, grads = {}, {}
    for be in ("torch", "gsplat"):
        params = [t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.sh)]
        o = rasterize(Gaussians(*params), cams, background=(0.1, 0.2, 0.3), backend=be)
        o.means2d.retain_grad()
        w = torch.rand(o.rgb.shape, generator=torch.Generator().manual_seed(seed + 1)).to("cuda")
        ((o.rgb * w).sum() + o.alpha.sum() + 0.1 * o.depth.sum()).backward()
        outs[be] = o
        grads[be] = dict(zip(["means", "quats", "scales", "opacities", "sh", "means2d"],
                             [p.grad for p in params] + [o.means2d.grad]))
    a, b = outs["torch"], outs["gsplat"]
    row = {}
    for f in ("rgb", "alpha", "depth"):
        d = (getattr(a, f) - getattr(b, f)).abs()
        row[f] = (float(d.detach().mean()), float(d.detach().max()))
    for k in grads["torch"]:
        ga, gb = grads["torch"][k], grads["gsplat"][k]
        row["grad_" + k] = float((ga - gb).norm() / gb.norm().clamp_min(1e-12)) if ga is not None and gb is not None else None
    both = a.visible & b.visible
    row["visible_agree"] = float((a.visible == b.visible).float().mean())
    row["means2d_maxdiff_px"] = float((a.means2d - b.means2d)[both].abs().max()) if both.any() else 0.0
    row["radii_maxdiff_px"] = int((a.radii.long() - b.radii.long())[both].abs().max()) if both.any() else 0
    return row


def main():
    if not gsplat_available():
        raise SystemExit("needs a CUDA GPU and gsplat")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    for n, size, cams, deg in ((2000, 128, 4, 3), (20000, 400, 2, 3), (20000, 400, 2, 0)):
        r = compare(n, size, cams, deg, seed=n + size)
        print(f"N={n} {size}x{size} cams={cams} sh={deg}")
        for f in ("rgb", "alpha", "depth"):
            print(f"  {f:6s} mean|d|={r[f][0]:.2e} max|d|={r[f][1]:.2e}")
        print("  grad rel L2: " + "  ".join(f"{k[5:]}={v:.2e}" for k, v in r.items() if k.startswith("grad_") and v is not None))
        print(f"  visible agree {r['visible_agree']:.4f}  means2d max diff {r['means2d_maxdiff_px']:.2e} px  "
              f"radii max diff {r['radii_maxdiff_px']} px", flush=True)


if __name__ == "__main__":
    main()

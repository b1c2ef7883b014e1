"""Export and import speed and file sizes, per format, on a synthetic surface scene.

    python bench/export.py                  # 200k Gaussians, SH 3, one thread
    python bench/export.py --n 50000 --sh 0 --no-mesh

Scene: N flat splats on a floor and three spheres (Z-up, as the demo), smooth colours, random SH
bands (|coef| <= 0.3), temporal opacity with velocities (a dynamic scene folder). Each export is
the whole `scene4d export` job through its Python entry (load the folder, hash it, scene.at(t),
frame change incl. SH band rotation, encode, atomic write, decode again for the error record);
each import is `scene4d import` (decode, frame change, write a scene folder). One thread.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def surface_scene(n: int, sh_degree: int, seed: int = 0):
    import torch

    from scene4d.field import Scene4D

    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    n_floor = n // 2
    floor = torch.stack([(u(n_floor) - 0.5) * 2.4, (u(n_floor) - 0.5) * 2.4, torch.zeros(n_floor)], -1)
    nf = torch.tensor([0.0, 0.0, 1.0]).repeat(n_floor, 1)
    centres = torch.tensor([[-0.5, 0.0, 0.3], [0.4, 0.3, 0.25], [0.2, -0.5, 0.2]])
    radii = torch.tensor([0.3, 0.25, 0.2])
    k = torch.randint(0, 3, (n - n_floor,), generator=g)
    d = torch.randn(n - n_floor, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    pts = torch.cat([floor, centres[k] + radii[k, None] * d])
    normals = torch.cat([nf, d])
    # quaternion turning +z onto the normal
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    axis = torch.cross(z, normals, dim=1)
    w = 1 + (normals * z).sum(1, keepdim=True)
    quats = torch.cat([w, axis], 1)
    quats[w[:, 0] < 1e-6] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    quats = quats / quats.norm(dim=1, keepdim=True)
    size = 2.4 / math.sqrt(n) * 1.5
    kk = (sh_degree + 1) ** 2
    rgb = 0.5 + 0.4 * torch.sin(pts * 4)
    params = {
        "means": pts,
        "quats": quats,
        "log_scales": torch.log(torch.tensor([size, size, size * 0.1])).repeat(n, 1),
        "opacity_logits": torch.full((n,), 3.0),
        "sh_dc": ((rgb - 0.5) / 0.28209479177387814)[:, None],
        "sh_rest": (u(n, kk - 1, 3) - 0.5) * 0.6,
        "t_center": torch.full((n,), 0.5),
        "t_log_scale": torch.full((n,), math.log(2.0)),
        "t_velocity": torch.zeros(n, 3),
    }
    params["t_velocity"][n_floor:] = torch.tensor([0.1, 0.0, 0.0])
    return Scene4D(params, None, sh_degree=sh_degree)


def nodes_scene(n: int, sh_degree: int, nodes: int = 48, knots: int = 16, seed: int = 1):
    """The same surfaces without temporal opacity, moved by ``nodes`` motion nodes that each blend
    with their 4 strongest neighbours (``neighbours=4``), each node turning and sliding smoothly."""
    import torch

    from scene4d.deformation import MotionNodesConfig
    from scene4d.field import Scene4D

    p = dict(surface_scene(n, sh_degree, seed=0).params)
    for k in ("t_center", "t_log_scale", "t_velocity"):
        p.pop(k)
    scene = Scene4D({k: v.detach() for k, v in p.items()},
                    MotionNodesConfig(nodes=nodes, time_resolution=knots, neighbours=4), sh_degree=sh_degree)
    f = scene.deformation
    f.place_nodes(p["means"].detach())
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, knots)[None, :, None]
    with torch.no_grad():
        f.translations.copy_(0.2 * torch.sin(2 * math.pi * t + 6 * torch.rand(nodes, 1, 3, generator=g)) * t)
        f.rotvecs.copy_(0.6 * torch.sin(math.pi * t + 6 * torch.rand(nodes, 1, 3, generator=g)) * t)
    return scene


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--sh", type=int, default=3)
    ap.add_argument("--frames", type=int, default=10, help="frames of the ply-sequence row")
    ap.add_argument("--no-mesh", action="store_true", help="skip the mesh rows (minutes)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from scene4d.export.importer import import_file
    from scene4d.export.job import ExportOptions, export
    from scene4d.io import save_scene

    rows = [("ply", "ply", {}), ("splat", "splat", {}), ("spz v2", "spz", {"spz_version": 2}),
            ("spz v3", "spz", {"spz_version": 3}), ("spz v4", "spz", {"spz_version": 4}), ("glb", "glb", {}),
            ("glb (unity)", "glb", {"target": "unity"})]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        save_scene(tmp / "scene", surface_scene(args.n, args.sh))
        print(f"scene: {args.n} Gaussians, SH {args.sh}, made and saved in {time.perf_counter() - t0:.1f} s "
              f"(torch threads: {torch.get_num_threads()})")
        print(f"{'format':<14}{'MB':>8}{'export s':>10}{'import s':>10}  max errors (file frame)")
        for label, fmt, kw in rows:
            suffix = {"spz": ".spz", "glb": ".glb", "ply": ".ply", "splat": ".splat"}[fmt]
            out = tmp / (label.replace(" ", "_").replace("(", "").replace(")", "") + suffix)
            t0 = time.perf_counter()
            rec = export(tmp / "scene", out, ExportOptions(format=fmt, time=0.5, **kw))
            te = time.perf_counter() - t0
            t0 = time.perf_counter()
            import_file(out, tmp / f"imp_{out.stem}")
            ti = time.perf_counter() - t0
            err = rec["fit_errors"]
            note = "exact" if not isinstance(err, dict) else ", ".join(
                f"{k.replace('_max', '')} {v:.2g}" for k, v in err.items()
                if k.endswith("_max") and k != "position_max_of_extent")
            print(f"{label:<14}{rec['bytes'] / 1e6:>8.1f}{te:>10.2f}{ti:>10.2f}  {note}")
        try:
            import pxr  # noqa: F401  (usd-core, optional)

            t0 = time.perf_counter()
            rec = export(tmp / "scene", tmp / "s.usdc", ExportOptions(format="usd", frames=args.frames))
            print(f"{'usd':<14}{rec['bytes'] / 1e6:>8.1f}{time.perf_counter() - t0:>10.2f}{'':>10}  "
                  f"{args.frames} time samples, exact")
        except ImportError:
            print("usd           (usd-core not installed)")
        for k in (1, 4):
            t0 = time.perf_counter()
            rec = export(tmp / "scene", tmp / f"s{k}.splatv", ExportOptions(format="splatv", segments=k))
            te = time.perf_counter() - t0
            e = rec["fit_errors"]
            print(f"{'splatv K=' + str(k):<14}{rec['bytes'] / 1e6:>8.1f}{te:>10.2f}{'':>10}  position p99 "
                  f"{e['position_p99_of_extent']:.2g} of extent, rotation {e['rotation_deg_max']:.2g} deg "
                  f"({e['times_checked']} times checked)")
        if not args.no_mesh:
            for faces in (0, 100_000):
                t0 = time.perf_counter()
                rec = export(tmp / "scene", tmp / f"mesh{faces}.glb", ExportOptions(format="mesh", faces=faces))
                te = time.perf_counter() - t0
                m = rec["mesh"]
                print(f"{'mesh' + (' 100k' if faces else ''):<14}{rec['bytes'] / 1e6:>8.1f}{te:>10.2f}{'':>10}  "
                      f"{m['faces']} faces, grid {'x'.join(map(str, m['grid']))}, {m['views']} views at "
                      f"{m['view_size']}^2: render {m['render_s']} s, fuse {m['fuse_s']} s, extract {m['extract_s']} s")
            t0 = time.perf_counter()
            rec = export(tmp / "scene", tmp / "anim.glb", ExportOptions(format="mesh-anim", frames=args.frames,
                                                                        faces=100_000))
            te = time.perf_counter() - t0
            e = rec["fit_errors"]
            print(f"{'mesh-anim':<14}{rec['bytes'] / 1e6:>8.1f}{te:>10.2f}{'':>10}  {args.frames} morph targets, "
                  f"{rec['mesh']['faces']} faces; vertices to Gaussians p95 {e['at_reference_frame']:.2%} "
                  f"(worst frame {e['worst_frame']:.2%}) of the extent")
            save_scene(tmp / "nodes", nodes_scene(args.n, args.sh))
            t0 = time.perf_counter()
            rec = export(tmp / "nodes", tmp / "skin.glb", ExportOptions(format="mesh-anim", frames=args.frames,
                                                                        faces=100_000))
            te = time.perf_counter() - t0
            e, m = rec["fit_errors"], rec["mesh"]
            print(f"{'mesh-anim skin':<14}{rec['bytes'] / 1e6:>8.1f}{te:>10.2f}{'':>10}  {m['joints']} joints x "
                  f"{args.frames} keys, {m['faces']} faces; replay vs field max {e['skin_replay_max_of_extent_at_keys']:.1e} "
                  f"of the extent at the keys, {e['skin_replay_max_of_extent_between_keys']:.1e} between them")
        t0 = time.perf_counter()
        rec = export(tmp / "scene", tmp / "seq", ExportOptions(format="ply-sequence", frames=args.frames))
        te = time.perf_counter() - t0
        print(f"{'ply-sequence':<14}{rec['bytes'] / 1e6:>8.1f}{te:>10.2f}{'':>10}  {args.frames} frames "
              f"({te / args.frames:.2f} s/frame)")


if __name__ == "__main__":
    main()

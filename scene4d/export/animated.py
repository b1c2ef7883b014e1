"""Unit: an animated mesh (``--format mesh-anim``, ``.glb``): one surface, moved by the scene's motion.

The surface is extracted once, at ``--time`` (default: the start of the range), as for
``--format mesh``. Each vertex then follows its K = 4 nearest opaque Gaussians: for frame k,
Gaussian i predicts ``mu_i(t_k) + R_i(t_k) R_i(t)^T (v - mu_i(t))`` (its own rigid motion carried to
the vertex), blended with inverse-distance weights. The frames become glTF **morph targets**
(position deltas, one per frame) played by an animation of the mesh weights (one-hot keys at
``k / fps`` seconds, linear in between): every glTF importer plays these (Unity's glTFast/UnityGLTF,
Unreal's Interchange, Blender, Godot).

This reads the scene only through ``scene.at(t)``, so it works for every deformation field; it is
not the exact skin that motion nodes would give (a glTF skin needs the field's node tracks), and
Gaussians that appear or leave (temporal opacity) are not represented — the record says so.
Tracking quality is reported per frame: the distance from the moved vertices to the nearest
opaque Gaussian centre at that time, against the same figure for the extracted frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers.ply import write_atomic

from ..formats import mesh as geo
from ..render import UsageError
from . import mesh as mesh_unit
from . import skin

NAME, SUFFIX, LOSSY = "mesh-anim", ".glb", True
K_NEAREST = 4


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def _rotmats(q: np.ndarray) -> np.ndarray:
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).reshape(-1, 3, 3)


def _nearest(points: np.ndarray, centres: np.ndarray, k: int, block: float = 0.0):
    """(distances (V,k), indices (V,k)) of the k nearest ``centres`` to each point.

    Space is cut into cubic blocks; the points of a block are compared (torch.cdist) with the
    centres of the 27 blocks around it only, and the few points whose k-th neighbour lies farther
    than a block (so a nearer centre could hide outside) are redone against all centres.
    """
    import torch

    k = min(k, len(centres))
    ext = float(np.ptp(np.concatenate([points, centres]), axis=0).max()) or 1.0
    block = block or ext / 24
    lo = np.minimum(points.min(0), centres.min(0))
    kc = np.floor((centres - lo) / block).astype(np.int64)
    kp = np.floor((points - lo) / block).astype(np.int64)
    dims = np.maximum(kc.max(0), kp.max(0)) + 3
    key = lambda q: ((q[:, 0] + 1) * dims[1] + (q[:, 1] + 1)) * dims[2] + (q[:, 2] + 1)  # noqa: E731
    ck = key(kc)
    order = np.argsort(ck, kind="stable")
    ck_sorted = ck[order]
    C = torch.from_numpy(np.ascontiguousarray(centres, np.float64))
    dist = np.full((len(points), k), np.inf)
    idx = np.zeros((len(points), k), np.int64)
    pk = key(kp)
    offs = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
    for cell in np.unique(pk):
        sel = np.flatnonzero(pk == cell)
        q0 = kp[sel[0]]
        keys = key(q0 + offs)
        starts = np.searchsorted(ck_sorted, keys, "left")
        ends = np.searchsorted(ck_sorted, keys, "right")
        cand = np.concatenate([order[a:b] for a, b in zip(starts, ends)]) if (ends > starts).any() else np.zeros(0, int)
        if len(cand) < k:
            continue
        d = torch.cdist(torch.from_numpy(points[sel]), C[cand])
        dd, ii = d.topk(k, largest=False)
        dist[sel], idx[sel] = dd.numpy(), cand[ii.numpy()]
    redo = np.flatnonzero(dist[:, -1] > block)  # a nearer centre may lie beyond the 27 blocks
    for s in range(0, len(redo), 1024):
        r = redo[s:s + 1024]
        dd, ii = torch.cdist(torch.from_numpy(points[r]), C).topk(k, largest=False)
        dist[r], idx[r] = dd.numpy(), ii.numpy()
    return dist, idx


def glb_bytes(verts, faces, colors, deltas, times) -> bytes:
    """A glb with one morph target per frame (POSITION deltas) and an animation of the weights."""
    e = geo.GlbEditor(geo.glb_bytes(verts, faces, colors))
    doc, n = e.doc, len(deltas)
    targets = []
    for d in deltas:
        d = d.astype("<f4")
        i = e.add(d, {"componentType": 5126, "count": len(d), "type": "VEC3",
                      "min": [float(x) for x in d.min(0)], "max": [float(x) for x in d.max(0)]}, 34962)
        targets.append({"POSITION": i})
    prim = doc["meshes"][0]["primitives"][0]
    prim["targets"] = targets
    doc["meshes"][0]["weights"] = [1.0] + [0.0] * (n - 1)
    t = np.asarray(times, "<f4")
    ti = e.add(t, {"componentType": 5126, "count": n, "type": "SCALAR", "min": [float(t.min())], "max": [float(t.max())]})
    wi = e.add(np.eye(n, dtype="<f4").ravel(), {"componentType": 5126, "count": n * n, "type": "SCALAR"})
    doc["animations"] = [{"name": "scene4d", "samplers": [{"input": ti, "output": wi, "interpolation": "LINEAR"}],
                          "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}]
    return e.to_bytes()


def write_from_source(src, out: Path, opts, F, t_ref: float, times) -> dict:
    import torch

    if out.suffix.lower() != ".glb":
        raise UsageError(f"--out {out}: an animated mesh is written as .glb (morph targets + animation)")
    with torch.no_grad():
        g0 = src.scene.at(t_ref)
    if len(g0) == 0:
        raise UsageError(f"{src.path}: the scene has no Gaussians at t={t_ref:g}; nothing to export")
    why_not = skin.skinnable(src.scene)
    mode = opts.animation
    if mode not in ("auto", "skin", "morph"):
        raise UsageError(f"unknown --animation {mode!r}; choose auto, skin or morph")
    if mode == "skin" and why_not:
        raise UsageError(f"{src.path}: --animation skin needs a motion-nodes scene, but {why_not}; "
                         "use --animation morph (morph targets, any motion)")
    if not 1 <= opts.influences <= 64:
        raise UsageError(f"--influences must be 1..64 joints per vertex, got {opts.influences} (4 is what every "
                         "engine reads; Unity and Blender take more)")
    v, f, c, info = mesh_unit.extract(g0, src.up, views=opts.views, size=opts.view_size, voxel=opts.voxel,
                                      faces=opts.faces)
    geo.check_mesh(v, f, str(out))
    if mode != "morph" and why_not is None:
        return _write_skin(src, out, opts, F, t_ref, times, v, f, c, g0, info)
    mu0 = g0.means.detach().double().numpy()
    op0 = g0.opacities.detach().double().numpy()
    opaque = np.flatnonzero(op0 > 0.1)
    if len(opaque) < K_NEAREST:
        opaque = np.arange(len(mu0))
    dist, nn = _nearest(v, mu0[opaque], K_NEAREST)
    nn = opaque[nn]
    w = 1.0 / np.maximum(dist, 1e-6)
    w /= w.sum(1, keepdims=True)
    R0 = _rotmats(g0.quats.detach().double().numpy()[nn.ravel()]).reshape(len(v), -1, 3, 3)
    local = np.einsum("vkji,vkj->vki", R0, v[:, None, :] - mu0[nn])  # R0^T (v - mu0)
    ext = float(np.ptp(mu0[opaque], axis=0).max()) or 1.0
    deltas, track, fade = [], [], 0.0
    for t in times:
        with torch.no_grad():
            g = src.scene.at(float(t))
        if len(g) != len(g0):
            raise UsageError(f"{src.path}: the number of Gaussians changes over time; an animated mesh needs a fixed set")
        mu = g.means.detach().double().numpy()
        R = _rotmats(g.quats.detach().double().numpy()[nn.ravel()]).reshape(len(v), -1, 3, 3)
        pred = mu[nn] + np.einsum("vkij,vkj->vki", R, local)
        vk = (w[..., None] * pred).sum(1)
        deltas.append(vk - v)
        op = g.opacities.detach().double().numpy()
        fade = max(fade, float(np.abs(op - op0).max()))
        vis = op > 0.1
        d, _ = _nearest(vk, mu[vis] if vis.sum() >= 1 else mu, 1)
        track.append(float(np.percentile(d[:, 0], 95)) / ext)
    Fm = np.asarray(F, np.float64)
    v_out = v @ Fm.T
    deltas = [d @ Fm.T for d in deltas]
    if np.linalg.det(Fm) < 0:
        f = f[:, ::-1]
    seconds = [k / opts.fps for k in range(len(times))]
    write_atomic(out, [glb_bytes(v_out, f, c, deltas, seconds)])
    info.update({"frames": len(times), "fps": opts.fps, "reference_time": t_ref, "morph_targets": len(times),
                 "k_nearest": K_NEAREST, "animation": "morph targets",
                 **({"why_not_skin": why_not} if why_not else {})})
    base = track[int(np.argmin(np.abs(np.asarray(times) - t_ref)))]
    notes = []
    if fade > 0.1:
        notes.append(f"opacities change by up to {fade:.2f} over the frames: things that appear or leave are not "
                     "in the one mesh (export a mesh per --time instead)")
    return {"format_version": "glTF 2.0 mesh + morph targets (one per frame) + weights animation",
            "sh_degree_written": 0, "n_gaussians": len(g0), "mesh": info, "notes": notes,
            "errors": {"vertex_to_gaussians_p95_of_extent_per_frame": [round(x, 6) for x in track],
                       "at_reference_frame": round(base, 6), "worst_frame": round(max(track), 6)}}


def _write_skin(src, out: Path, opts, F, t_ref: float, times, v, f, c, g0, info) -> dict:
    """The exact skin of a motion-nodes scene (:mod:`scene4d.export.skin`)."""
    # keys at the frames and at the fields' own knots, where the motion turns from one screw to the
    # next: between two keys a player's interpolation then follows a single screw
    t0, t1 = float(times[0]), float(times[-1])
    knots = {round(i / (f.cfg.time_resolution - 1), 12)
             for f in src.scene.fields if f is not None and f.cfg.time_resolution > 1
             for i in range(f.cfg.time_resolution)}
    keys = sorted({round(float(t), 12) for t in times} | {k for k in knots if t0 < k < t1})
    span = max(len(times) - 1, 1) / opts.fps
    seconds = [0.0 if t1 == t0 else (t - t0) / (t1 - t0) * span for t in keys]
    b = skin.build(src.scene, v, g0, t_ref, keys, seconds, F, influences=opts.influences)
    if b["det_negative"]:
        f = f[:, ::-1]
    write_atomic(out, [skin.glb_bytes(b["verts"], f, c, b["joints"], b["weights"], b["ibm"], b["rest_T"], b["rest_q"],
                                      b["key_T"], b["key_q"], seconds, b["animated"])])
    info.update({"frames": len(times), "fps": opts.fps, "reference_time": t_ref, "animation": "skin",
                 "keys": len(keys), "key_times": keys, **b["info"]})
    return {"format_version": "glTF 2.0 skinned mesh: one joint per motion node, translation + rotation keys per frame",
            "sh_degree_written": 0, "n_gaussians": len(g0), "mesh": info, "notes": [],
            "errors": b["errors"]}

"""Unit: ``.splatv`` (splaTV / gsplat.js), fitted to ``scene.at(t)`` sampled over the time range.

The scene's time range maps linearly onto splatv's [0, 1]. Per time segment (``--segments K``;
K copies of every Gaussian), each Gaussian gets, by least squares on the samples in its segment:

* a cubic in ``dt`` for its centre (exact for the linear motion of temporal-opacity scenes),
* ``q + omega dt`` for its rotation (signs aligned to the segment centre first),
* its scale at the segment centre (splatv has no scale motion) and its DC colour (no SH),

and, over the whole range, ``log opacity(t)`` as a quadratic (weighted by opacity), which is
exactly splatv's window ``a exp(-((t - c) / s)^2)`` for scene4d's temporal opacity. With K > 1
each copy's window is multiplied by a segment window that halves at the segment's ends (a
preview: the windows are Gaussians, not boxes, so neighbouring copies overlap).

The fit is measured before anything is written: our decoder (the shader's formulas) against
the samples at the fitting times and halfway between them; position errors of visible Gaussians
(opacity > 0.02, splaTV's cull) as a fraction of the scene extent; the export fails if p99
exceeds ``--tolerance`` and says how many segments to try.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from renderers.gaussians import SH_C0
from renderers.ply import write_atomic

from ..formats import normalized_quats
from ..formats import splatv as codec
from ..render import UsageError

NAME, SUFFIX, LOSSY = "splatv", ".splatv", True
VISIBLE = 0.02
S_MAX = 1000.0  # a window this wide is "always on" within [0, 1]


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def _samples(src, times, F):
    """Centres (S,N,3), unit quats (S,N,4), opacities (S,N), log-scales (S,N,3) in the file frame,
    and the DC colour (N,3) (rotation-invariant), from ``scene.at(t)`` at each time."""
    import torch

    from ..formats.frames import quat_mul, rotmat_to_quat

    F = np.asarray(F, np.float64)
    qP = rotmat_to_quat(np.sign(np.linalg.det(F)) * F)
    P, Q, O, LS, DC = [], [], [], [], None
    for t in times:
        with torch.no_grad():
            g = src.scene.at(float(t))
        if len(g) == 0:
            raise UsageError(f"{src.path}: the scene has no Gaussians at t={t:g}; nothing to export")
        if P and len(g) != P[0].shape[0]:
            raise UsageError(f"{src.path}: the number of Gaussians changes over time; splatv needs a fixed set")
        P.append(g.means.detach().double().numpy() @ F.T)
        Q.append(quat_mul(qP, normalized_quats(g.quats.detach().double().numpy())).astype(np.float32))
        O.append(g.opacities.detach().double().numpy())
        LS.append(torch.log(g.scales.detach().clamp_min(1e-30)).float().numpy())
        DC = g.sh[:, 0].detach().float().numpy() if DC is None else DC
    return np.stack(P), np.stack(Q).astype(np.float64), np.stack(O), np.stack(LS), DC


def _window_fit(u: np.ndarray, O: np.ndarray):
    """Per Gaussian: (peak a, centre c, width s) with O(u) ~ a exp(-((u - c)/s)^2), by weighted LSQ
    of log O against (1, u, u^2); a constant opacity gives s = S_MAX."""
    w = np.clip(O, 0, None) ** 2 + 1e-12  # trust the samples where the Gaussian is visible
    y = np.log(np.clip(O, 1e-30, None))
    A = np.stack([np.ones_like(u), u, u * u], 1)  # (S, 3)
    AtWA = np.einsum("si,sn,sj->nij", A, w, A) + np.eye(3) * 1e-12
    AtWy = np.einsum("si,sn,sn->ni", A, w, y)
    c0, c1, c2 = np.linalg.solve(AtWA, AtWy[..., None])[..., 0].T
    flat = c2 > -1e-6
    c2s = np.where(flat, -1.0, c2)
    centre = np.where(flat, 0.5, -c1 / (2 * c2s))
    s = np.where(flat, S_MAX, np.sqrt(-1.0 / c2s))
    log_peak = np.where(flat, np.log(np.clip(O.mean(0), 1e-30, None)), c0 - c1 * c1 / (4 * c2s))
    return np.exp(np.minimum(log_peak, 0.0)), np.clip(centre, -100, 100), np.clip(s, 1e-4, S_MAX)


def fit(src, F, segments: int):
    """(SplatvData with K*N Gaussians, errors dict, n_samples)."""
    t0, t1 = src.time_range
    span = t1 - t0
    K = segments
    n_fit = max(33, 8 * K + 1)
    u_fit = np.linspace(0.0, 1.0, n_fit)
    u_mid = (u_fit[:-1] + u_fit[1:]) / 2
    u_all = np.concatenate([u_fit, u_mid])
    P, Q, O, LS, DC = _samples(src, t0 + span * u_all, F)
    Pf, Qf, Of = P[:n_fit], Q[:n_fit], O[:n_fit]
    n = P.shape[1]
    peak, centre, width = _window_fit(u_fit, Of)
    rgb = np.clip(0.5 + SH_C0 * DC.astype(np.float64), 0, 1)
    parts = []
    edges = np.linspace(0, 1, K + 1)
    for k in range(K):
        a, b = edges[k], edges[k + 1]
        c = (a + b) / 2
        sel = (u_fit >= a - 1e-9) & (u_fit <= b + 1e-9)
        dt = u_fit[sel] - c
        V = np.stack([np.ones_like(dt), dt, dt ** 2, dt ** 3], 1)
        coef = np.linalg.pinv(V) @ Pf[sel].reshape(sel.sum(), -1)  # (4, N*3)
        coef = coef.reshape(4, n, 3)
        mid = int(np.argmin(np.abs(u_fit - c)))
        qs = Qf[sel] * np.where((Qf[sel] * Qf[mid]).sum(-1, keepdims=True) < 0, -1.0, 1.0)
        ql = np.linalg.pinv(np.stack([np.ones_like(dt), dt], 1)) @ qs.reshape(sel.sum(), -1)
        ql = ql.reshape(2, n, 4)
        if K == 1:
            a_k, c_k, s_k = peak, centre, width
        else:  # product of the scene's window and the segment's (halved at the segment ends)
            s_seg = (b - a) / 2 / math.sqrt(math.log(2))
            inv = 1 / width ** 2 + 1 / s_seg ** 2
            c_k = (centre / width ** 2 + c / s_seg ** 2) / inv
            s_k = 1 / np.sqrt(inv)
            a_k = peak * np.exp(-((centre - c) ** 2) / (width ** 2 + s_seg ** 2))
        # splatv evaluates motion around its window centre: re-centre the cubic there
        d = c_k - c
        m1, m2, m3 = coef[1], coef[2], coef[3]
        means = coef[0] + m1 * d[:, None] + m2 * d[:, None] ** 2 + m3 * d[:, None] ** 3
        v1 = m1 + 2 * m2 * d[:, None] + 3 * m3 * d[:, None] ** 2
        v2 = m2 + 3 * m3 * d[:, None]
        parts.append(codec.SplatvData(
            means=means, quats=ql[0] + ql[1] * d[:, None], scales=np.exp(LS[mid].astype(np.float64)),
            rgba=np.concatenate([rgb, a_k[:, None]], 1), motion=np.concatenate([v1, v2, m3], 1),
            omega=ql[1], trbf_center=c_k, trbf_scale=s_k))
    data = codec.SplatvData(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                              ("means", "quats", "scales", "rgba", "motion", "omega", "trbf_center", "trbf_scale")))
    return data, u_all, P, Q, O


def measure(data: codec.SplatvData, n: int, K: int, u_all, P, Q, O) -> dict:
    """Errors of the decoded file against the samples (each time compared with its segment's copy)."""
    ext = float(np.ptp(P.reshape(-1, 3), axis=0).max()) or 1.0
    pos_err, rot_err, op_err = [], [], []
    for j, u in enumerate(u_all):
        k = min(int(u * K), K - 1)
        sl = slice(k * n, (k + 1) * n)
        part = codec.SplatvData(*(getattr(data, f)[sl] for f in
                                  ("means", "quats", "scales", "rgba", "motion", "omega", "trbf_center", "trbf_scale")))
        pos, q, a = part.at(u)
        vis = O[j] > VISIBLE
        pos_err.append(np.linalg.norm(pos - P[j], axis=1)[vis])
        dots = np.abs((q * Q[j]).sum(1)).clip(0, 1)
        rot_err.append(np.degrees(2 * np.arccos(dots))[vis])
        if K == 1:
            op_err.append(np.abs(a - O[j]))
    pe, re = np.concatenate(pos_err), np.concatenate(rot_err)
    out = {
        "position_p99_of_extent": float(np.percentile(pe, 99)) / ext if pe.size else 0.0,
        "position_max_of_extent": float(pe.max()) / ext if pe.size else 0.0,
        "position_max": float(pe.max()) if pe.size else 0.0,
        "rotation_deg_p99": float(np.percentile(re, 99)) if re.size else 0.0,
        "rotation_deg_max": float(re.max()) if re.size else 0.0,
        "scene_extent": ext,
        "times_checked": len(u_all),
    }
    if op_err:
        out["opacity_max"] = float(np.concatenate(op_err).max())
    return {k: (round(v, 7) if isinstance(v, float) else v) for k, v in out.items()}


def write_from_source(src, out: Path, opts, F) -> dict:
    if opts.segments < 1:
        raise UsageError(f"--segments must be at least 1, got {opts.segments}")
    if not 0 < opts.tolerance:
        raise UsageError(f"--tolerance must be positive (a fraction of the scene extent), got {opts.tolerance}")
    data, u_all, P, Q, O = fit(src, F, opts.segments)
    n = P.shape[1]
    blob = codec.encode(data)
    err = measure(codec.decode(blob, str(out)), n, opts.segments, u_all, P, Q, O)  # what a viewer decodes
    if err["position_p99_of_extent"] > opts.tolerance:
        raise UsageError(
            f"splatv fit error p99 {err['position_p99_of_extent']:.2%} of the scene extent (max "
            f"{err['position_max_of_extent']:.2%}) exceeds --tolerance {opts.tolerance:.2%}; nothing written. "
            f"Try --segments {2 * opts.segments} (each segment copies every Gaussian) or a ply-sequence")
    write_atomic(out, [blob])
    return {"format_version": "antimatter15 splatv (64 B/Gaussian, half-float motion)", "sh_degree_written": 0,
            "n_gaussians": len(data), "segments": opts.segments, "gaussians_per_segment": n,
            "time_to_splatv": "u = (t - t0) / (t1 - t0)", "errors": err}

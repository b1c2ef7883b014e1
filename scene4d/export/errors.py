"""Per-attribute differences between the Gaussians given to a writer and those its file decodes to."""

from __future__ import annotations

import numpy as np

from renderers.gaussians import SH_C0

from ..formats import Splats, normalized_quats, sigmoid


def rotation_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) angles in degrees between the ellipsoid orientations of wxyz quaternions ``a`` and ``b``.

    A Gaussian is unchanged by a half turn about any of its own axes (``q * i``, ``q * j``,
    ``q * k``) and by ``-q``: readers that change frames by ``C R C^T`` (Niantic, splat-transform)
    and ours (``P R``) differ by exactly such a half turn, so the smallest angle over those is taken.
    """
    from ..formats.frames import quat_mul

    qa, qb = normalized_quats(a), normalized_quats(b)
    best = np.full(len(qa), np.inf)
    for h in np.eye(4):
        qh = quat_mul(qb, h)
        qh = qh * np.where((qa * qh).sum(1, keepdims=True) < 0, -1.0, 1.0)
        ang = np.degrees(4 * np.arcsin(np.clip(np.linalg.norm(qa - qh, axis=1) / 2, 0, 1)))
        best = np.minimum(best, ang)
    return best


def attribute_errors(src: Splats, got: Splats) -> dict:
    """Max (and p99 for rotation) absolute differences per attribute, in the file's own units."""
    if len(src) == 0:
        return {}
    d = lambda a, b: float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())  # noqa: E731
    ext = float(np.ptp(src.means, axis=0).max()) or 1.0
    rot = rotation_deg(src.quats, got.quats)
    out = {
        "position_max": d(src.means, got.means),
        "position_max_of_extent": d(src.means, got.means) / ext,
        "log_scale_max": d(src.log_scales, got.log_scales),
        "opacity_max": d(sigmoid(src.opacity_logits), sigmoid(got.opacity_logits)),
        "rgb_dc_max": d(np.clip(0.5 + SH_C0 * src.sh[:, 0], 0, 1), np.clip(0.5 + SH_C0 * got.sh[:, 0], 0, 1)),
        "rotation_deg_max": float(rot.max()),
        "rotation_deg_p99": float(np.percentile(rot, 99)),
    }
    k = min(src.sh.shape[1], got.sh.shape[1])
    if k > 1:
        out["sh_band1_max"] = d(src.sh[:, 1:4], got.sh[:, 1:4])
    if k > 4:
        out["sh_bands23_max"] = d(src.sh[:, 4:k], got.sh[:, 4:k])
    return {key: round(v, 7) for key, v in out.items()}

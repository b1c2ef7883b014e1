"""antimatter15 ``.splat``: no header, one 32-byte record per Gaussian (little-endian)::

    position f32 x3 | scale f32 x3 (linear) | rgba u8 x4 | rotation u8 x4 (w, x, y, z)

``rgb = 0.5 + SH_C0 * dc`` and ``a = sigmoid(opacity)``, both x255; rotation ``q/|q| * 128 + 128``.
No SH bands. The reference writer (antimatter15/splat ``convert.py``) orders records by
``exp(sum log-scale) * opacity``, largest first, so viewers that stream the file show the big
opaque splats first; :func:`encode` does the same unless ``sort=False``.
"""

from __future__ import annotations

import numpy as np

from renderers.gaussians import SH_C0

from . import FormatError, Splats, logit, normalized_quats, sigmoid

RECORD = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])
assert RECORD.itemsize == 32


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def splat_order(s: Splats) -> np.ndarray:
    """The record order the reference writer uses: largest ``volume * opacity`` first (stable)."""
    key = np.exp(np.asarray(s.log_scales, np.float64).sum(1)) * sigmoid(s.opacity_logits)
    return np.argsort(-key, kind="stable")


def encode(s: Splats, *, sort: bool = True) -> bytes:
    """Splats -> ``.splat`` bytes (32 N); SH bands above degree 0 are dropped."""
    if sort:
        o = splat_order(s)
        s = Splats(s.means[o], s.quats[o], s.log_scales[o], s.opacity_logits[o], s.sh[o])
    rec = np.empty(len(s), RECORD)
    rec["pos"] = s.means
    rec["scale"] = np.exp(np.asarray(s.log_scales, np.float64))
    rgb = 0.5 + SH_C0 * np.asarray(s.sh[:, 0], np.float64)
    rec["rgba"][:, :3] = _u8(rgb * 255)
    rec["rgba"][:, 3] = _u8(sigmoid(s.opacity_logits).astype(np.float64) * 255)
    rec["rot"] = _u8(normalized_quats(s.quats) * 128 + 128)
    return rec.tobytes()


def decode(data: bytes, where: str = ".splat") -> Splats:
    """``.splat`` bytes -> Splats (SH degree 0; opacity 0 / 1 clipped to finite logits)."""
    if len(data) == 0:
        raise FormatError(f"{where}: empty file; no Gaussians")
    if len(data) % 32:
        raise FormatError(f"{where}: {len(data)} bytes is not a whole number of 32-byte .splat records; "
                          "the file is truncated or not a .splat file")
    rec = np.frombuffer(data, RECORD)
    pos = rec["pos"].astype(np.float32)
    scale = rec["scale"].astype(np.float64)
    if not (np.isfinite(pos).all() and np.isfinite(scale).all()) or (scale <= 0).any():
        raise FormatError(f"{where}: positions/scales are not finite positive numbers; not a .splat file")
    rgba = rec["rgba"].astype(np.float64) / 255
    q = (rec["rot"].astype(np.float64) - 128) / 128
    return Splats(
        means=pos,
        quats=normalized_quats(q).astype(np.float32),
        log_scales=np.log(scale).astype(np.float32),
        opacity_logits=logit(np.clip(rgba[:, 3], 0.5 / 255, 1 - 0.5 / 255)),
        sh=((rgba[:, None, :3] - 0.5) / SH_C0).astype(np.float32),
    )

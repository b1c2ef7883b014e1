"""antimatter15 ``.splatv`` (splaTV, gsplat.js): Gaussians with polynomial motion and a temporal window.

Layout (antimatter15/splaTV ``hybrid.js``)::

    u32 0x674B | u32 json_len | JSON [{"type": "splat", "size": B, "texwidth": 4096,
                                        "texheight": H, "cameras": [...]}] | B bytes

``B = texwidth * texheight * 16``: an RGBA32UI texture, 4 texels (16 u32, 64 bytes) per Gaussian;
no count is stored, so padding records have opacity 0. Words of Gaussian i (``16 i + w``)::

    0-2  f32 x y z                 8-12  half motion_0..8 (and one 0)
    3-4  half (w, x), (y, z)       13-14 half omega_0..3 (w, x, y, z)
    5-6  half (sx, sy), (sz, 0)    15    half (trbf_center, trbf_scale)
    7    u8 r g b a                (half pairs: the first value in the low 16 bits)

At viewer time ``t`` in [0, 1], with ``dt = t - trbf_center``: position
``xyz + m[0:3] dt + m[3:6] dt^2 + m[6:9] dt^3``, rotation ``normalize(q + omega dt)``, opacity
``a * exp(-(dt / trbf_scale)^2)`` (culled below 0.02); colour is view-independent (no SH).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from . import FormatError

MAGIC = 0x674B
TEXWIDTH = 4096


@dataclass
class SplatvData:
    """N dynamic Gaussians (float64 numpy): ``means`` (N,3) at ``trbf_center``, ``quats`` (N,4) wxyz,
    ``scales`` (N,3) linear, ``rgba`` (N,4) in [0,1], ``motion`` (N,9), ``omega`` (N,4) wxyz per unit
    time, ``trbf_center`` (N,), ``trbf_scale`` (N,) (viewer time units)."""

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    rgba: np.ndarray
    motion: np.ndarray
    omega: np.ndarray
    trbf_center: np.ndarray
    trbf_scale: np.ndarray

    def __len__(self) -> int:
        return self.means.shape[0]

    def at(self, t: float):
        """(positions (N,3), unit quats (N,4), opacities (N,)) at viewer time ``t``, as the shader."""
        dt = (t - self.trbf_center)[:, None]
        m = self.motion
        pos = self.means + m[:, 0:3] * dt + m[:, 3:6] * dt ** 2 + m[:, 6:9] * dt ** 3
        q = self.quats + self.omega * dt
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        a = self.rgba[:, 3] * np.exp(-(dt[:, 0] / self.trbf_scale) ** 2)
        return pos, q, a


def _half_pairs(a: np.ndarray) -> np.ndarray:
    """(N, 2k) floats -> (N, k) u32 words, first of each pair in the low 16 bits."""
    h = np.ascontiguousarray(a, dtype="<f2")
    return h.view("<u2").astype(np.uint32).reshape(len(a), -1, 2) @ np.array([1, 1 << 16], np.uint32)


def encode(d: SplatvData, cameras: Optional[List[dict]] = None) -> bytes:
    n = len(d)
    for name in ("means", "motion", "omega", "scales", "trbf_center", "trbf_scale"):
        v = np.asarray(getattr(d, name))
        if not np.isfinite(v).all() or (name != "means" and np.abs(v).max(initial=0) > 65504):
            raise FormatError(f".splatv: {name} is out of half-float range (|v| <= 65504) or not finite")
    texheight = max(1, math.ceil(4 * n / TEXWIDTH))
    rec = np.zeros((texheight * TEXWIDTH // 4, 16), np.uint32)
    rec[:n, 0:3] = np.ascontiguousarray(d.means, "<f4").view("<u4")
    rec[:n, 3:5] = _half_pairs(d.quats)
    rec[:n, 5:7] = _half_pairs(np.concatenate([d.scales, np.zeros((n, 1))], 1))
    rgba = np.clip(np.floor(np.asarray(d.rgba, np.float64) * 255 + 0.5), 0, 255).astype(np.uint8)
    rec[:n, 7] = np.ascontiguousarray(rgba).view("<u4")[:, 0]
    rec[:n, 8:13] = _half_pairs(np.concatenate([d.motion, np.zeros((n, 1))], 1))
    rec[:n, 13:15] = _half_pairs(d.omega)
    rec[:n, 15] = _half_pairs(np.stack([d.trbf_center, d.trbf_scale], 1))[:, 0]
    body = rec.astype("<u4").tobytes()
    head = json.dumps([{"type": "splat", "size": len(body), "texwidth": TEXWIDTH, "texheight": texheight,
                        "cameras": cameras or []}], separators=(",", ":")).encode()
    return struct.pack("<II", MAGIC, len(head)) + head + body


def decode(data: bytes, where: str = ".splatv") -> SplatvData:
    """``.splatv`` bytes -> SplatvData (padding records, opacity 0 and all zero, dropped)."""
    if len(data) < 8 or struct.unpack_from("<I", data)[0] != MAGIC:
        raise FormatError(f"{where}: not a .splatv file (no 0x674B magic)")
    jlen = struct.unpack_from("<I", data, 4)[0]
    try:
        meta = json.loads(data[8:8 + jlen])[0]
        size, tw, th = int(meta["size"]), int(meta["texwidth"]), int(meta["texheight"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise FormatError(f"{where}: the .splatv JSON header is damaged or cut short") from None
    if size != tw * th * 16 or 8 + jlen + size > len(data):
        raise FormatError(f"{where}: header promises {size} bytes of texture, the file holds "
                          f"{len(data) - 8 - jlen}; truncated")
    rec = np.frombuffer(data, "<u4", count=size // 4, offset=8 + jlen).reshape(-1, 16)
    used = np.flatnonzero(rec.any(axis=1))
    n = int(used[-1]) + 1 if len(used) else 0
    rec = rec[:n]

    def halves(words: np.ndarray) -> np.ndarray:
        lo = (words & 0xFFFF).astype("<u2").view("<f2")
        hi = (words >> 16).astype("<u2").view("<f2")
        return np.stack([lo, hi], -1).reshape(len(words), -1).astype(np.float64)

    rgba = np.ascontiguousarray(rec[:, 7]).view(np.uint8).reshape(n, 4).astype(np.float64) / 255
    tr = halves(rec[:, 15:16])
    return SplatvData(
        means=np.ascontiguousarray(rec[:, 0:3]).view("<f4").astype(np.float64),
        quats=halves(rec[:, 3:5]), scales=halves(rec[:, 5:7])[:, :3], rgba=rgba,
        motion=halves(rec[:, 8:13])[:, :9], omega=halves(rec[:, 13:15]),
        trbf_center=tr[:, 0], trbf_scale=tr[:, 1])

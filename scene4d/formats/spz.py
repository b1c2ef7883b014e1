"""Niantic SPZ (``.spz``): read versions 1-4, write 2 (default), 3 and 4.

Versions 1-3 are one gzip stream of a 16-byte header and packed arrays; version 4 (2026) is a
32-byte plaintext ``NGSP`` header, a table of contents of (compressed, uncompressed) u64 pairs
and one zstd stream per array (nianticlabs/spz ``load-spz.cc``, README)::

    header   magic 0x5053474E ("NGSP"), version u32, N u32, shDegree u8, fractionalBits u8 (12),
             flags u8 (1 = antialiased), reserved u8  [v4: numStreams u8, tocByteOffset u32, 12 x 0]
    arrays   positions 24-bit fixed point (v1: float16)  9N | alpha u8 sigmoid*255  N
             colour u8 dc*0.15*255+127.5  3N | scale u8 (ln s+10)*16  3N
             rotation xyzw: v1/v2 xyz u8 (w >= 0 derived) 3N; v3/v4 "smallest three" u32 4N
             SH u8 x*128+128, bucketed to 5 bits (band 1) / 4 bits (bands 2-3), [coef][rgb]

The codec is frame-agnostic: arrays are stored as given. The SPZ spec's on-disk frame is RUB
(x right, y up, z back); :mod:`scene4d.export` applies that flip (``diag(1, -1, -1)`` from the
PLY/RDF convention), as Niantic's and splat-transform's writers do.

Aras-p's Unity importer reads only version 2; Niantic's library and splat-transform write 4.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

from . import FormatError, Splats, logit, normalized_quats, sigmoid

MAGIC = 0x5053474E
COLOR_SCALE = 0.15
FRACTIONAL_BITS = 12
SH_BITS = (5, 4)  # band 1, bands 2+
_SQRT1_2 = np.sqrt(0.5)


def _round(x: np.ndarray) -> np.ndarray:
    """C's std::round: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round(x), 0, 255).astype(np.uint8)


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise FormatError("SPZ version 4 needs the zstandard package: pip install 'scene4d[export]' "
                          "(or write version 2 or 3, which use the standard library's gzip)") from None
    return zstandard


# --------------------------------------------------------------------------- packing
_COMBOS = np.array([[(c >> i) & 1 for i in range(3)] for c in range(8)], np.float64)  # floor/ceil choices


def _best_of_roundings(q: np.ndarray, scaled: np.ndarray, decode) -> np.ndarray:
    """Of the 8 floor/ceil roundings of ``scaled`` (N,3), the one whose decoded quaternion is nearest
    ``q`` (N,4) in angle. Readers decode as the format says; only the writer's choice is better
    than rounding each component alone (which, with the 4th component derived, can cost degrees)."""
    lo = np.floor(scaled)
    cand = lo[:, None, :] + _COMBOS[None]  # (N, 8, 3)
    dec = decode(cand)  # (N, 8, 4), unit
    score = np.abs(np.einsum("nkc,nc->nk", dec, q))
    best = np.argmax(score, axis=1)
    return cand[np.arange(len(q)), best]


def _pack_rotations(q_wxyz: np.ndarray, version: int) -> np.ndarray:
    q = normalized_quats(q_wxyz)[:, [1, 2, 3, 0]]  # xyzw
    if version <= 2:
        q = q * np.where(q[:, 3:4] < 0, -1.0, 1.0)

        def dec2(c):
            xyz = np.clip(c, 0, 255) / 127.5 - 1
            w = np.sqrt(np.maximum(0, 1 - (xyz ** 2).sum(-1, keepdims=True)))
            v = np.concatenate([xyz, w], -1)
            return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

        c = _best_of_roundings(q, q[:, :3] * 127.5 + 127.5, dec2)
        return np.clip(c, 0, 255).astype(np.uint8)
    n = len(q)
    big = np.argmax(np.abs(q), axis=1)
    q = q * np.where(q[np.arange(n), big] < 0, -1.0, 1.0)[:, None]
    mask = (1 << 9) - 1
    others = np.array([[j for j in range(4) if j != b] for b in range(4)])[big]  # (N, 3) in index order
    vals = np.take_along_axis(q, others, 1)

    def dec3(mag):
        m = np.clip(mag, 0, mask) * (_SQRT1_2 / mask) * np.sign(vals)[:, None, :]
        out = np.zeros(mag.shape[:2] + (4,))
        np.put_along_axis(out, np.broadcast_to(others[:, None, :], mag.shape), m, axis=2)
        largest = np.sqrt(np.maximum(0, 1 - (m ** 2).sum(-1)))
        np.put_along_axis(out, np.broadcast_to(big[:, None, None], mag.shape[:2] + (1,)), largest[..., None], axis=2)
        return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)

    mag = np.clip(_best_of_roundings(q, np.abs(vals) * mask / _SQRT1_2, dec3), 0, mask).astype(np.uint32)
    comp = big.astype(np.uint32)
    for j in range(3):
        neg = (vals[:, j] < 0).astype(np.uint32)
        comp = (comp << np.uint32(10)) | (neg << np.uint32(9)) | mag[:, j]
    return comp.astype("<u4").view(np.uint8).reshape(-1, 4)


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = (_round(x.astype(np.float64) * 128) + 128).astype(np.int64)
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def _arrays(s: Splats, version: int):
    n = len(s)
    fixed = _round(np.asarray(s.means, np.float64) * (1 << FRACTIONAL_BITS)).astype(np.int64)
    lim = 1 << 23
    if (np.abs(fixed) >= lim).any():
        far = float(np.abs(s.means).max())
        raise FormatError(f"SPZ stores positions within +-{lim >> FRACTIONAL_BITS} units (24-bit, 12 fractional bits); "
                          f"this scene reaches {far:.1f}")
    pos = (fixed.astype("<i4").view(np.uint8).reshape(n, 3, 4)[:, :, :3]).reshape(-1)
    alpha = _u8(sigmoid(s.opacity_logits).astype(np.float64) * 255)
    color = _u8(np.asarray(s.sh[:, 0], np.float64) * (COLOR_SCALE * 255) + 127.5).reshape(-1)
    scale = _u8((np.asarray(s.log_scales, np.float64) + 10) * 16).reshape(-1)
    rot = _pack_rotations(s.quats, version).reshape(-1)
    arrays = [pos, alpha, color, scale, rot]
    if s.sh_degree > 0:
        rest = np.asarray(s.sh[:, 1:], np.float64)  # (N, K-1, 3): [coef][rgb] per Gaussian
        q = np.empty(rest.shape, np.uint8)
        q[:, :3] = _quantize_sh(rest[:, :3], SH_BITS[0])
        q[:, 3:] = _quantize_sh(rest[:, 3:], SH_BITS[1])
        arrays.append(q.reshape(-1))
    return arrays


def encode(s: Splats, *, version: int = 2, antialiased: bool = False) -> bytes:
    """Splats -> SPZ bytes (version 2, 3: gzip; 4: NGSP + zstd streams)."""
    if version not in (2, 3, 4):
        raise FormatError(f"SPZ versions written: 2, 3, 4 (got {version})")
    if s.sh_degree > 3:
        raise FormatError("SPZ stores SH up to degree 3 here")
    arrays = _arrays(s, version)
    flags = 1 if antialiased else 0
    if version < 4:
        head = struct.pack("<IIIBBBB", MAGIC, version, len(s), s.sh_degree, FRACTIONAL_BITS, flags, 0)
        raw = head + b"".join(a.tobytes() for a in arrays)
        return gzip.compress(raw, compresslevel=6, mtime=0)
    zstd = _zstd()
    cctx = zstd.ZstdCompressor(level=12)
    streams = [cctx.compress(a.tobytes()) for a in arrays]
    head = struct.pack("<IIIBBBBI", MAGIC, 4, len(s), s.sh_degree, FRACTIONAL_BITS, flags, len(streams), 32) + bytes(12)
    toc = b"".join(struct.pack("<QQ", len(c), a.nbytes) for c, a in zip(streams, arrays))
    return head + toc + b"".join(streams)


# --------------------------------------------------------------------------- unpacking
def _sh_count(degree: int) -> int:
    return ((degree + 1) ** 2 - 1) * 3


def _unpack(n: int, degree: int, frac: int, version: int, parts, where: str) -> Splats:
    pos_b, alpha, color, scale, rot = parts[:5]
    if version == 1:
        means = np.frombuffer(pos_b, "<f2").reshape(n, 3).astype(np.float32)
    else:
        b = np.frombuffer(pos_b, np.uint8).reshape(n * 3, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - (1 << 24), v)
        means = (v.astype(np.float64) / (1 << frac)).reshape(n, 3).astype(np.float32)
    a = np.frombuffer(alpha, np.uint8).astype(np.float64) / 255
    c = np.frombuffer(color, np.uint8).reshape(n, 3).astype(np.float64)
    dc = (c / 255 - 0.5) / COLOR_SCALE
    ls = np.frombuffer(scale, np.uint8).reshape(n, 3).astype(np.float64) / 16 - 10
    if version <= 2:
        xyz = np.frombuffer(rot, np.uint8).reshape(n, 3).astype(np.float64) / 127.5 - 1
        w = np.sqrt(np.maximum(0, 1 - (xyz ** 2).sum(1)))
        q = np.concatenate([w[:, None], xyz], 1)
    else:
        comp = np.frombuffer(rot, "<u4").astype(np.int64)
        big = comp >> 30
        xyzw = np.zeros((n, 4))
        rem = comp.copy()
        for i in (3, 2, 1, 0):
            use = big != i
            mag = (rem & 511).astype(np.float64)
            neg = (rem >> 9) & 1
            val = _SQRT1_2 * mag / 511 * np.where(neg == 1, -1, 1)
            xyzw[:, i] = np.where(use, val, 0.0)
            rem = np.where(use, rem >> 10, rem)
        xyzw[np.arange(n), big] = np.sqrt(np.maximum(0, 1 - (xyzw ** 2).sum(1)))
        q = xyzw[:, [3, 0, 1, 2]]
    k = (degree + 1) ** 2
    sh = np.zeros((n, k, 3))
    sh[:, 0] = dc
    if degree > 0:
        sh[:, 1:] = (np.frombuffer(parts[5], np.uint8).reshape(n, k - 1, 3).astype(np.float64) - 128) / 128
    return Splats(means, normalized_quats(q).astype(np.float32), ls.astype(np.float32),
                  logit(np.clip(a, 0.5 / 255, 1 - 0.5 / 255)), sh.astype(np.float32))


def _sizes(n: int, degree: int, version: int):
    sizes = [n * (6 if version == 1 else 9), n, 3 * n, 3 * n, n * (4 if version >= 3 else 3)]
    if degree > 0:
        sizes.append(n * _sh_count(degree))
    return sizes


def decode(data: bytes, where: str = ".spz") -> Splats:
    """SPZ bytes (any version 1-4) -> Splats; FormatError for foreign or truncated data."""
    if len(data) == 0:
        raise FormatError(f"{where}: empty file; not an SPZ file")
    if data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            raise FormatError(f"{where}: the gzip stream is damaged or cut short ({e}); the file is truncated") from None
        if len(raw) < 16:
            raise FormatError(f"{where}: {len(raw)} bytes after gzip, less than the 16-byte SPZ header; truncated")
        magic, version, n, degree, frac, flags, _ = struct.unpack_from("<IIIBBBB", raw)
        if magic != MAGIC:
            raise FormatError(f"{where}: a gzip file but not SPZ (no NGSP magic)")
        if version not in (1, 2, 3):
            raise FormatError(f"{where}: gzip SPZ version {version}; versions 1-3 are gzip, 4 is NGSP+zstd")
        if degree > 3:
            raise FormatError(f"{where}: SH degree {degree} > 3 is not supported in gzip SPZ")
        sizes = _sizes(n, degree, version)
        if 16 + sum(sizes) > len(raw):
            raise FormatError(f"{where}: SPZ v{version} header says {n} Gaussians ({16 + sum(sizes)} bytes) but "
                              f"the data holds {len(raw)}; the file is truncated")
        parts, off = [], 16
        for sz in sizes:
            parts.append(raw[off:off + sz])
            off += sz
        return _unpack(n, degree, frac, version, parts, where)
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == MAGIC:
        if len(data) < 32:
            raise FormatError(f"{where}: SPZ v4 header is 32 bytes, the file has {len(data)}; truncated")
        magic, version, n, degree, frac, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", data)
        if version != 4:
            raise FormatError(f"{where}: plaintext SPZ version {version}; only version 4 is plaintext")
        if degree > 3:
            raise FormatError(f"{where}: SH degree {degree}: scene4d reads SPZ SH up to degree 3")
        sizes = _sizes(n, degree, 4)
        if nstreams != len(sizes):
            raise FormatError(f"{where}: SPZ v4 has {nstreams} streams, expected {len(sizes)} for SH degree {degree}")
        if toc + 16 * nstreams > len(data):
            raise FormatError(f"{where}: SPZ v4 table of contents lies past the end of the file; truncated")
        zstd = _zstd()
        dctx = zstd.ZstdDecompressor()
        off = toc + 16 * nstreams
        parts = []
        for i, sz in enumerate(sizes):
            c, u = struct.unpack_from("<QQ", data, toc + 16 * i)
            if u != sz:
                raise FormatError(f"{where}: SPZ v4 stream {i} holds {u} bytes, expected {sz}")
            if off + c > len(data):
                raise FormatError(f"{where}: SPZ v4 stream {i} runs past the end of the file; truncated")
            try:
                parts.append(dctx.decompress(data[off:off + c], max_output_size=u))
            except zstd.ZstdError as e:
                raise FormatError(f"{where}: SPZ v4 stream {i} does not decompress ({e}); damaged") from None
            if len(parts[-1]) != u:
                raise FormatError(f"{where}: SPZ v4 stream {i} decompressed to {len(parts[-1])} bytes, expected {u}")
            off += c
        return _unpack(n, degree, frac, 4, parts, where)
    raise FormatError(f"{where}: not an SPZ file (neither gzip nor an NGSP header)")


def version_of(data: bytes) -> int:
    """The SPZ version of ``data`` (header only)."""
    if data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=__import__("io").BytesIO(data)) as f:
            return struct.unpack("<II", f.read(8))[1]
    return struct.unpack_from("<II", data)[1]

"""glTF binary (``.glb``) with ``KHR_gaussian_splatting`` (the Khronos release candidate).

One node, one mesh, one POINTS primitive (``mode 0``) whose attributes are float accessors:

=============================================  =====  =====================================
attribute                                      type   value
=============================================  =====  =====================================
POSITION                                       VEC3   centre (with min/max)
KHR_gaussian_splatting:ROTATION                VEC4   unit quaternion, **x y z w**
KHR_gaussian_splatting:SCALE                   VEC3   linear standard deviations
KHR_gaussian_splatting:OPACITY                 SCALAR in [0, 1]
KHR_gaussian_splatting:SH_DEGREE_0_COEF_0      VEC3   raw DC coefficient (rgb)
KHR_gaussian_splatting:SH_DEGREE_l_COEF_n      VEC3   band l, n = 0..2l (m = -l..l), rgb
COLOR_0                                        VEC4   fallback: clamp(0.5 + SH_C0 dc), opacity
=============================================  =====  =====================================

The SH basis and signs are graphdeco's, so coefficients copy unchanged (per coefficient, rgb).
The extension object says ``kernel: ellipse`` and ``colorSpace: srgb_rec709_display``. The node
transform stays identity: frame changes are baked into the data (SH bands rotated too).
The draft before the release candidate stored SCALE as a logarithm; the candidate stores it
linear, as written here.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from renderers.gaussians import SH_C0

from . import FormatError, Splats, logit, normalized_quats, sigmoid

EXT = "KHR_gaussian_splatting"
_FLOAT, _ARRAY_BUFFER = 5126, 34962
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_CTYPES = {5120: ("i1", 127.0), 5121: ("u1", 255.0), 5122: ("<i2", 32767.0), 5123: ("<u2", 65535.0),
           5125: ("<u4", None), 5126: ("<f4", None)}


def sh_attribute_names(degree: int) -> list:
    """Attribute names of SH coefficients 0..(degree+1)^2-1 in 3DGS order."""
    return [f"{EXT}:SH_DEGREE_{l}_COEF_{n}" for l in range(degree + 1) for n in range(2 * l + 1)]


def encode(s: Splats, *, color_fallback: bool = True, generator: str = "scene4d", extras: dict = None) -> bytes:
    """Splats -> ``.glb`` bytes."""
    n = len(s)
    cols = {
        "POSITION": np.asarray(s.means, np.float32),
        f"{EXT}:ROTATION": normalized_quats(s.quats)[:, [1, 2, 3, 0]].astype(np.float32),
        f"{EXT}:SCALE": np.exp(np.asarray(s.log_scales, np.float64)).astype(np.float32),
        f"{EXT}:OPACITY": sigmoid(s.opacity_logits).astype(np.float32),
    }
    for k, name in enumerate(sh_attribute_names(s.sh_degree)):
        cols[name] = np.ascontiguousarray(s.sh[:, k], dtype=np.float32)
    if color_fallback:
        rgb = np.clip(0.5 + SH_C0 * np.asarray(s.sh[:, 0], np.float64), 0, 1)
        cols["COLOR_0"] = np.concatenate([rgb, sigmoid(s.opacity_logits)[:, None]], 1).astype(np.float32)
    views, accessors, attrs, blobs, off = [], [], {}, [], 0
    for i, (name, a) in enumerate(cols.items()):
        a = a.reshape(n, -1)
        b = a.astype("<f4").tobytes()
        views.append({"buffer": 0, "byteOffset": off, "byteLength": len(b), "target": _ARRAY_BUFFER})
        acc = {"bufferView": i, "componentType": _FLOAT, "count": n,
               "type": {1: "SCALAR", 3: "VEC3", 4: "VEC4"}[a.shape[1]]}
        if name == "POSITION":
            acc["min"] = [float(v) for v in a.min(0)] if n else [0.0, 0.0, 0.0]
            acc["max"] = [float(v) for v in a.max(0)] if n else [0.0, 0.0, 0.0]
        accessors.append(acc)
        attrs[name] = i
        blobs.append(b)
        off += len(b)  # every blob is a multiple of 4 bytes
    doc = {
        "asset": {"version": "2.0", "generator": generator, **({"extras": extras} if extras else {})},
        "extensionsUsed": [EXT],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "gaussians"}],
        "meshes": [{"name": "gaussians", "primitives": [{
            "attributes": attrs, "mode": 0,
            "extensions": {EXT: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display",
                                 "projection": "perspective", "sortingMethod": "cameraDistance"}},
        }]}],
        "buffers": [{"byteLength": off}],
        "bufferViews": views,
        "accessors": accessors,
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + off
    return b"".join([struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(js), 0x4E4F534A), js,
                     struct.pack("<II", off, 0x004E4942), *blobs])


def read_glb(data: bytes, where: str = ".glb"):
    """(json dict, binary chunk bytes) of a glb; FormatError for anything else."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise FormatError(f"{where}: not a binary glTF file (no 'glTF' magic)")
    _, version, length = struct.unpack_from("<III", data)
    if version != 2:
        raise FormatError(f"{where}: glTF container version {version}; only 2 is read")
    if length > len(data):
        raise FormatError(f"{where}: header says {length} bytes, the file has {len(data)}; truncated")
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != 0x4E4F534A or 20 + jlen > len(data):
        raise FormatError(f"{where}: the JSON chunk is missing or cut short; truncated or damaged")
    try:
        doc = json.loads(data[20:20 + jlen])
    except ValueError as e:
        raise FormatError(f"{where}: the JSON chunk is not valid JSON ({e})") from None
    off = 20 + jlen
    binary = b""
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype == 0x004E4942:
            binary = data[off + 8:off + 8 + blen]
            if len(binary) < blen:
                raise FormatError(f"{where}: the binary chunk is cut short; the file is truncated")
    return doc, binary


def _accessor(doc: dict, binary: bytes, idx: int, where: str) -> np.ndarray:
    try:
        acc = doc["accessors"][idx]
        view = doc["bufferViews"][acc["bufferView"]]
        dt, norm = _CTYPES[acc["componentType"]]
        ncomp = _NCOMP[acc["type"]]
    except (KeyError, IndexError, TypeError):
        raise FormatError(f"{where}: accessor {idx} is malformed or uses an unsupported type") from None
    if view.get("buffer", 0) != 0:
        raise FormatError(f"{where}: data in external buffers is not read; use a self-contained .glb")
    count = acc["count"]
    item = np.dtype(dt).itemsize * ncomp
    stride = view.get("byteStride") or item
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    end = start + stride * (count - 1) + item if count else start
    if end > len(binary):
        raise FormatError(f"{where}: accessor {idx} reaches past the binary chunk; truncated")
    raw = np.frombuffer(binary, np.uint8, count=end - start, offset=start) if count else np.zeros(0, np.uint8)
    if stride == item:
        a = np.frombuffer(raw.tobytes(), dt).reshape(count, ncomp)
    else:
        rows = np.lib.stride_tricks.as_strided(raw, (count, item), (stride, 1))
        a = np.frombuffer(rows.tobytes(), dt).reshape(count, ncomp)
    a = a.astype(np.float64)
    if acc.get("normalized") and norm:
        a = np.maximum(a / norm, -1.0)
    return a


def decode(data: bytes, where: str = ".glb") -> Splats:
    """The first ``KHR_gaussian_splatting`` primitive of a glb -> Splats."""
    doc, binary = read_glb(data, where)
    prim = None
    for mi, mesh in enumerate(doc.get("meshes", [])):
        for p in mesh.get("primitives", []):
            if EXT in p.get("extensions", {}):
                prim = p
                break
        if prim is not None:
            break
    if prim is None:
        raise FormatError(f"{where}: no primitive with {EXT}; a glTF file without Gaussian splats "
                          "(a mesh or a point cloud) cannot become a scene")
    for node in doc.get("nodes", []):
        if node.get("mesh") == mi and any(k in node for k in ("matrix", "rotation", "scale", "translation")):
            raise FormatError(f"{where}: the splat node carries a transform, which import does not apply; "
                              "bake it into the data first")
    at = prim.get("attributes", {})
    need = ["POSITION", f"{EXT}:ROTATION", f"{EXT}:SCALE", f"{EXT}:OPACITY", f"{EXT}:SH_DEGREE_0_COEF_0"]
    missing = [k for k in need if k not in at]
    if missing:
        raise FormatError(f"{where}: {EXT} primitive lacks {missing}")
    get = lambda k: _accessor(doc, binary, at[k], where)  # noqa: E731
    means, rot, scale, opac = get(need[0]), get(need[1]), get(need[2]), get(need[3])[:, 0]
    degree = 0
    while degree < 3 and all(k in at for k in sh_attribute_names(degree + 1)[(degree + 1) ** 2:]):
        degree += 1
    sh = np.stack([get(k) for k in sh_attribute_names(degree)], 1)
    if (scale <= 0).any():
        raise FormatError(f"{where}: {EXT}:SCALE has values <= 0; a linear scale must be positive "
                          "(a log-scale file from the pre-release draft?)")
    return Splats(means.astype(np.float32), normalized_quats(rot[:, [3, 0, 1, 2]]).astype(np.float32),
                  np.log(scale).astype(np.float32), logit(np.clip(opac, 1e-6, 1 - 1e-6)),
                  sh.astype(np.float32))

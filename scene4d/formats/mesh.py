"""Triangle meshes from a signed distance grid, their clean-up, and mesh files (glb, obj, ply).

No extra dependency: the iso-surface is extracted by **naive surface nets** (one vertex per grid
cell the surface crosses, at the mean of its edge crossings; one quad per crossed grid edge),
which is watertight where the grid is observed and needs no case tables; components are found
by union-find with pointer jumping; decimation is vertex clustering on a coarser grid (the
cell size found by bisection to meet a face budget). All numpy, vectorised.

Shapes: V vertices (V,3) float, F faces (F,3) int (counter-clockwise seen from outside),
colours (V,3) in [0,1]. The grid convention: ``sdf[i,j,k]`` at ``origin + voxel * (i,j,k)``,
positive outside (free space), negative inside.
"""

from __future__ import annotations

import json
import struct
from typing import Optional, Tuple

import numpy as np

from . import FormatError

# the 8 corners of a cell and its 12 edges (pairs of corners)
_CORNERS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]])
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(_CORNERS[a] - _CORNERS[b]).sum() == 1]


def surface_nets(sdf: np.ndarray, observed: np.ndarray, origin, voxel: float) -> Tuple[np.ndarray, np.ndarray]:
    """(vertices (V,3), faces (F,3)) of the zero level of ``sdf`` where all 8 cell corners are observed."""
    X, Y, Z = sdf.shape
    if min(X, Y, Z) < 2:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    c = [sdf[i:X - 1 + i, j:Y - 1 + j, k:Z - 1 + k] for i, j, k in _CORNERS]
    ok = np.ones(c[0].shape, bool)
    for i, j, k in _CORNERS:
        ok &= observed[i:X - 1 + i, j:Y - 1 + j, k:Z - 1 + k]
    inside = [v < 0 for v in c]
    any_in = np.logical_or.reduce(inside)
    all_in = np.logical_and.reduce(inside)
    active = ok & any_in & ~all_in
    idx = np.argwhere(active)  # (V, 3) cell indices
    vid = np.full(active.shape, -1, np.int64)
    vid[tuple(idx.T)] = np.arange(len(idx))
    acc = np.zeros((len(idx), 3))
    cnt = np.zeros(len(idx))
    sel = tuple(idx.T)
    for a, b in _EDGES:
        fa, fb = c[a][sel], c[b][sel]
        cross = (fa < 0) != (fb < 0)
        t = np.where(cross, fa / np.where(cross, fa - fb, 1.0), 0.0)
        p = _CORNERS[a] + t[:, None] * (_CORNERS[b] - _CORNERS[a])
        acc += np.where(cross[:, None], p, 0.0)
        cnt += cross
    verts = np.asarray(origin, np.float64) + voxel * (idx + acc / np.maximum(cnt, 1)[:, None])
    faces = []
    for axis in range(3):
        # grid edges from voxel p to p + e_axis; the 4 cells around it differ in the other two axes
        u, w = [a for a in range(3) if a != axis]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        f0, f1 = sdf[tuple(lo)], sdf[tuple(hi)]
        o0, o1 = observed[tuple(lo)], observed[tuple(hi)]
        crossing = ((f0 < 0) != (f1 < 0)) & o0 & o1
        e = np.argwhere(crossing)
        e = e[(e[:, u] >= 1) & (e[:, w] >= 1) & (e[:, u] <= active.shape[u] - 1) & (e[:, w] <= active.shape[w] - 1)]
        if len(e) == 0:
            continue

        def cell(du, dw):
            q = e.copy()
            q[:, u] -= du
            q[:, w] -= dw
            return vid[tuple(q.T)]

        a, b, cc, d = cell(1, 1), cell(0, 1), cell(0, 0), cell(1, 0)
        good = (a >= 0) & (b >= 0) & (cc >= 0) & (d >= 0)
        a, b, cc, d, e = a[good], b[good], cc[good], d[good], e[good]
        # orientation: outward normals; the edge goes from inside to outside or back
        flip = sdf[tuple(e.T)] >= 0
        if (axis == 1):  # (u, w) = (x, z) is a left-handed pair around +y
            flip = ~flip
        q1 = np.stack([a, b, cc], 1)
        q2 = np.stack([a, cc, d], 1)
        q1[flip] = q1[flip][:, ::-1]
        q2[flip] = q2[flip][:, ::-1]
        faces += [q1, q2]
    faces = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    return verts, faces


def _components(n: int, faces: np.ndarray) -> np.ndarray:
    """Component label of each vertex (union-find by min-label propagation with pointer jumping)."""
    lab = np.arange(n)
    if len(faces) == 0:
        return lab
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    for _ in range(1000):
        m = np.minimum(lab[e[:, 0]], lab[e[:, 1]])
        new = lab.copy()
        np.minimum.at(new, e[:, 0], m)
        np.minimum.at(new, e[:, 1], m)
        new = new[new]
        new = new[new]
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


def compact(verts: np.ndarray, faces: np.ndarray, colors: Optional[np.ndarray] = None):
    """Drop unused vertices (and renumber faces)."""
    used = np.zeros(len(verts), bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return verts[used], remap[faces], None if colors is None else colors[used]


def keep_large_components(verts, faces, colors=None, min_fraction: float = 0.01):
    """Keep the connected components holding at least ``min_fraction`` of the faces (floaters go)."""
    if len(faces) == 0:
        return verts, faces, colors
    lab = _components(len(verts), faces)
    fl = lab[faces[:, 0]]
    uniq, counts = np.unique(fl, return_counts=True)
    big = uniq[counts >= min_fraction * len(faces)]
    keep = np.isin(fl, big)
    return compact(verts, faces[keep], colors)


def _cluster(verts, faces, colors, cell: float):
    key = np.floor(verts / cell).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    n = inv.max() + 1
    cnt = np.bincount(inv, minlength=n).astype(np.float64)
    v = np.stack([np.bincount(inv, verts[:, i], n) for i in range(3)], 1) / cnt[:, None]
    col = None if colors is None else np.stack([np.bincount(inv, colors[:, i], n) for i in range(3)], 1) / cnt[:, None]
    f = inv[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    f = np.unique(f, axis=0) if len(f) else f
    return compact(v, f, col)


def decimate(verts, faces, colors=None, target_faces: int = 0):
    """Vertex clustering to at most about ``target_faces`` faces (bisection on the cell size)."""
    if target_faces <= 0 or len(faces) <= target_faces:
        return verts, faces, colors
    ext = float(np.ptp(verts, axis=0).max()) or 1.0
    lo, hi = 0.0, ext / 4
    best = _cluster(verts, faces, colors, hi)
    for _ in range(14):
        mid = (lo + hi) / 2
        out = _cluster(verts, faces, colors, mid)
        if len(out[1]) <= target_faces:
            best, hi = out, mid
        else:
            lo = mid
    return best


def vertex_normals(verts, faces) -> np.ndarray:
    n = np.zeros_like(verts)
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    for i in range(3):
        np.add.at(n, faces[:, i], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(ln > 1e-20, n / np.maximum(ln, 1e-30), np.array([0.0, 0.0, 1.0]))


# --------------------------------------------------------------------------- files
def glb_bytes(verts, faces, colors, generator: str = "scene4d") -> bytes:
    """A glTF binary: one mesh, one triangle primitive with POSITION, NORMAL, COLOR_0 (u8 normalised), u32 indices."""
    v = np.ascontiguousarray(verts, "<f4")
    nrm = vertex_normals(verts.astype(np.float64), faces).astype("<f4")
    col = np.concatenate([np.clip(np.floor(colors * 255 + 0.5), 0, 255), np.full((len(v), 1), 255)], 1).astype(np.uint8)
    idx = np.ascontiguousarray(faces, "<u4")
    blobs = [(v.tobytes(), 34962), (nrm.tobytes(), 34962), (col.tobytes(), 34962), (idx.tobytes(), 34963)]
    views, off, data = [], 0, []
    for b, target in blobs:
        views.append({"buffer": 0, "byteOffset": off, "byteLength": len(b), "target": target})
        pad = b + bytes(-len(b) % 4)
        data.append(pad)
        off += len(pad)
    acc = [
        {"bufferView": 0, "componentType": 5126, "count": len(v), "type": "VEC3",
         "min": [float(x) for x in v.min(0)], "max": [float(x) for x in v.max(0)]},
        {"bufferView": 1, "componentType": 5126, "count": len(v), "type": "VEC3"},
        {"bufferView": 2, "componentType": 5121, "normalized": True, "count": len(v), "type": "VEC4"},
        {"bufferView": 3, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"},
    ]
    doc = {"asset": {"version": "2.0", "generator": generator}, "scene": 0, "scenes": [{"nodes": [0]}],
           "nodes": [{"mesh": 0, "name": "surface"}],
           "meshes": [{"name": "surface", "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1, "COLOR_0": 2},
                                                          "indices": 3, "mode": 4, "material": 0}]}],
           "materials": [{"name": "vertex colours", "pbrMetallicRoughness": {"metallicFactor": 0.0,
                                                                             "roughnessFactor": 1.0}}],
           "buffers": [{"byteLength": off}], "bufferViews": views, "accessors": acc}
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + off
    return b"".join([struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(js), 0x4E4F534A), js,
                     struct.pack("<II", off, 0x004E4942), *data])


class GlbEditor:
    """A glb made by :func:`glb_bytes`, opened to add accessors, nodes, skins and animations:
    ``e = GlbEditor(glb_bytes(...)); i = e.add(array, {accessor fields}); e.doc[...] = ...;
    e.to_bytes()``. Every added buffer view is 4-byte aligned."""

    def __init__(self, data: bytes):
        jlen = struct.unpack_from("<I", data, 12)[0]
        self.doc = json.loads(data[20:20 + jlen])
        blen = struct.unpack_from("<I", data, 20 + jlen)[0]
        self.binary = bytearray(data[28 + jlen:28 + jlen + blen])

    def add(self, arr: np.ndarray, acc: dict, target: Optional[int] = None) -> int:
        """Append ``arr``'s bytes as a buffer view and ``acc`` (its view filled in) as an accessor;
        returns the accessor's index."""
        b = np.ascontiguousarray(arr).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.binary), "byteLength": len(b)}
        if target:
            view["target"] = target
        self.doc["bufferViews"].append(view)
        self.binary.extend(b + bytes(-len(b) % 4))
        acc["bufferView"] = len(self.doc["bufferViews"]) - 1
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def to_bytes(self) -> bytes:
        self.doc["buffers"] = [{"byteLength": len(self.binary)}]
        js = json.dumps(self.doc, separators=(",", ":")).encode()
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + len(self.binary)
        return b"".join([struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(js), 0x4E4F534A), js,
                         struct.pack("<II", len(self.binary), 0x004E4942), bytes(self.binary)])


def obj_bytes(verts, faces, colors) -> bytes:
    """Wavefront OBJ with per-vertex colours (``v x y z r g b``, read by Blender, MeshLab, trimesh)."""
    vc = np.concatenate([verts, colors], 1)
    lines = ["# scene4d mesh"] + [("v %.6f %.6f %.6f %.4f %.4f %.4f" % tuple(r)) for r in vc.tolist()]
    lines += ["f %d %d %d" % tuple(r) for r in (faces + 1).tolist()]
    return ("\n".join(lines) + "\n").encode()


def ply_elements(verts, faces, colors) -> dict:
    v = np.empty(len(verts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                    ("blue", "u1")])
    v["x"], v["y"], v["z"] = np.asarray(verts, np.float32).T
    c = np.clip(np.floor(colors * 255 + 0.5), 0, 255).astype(np.uint8)
    v["red"], v["green"], v["blue"] = c.T
    f = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
    f["vertex_indices"] = faces
    return {"vertex": v, "face": f}


def check_mesh(verts, faces, where: str) -> None:
    if len(faces) == 0:
        raise FormatError(f"{where}: the surface extraction found no surface (nothing opaque in view?)")

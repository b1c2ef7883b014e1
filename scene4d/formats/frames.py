"""World frames of the tools splats go to, and the change from scene4d's frame to each.

scene4d's world is right-handed and records its up axis in ``scene.json`` (``"up"``, default
``"+z"``, as Blender and D-NeRF captures). A frame change is an orthogonal 3x3 matrix ``F``
(``det F = -1`` for a mirror) applied to the whole scene:

* positions ``x' = F x``;
* orientations: the covariance ``R S S R^T`` becomes ``F R S S R^T F^T``; with ``P = det(F) F``
  (a proper rotation in 3D) that is ``(P R) S S (P R)^T``, so ``q' = q_P * q`` for mirrors too;
* spherical harmonics: band ``l`` mixes only within itself, ``Y_l(F d) = A_l Y_l(d)`` with
  ``A_l`` orthogonal, and colours must satisfy ``c'(F d) = c(d)``, so ``coef'_l = A_l coef_l``.
  ``A_l`` is solved by least squares on 64 directions (exact to float64 rounding; the tests
  check it by evaluating colours, not by formula).

Targets, the frame each file is written in (research/export.md section 7.3):

========  ==========================================  ===========
target    written frame                                handedness
========  ==========================================  ===========
generic   up -> -Y (COLMAP/3DGS "RDF": SuperSplat,     right
          splat-transform, Spark, Unreal plug-ins)
gltf      up -> +Y, front -> +Z (glTF's own frame)     right
unity     the gltf frame with X mirrored (Unity is      left
          left-handed, Y up; aras-p's importer reads
          raw coordinates)
blender   up -> +Z                                     right
========  ==========================================  ===========

"Front" of a Z-up scene is its -Y side (Blender's front view looks along +Y), so Blender's own
glTF exporter and ours agree: ``(x, y, z) -> (x, z, -y)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Tuple

import numpy as np

from . import Splats

UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")
TARGETS = ("generic", "unity", "blender", "gltf")


def _rx(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.round(np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), 15)


def _ry(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.round(np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]), 15)


# rotation taking each up axis to +Z (the horizontal axes follow the smallest such rotation)
_UP_TO_Z = {"+z": np.eye(3), "-z": _rx(180), "+y": _rx(90), "-y": _rx(-90), "+x": _ry(-90), "-x": _ry(90)}
# from a Z-up right-handed frame to each target's
_FROM_Z_UP = {
    "generic": _rx(90),                                # (x, y, z) -> (x, -z, y): up -> -Y
    "gltf": _rx(-90),                                  # (x, y, z) -> (x, z, -y): up -> +Y, front -> +Z
    "unity": np.diag([-1.0, 1.0, 1.0]) @ _rx(-90),     # glTF frame, X mirrored: left-handed, Y up
    "blender": np.eye(3),
}
TARGET_UP = {"generic": "-y", "gltf": "+y", "unity": "+y", "blender": "+z"}


def parse_up(spec: str) -> str:
    """'+z', 'z', '-Y' ... -> one of :data:`UP_AXES`; ValueError otherwise."""
    s = str(spec).strip().lower()
    if s in ("x", "y", "z"):
        s = "+" + s
    if s not in UP_AXES:
        raise ValueError(f"up axis must be one of {', '.join(UP_AXES)}, got {spec!r}")
    return s


def up_to_z(up: str) -> np.ndarray:
    """(3,3) rotation taking the axis ``up`` to +Z."""
    return _UP_TO_Z[parse_up(up)].copy()


def frame_change(scene_up: str, target: str) -> np.ndarray:
    """(3,3) orthogonal F from a scene whose up axis is ``scene_up`` to ``target``'s frame."""
    if target not in _FROM_Z_UP:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return _FROM_Z_UP[target] @ up_to_z(scene_up)


def axis_name(v: np.ndarray) -> str:
    """The signed axis a (near-)axis-aligned vector points along: (0, -1, 0) -> '-y'."""
    i = int(np.argmax(np.abs(v)))
    return ("+" if v[i] > 0 else "-") + "xyz"[i]


def handedness(F: np.ndarray) -> str:
    return "right" if np.linalg.det(F) > 0 else "left"


# --------------------------------------------------------------------------- quaternions
def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """One (3,3) rotation -> unit quaternion (w, x, y, z), w >= 0 (Shepperd's method)."""
    R = np.asarray(R, np.float64)
    tr = np.trace(R)
    cands = [tr, R[0, 0], R[1, 1], R[2, 2]]
    i = int(np.argmax(cands))
    if i == 0:
        w = np.sqrt(1 + tr) / 2
        q = [w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)]
    elif i == 1:
        x = np.sqrt(1 + 2 * R[0, 0] - tr) / 2
        q = [(R[2, 1] - R[1, 2]) / (4 * x), x, (R[0, 1] + R[1, 0]) / (4 * x), (R[0, 2] + R[2, 0]) / (4 * x)]
    elif i == 2:
        y = np.sqrt(1 + 2 * R[1, 1] - tr) / 2
        q = [(R[0, 2] - R[2, 0]) / (4 * y), (R[0, 1] + R[1, 0]) / (4 * y), y, (R[1, 2] + R[2, 1]) / (4 * y)]
    else:
        z = np.sqrt(1 + 2 * R[2, 2] - tr) / 2
        q = [(R[1, 0] - R[0, 1]) / (4 * z), (R[0, 2] + R[2, 0]) / (4 * z), (R[1, 2] + R[2, 1]) / (4 * z), z]
    q = np.array(q)
    return q if q[0] >= 0 else -q


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions, broadcast over leading dims."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], -1)


# --------------------------------------------------------------------------- SH bands
def _sh_basis(degree: int, d: np.ndarray) -> np.ndarray:
    import torch

    from renderers.gaussians import sh_basis

    return sh_basis(degree, torch.from_numpy(d)).numpy()


@lru_cache(maxsize=64)
def _band_matrices(F_key: Tuple[float, ...], degree: int) -> Tuple[np.ndarray, ...]:
    F = np.array(F_key).reshape(3, 3)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    Y, Yf = _sh_basis(degree, d), _sh_basis(degree, d @ F.T)
    out = []
    for l in range(1, degree + 1):
        s = slice(l * l, (l + 1) * (l + 1))
        # Yf[:, s] = Y[:, s] @ A^T  (rows are directions)
        At, *_ = np.linalg.lstsq(Y[:, s], Yf[:, s], rcond=None)
        out.append(At.T)
    return tuple(out)


def sh_band_matrices(F: np.ndarray, degree: int) -> List[np.ndarray]:
    """[A_1 .. A_degree]: ``Y_l(F d) = A_l Y_l(d)`` for the 3DGS real SH basis; rotate by ``A_l @ coef_l``."""
    return list(_band_matrices(tuple(np.asarray(F, np.float64).round(15).ravel()), degree))


def rotate_sh(sh: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(N,K,3) coefficients -> the coefficients whose colour at ``F d`` equals the old colour at ``d``."""
    k = sh.shape[1]
    degree = int(round(np.sqrt(k))) - 1
    out = np.array(sh, np.float64, copy=True)
    for l, A in enumerate(sh_band_matrices(F, degree), 1):
        s = slice(l * l, (l + 1) * (l + 1))
        out[:, s] = np.einsum("ij,njc->nic", A, out[:, s])
    return out


def transform_splats(s: Splats, F: np.ndarray) -> Splats:
    """Apply the orthogonal frame change ``F`` (3,3) to positions, orientations and SH bands.

    Quaternions are multiplied, not re-normalised, so their raw length survives; ``F = I`` returns
    the arrays unchanged (bit-exact).
    """
    F = np.asarray(F, np.float64)
    if not np.allclose(F @ F.T, np.eye(3), atol=1e-9):
        raise ValueError("a frame change must be orthogonal (a rotation, possibly with a mirror)")
    if np.array_equal(F, np.eye(3)):
        return s
    P = np.sign(np.linalg.det(F)) * F
    qP = rotmat_to_quat(P)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Splats(
        means=f32(np.asarray(s.means, np.float64) @ F.T),
        quats=f32(quat_mul(qP, np.asarray(s.quats, np.float64))),
        log_scales=s.log_scales,
        opacity_logits=s.opacity_logits,
        sh=f32(rotate_sh(s.sh, F)),
    )


def frame_matrix4(F: np.ndarray) -> list:
    """The 4x4 homogeneous form of F as nested lists (for the export record)."""
    M = np.eye(4)
    M[:3, :3] = F
    return [[float(v) + 0.0 for v in row] for row in M]


# --------------------------------------------------------------------------- the frame a file says it is in
FRAME_TAG = "scene4d-frame"


def frame_tag(target: str, scene_up: str) -> str:
    """What ply (a header comment) and glb (``asset.extras``) files carry when they are not in their
    format's usual frame: ``scene4d-frame target=unity up=+z`` (the target written for and the
    scene's up axis), so that import undoes the change without ``OUT.export.json``."""
    return f"{FRAME_TAG} target={target} up={parse_up(scene_up)}"


def parse_frame_tag(text: str):
    """(target, scene up) from :func:`frame_tag`'s text, or None."""
    parts = str(text).split()
    if not parts or parts[0] != FRAME_TAG:
        return None
    kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    try:
        target, up = kv["target"], parse_up(kv["up"])
    except (KeyError, ValueError):
        return None
    return (target, up) if target in TARGETS else None

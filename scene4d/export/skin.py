"""A skinned glTF mesh from motion nodes (``--format mesh-anim`` on a motion-nodes scene).

Motion nodes *are* linear blend skinning: node k moves a canonical point by the rigid map
``x -> R_k(t) x + p_k(t)`` and a Gaussian blends the maps with ``w = softmax_k(-|x - c_k|^2 / 2 r_k^2)``
(:class:`scene4d.deformation.MotionNodesField`). glTF skins blend ``J_k(t) IBM_k`` with per-vertex
weights, so each node becomes one joint:

* the mesh's ``POSITION`` holds each vertex's **canonical** position ``x`` (the bind pose);
* joint k rests at ``c_k`` (``IBM_k = translate(-c_k)``) and its animated global transform is
  ``translate(p_k(t) + R_k(t) c_k) * rotate(R_k(t))``, so ``J_k IBM_k x = R_k x + p_k`` exactly;
* joints are children of one untransformed ``joints`` root; the joint nodes' static TRS is the pose
  at the extraction time, so an importer that ignores the animation shows the extracted surface.

The surface is extracted at ``--time`` (as for ``--format mesh``); each vertex is pulled back to
canonical space by inverting the blend (Newton steps on ``LBS(x) = v``; the residual is
reported). A vertex belongs to the entity of its nearest opaque Gaussian and takes weights only
from that entity's nodes; an entity without a field gets one still joint.

The only approximations: dropping all but ``--influences`` (default 4) nodes per vertex, and glTF's
interpolation between keys (linear translation, slerp) instead of the field's screw motion. The
kept weights are refitted per vertex by least squares over the keys and the midpoints between
them (sum 1, non-negative), which removes most of the truncation error; the record reports the
error of a replay of the written float32 skin against the field at every key and midpoint, as a
fraction of the scene extent.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import numpy as np

from ..formats import mesh as geo
from ..formats.frames import rotmat_to_quat

MAX_JOINTS_U8 = 256


def skinnable(scene) -> Optional[str]:
    """None when the scene's motion is motion nodes only (a skin is exact), else why not."""
    from ..deformation import MotionNodesField

    fields = getattr(scene, "fields", None)
    if fields is None:
        return "the source has no deformation fields (a static file)"
    if getattr(scene, "temporal_opacity", False):
        return "Gaussians appear and leave (temporal opacity), which a skin cannot show"
    kinds = [type(f).__name__ for f in fields if f is not None]
    if not kinds:
        return "the scene has no motion"
    if any(not isinstance(f, MotionNodesField) for f in fields if f is not None):
        return f"its deformation is {', '.join(sorted(set(kinds)))}, not motion nodes"
    return None


# ----------------------------------------------------------------------------- the field in float64
def _poses(field, t: float) -> Tuple[np.ndarray, np.ndarray]:
    """(K, 3, 3) rotations and (K, 3) translations of the nodes' maps ``x -> R x + p`` at time t."""
    import roma
    import torch

    with torch.no_grad():
        q, p = field._poses(float(t))
        R = roma.unitquat_to_rotmat(q)
    return R.double().numpy(), p.double().numpy()


def _weights(field, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return field.weights(torch.from_numpy(x)).numpy()


def _lbs(W: np.ndarray, R: np.ndarray, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_k W[v, k] (R_k x_v + p_k): (V, 3)."""
    A = np.einsum("vk,kij->vij", W, R)
    return np.einsum("vij,vj->vi", A, x) + W @ p


def to_canonical(field, v: np.ndarray, t: float, iters: int = 30, start: Optional[np.ndarray] = None):
    """Canonical points x with LBS(x, t) = v: Newton steps with the blended rotation as Jacobian
    (weights vary slowly against it), from ``v`` and, where given, from ``start`` (e.g. the
    nearest Gaussian's own canonical offset), keeping each point's best iterate (a point where the
    blend folds or the nearest nodes switch may not converge). Returns (x, residuals (V,))."""
    R, p = _poses(field, t)

    def solve(x):
        best, best_r = x.copy(), np.full(len(x), np.inf)
        for _ in range(iters):
            W = _weights(field, x)
            r = _lbs(W, R, p, x) - v
            rn = np.linalg.norm(r, axis=1)
            better = rn < best_r
            best[better], best_r[better] = x[better], rn[better]
            A = np.einsum("vk,kij->vij", W, R)
            x = x - np.linalg.solve(A, r[..., None])[..., 0]
        return best, best_r

    x, res = solve(v.copy())
    if start is not None:
        x2, res2 = solve(start.copy())
        better = res2 < res
        x[better], res[better] = x2[better], res2[better]
    return x, res


# ----------------------------------------------------------------------------- weights
def fit_weights(x: np.ndarray, W: np.ndarray, poses: List[Tuple[np.ndarray, np.ndarray]], m: int,
                chunk: int = 4096) -> Tuple[np.ndarray, np.ndarray]:
    """The ``m`` nodes of largest weight per vertex and their weights: the truncated, renormalised
    softmax weights, or a least-squares refit over ``poses`` (sum 1, non-negative), whichever
    follows the full blend better at that vertex. Returns (indices (V, m), weights (V, m))."""
    V, K = W.shape
    m = min(m, K)
    idx = np.argsort(-W, axis=1)[:, :m]
    out = np.take_along_axis(W, idx, 1)
    out = out / out.sum(1, keepdims=True)
    if m == 1:
        return idx, out
    for s_ in range(0, V, chunk):
        sl = slice(s_, s_ + chunk)
        xs, Ws, ids = x[sl], W[sl], idx[sl]
        Y, X = [], []
        for R, p in poses:
            yk = np.einsum("kij,vj->vki", R, xs) + p[None]  # (v, K, 3): every node's map of every vertex
            X.append(np.einsum("vk,vki->vi", Ws, yk))
            Y.append(np.take_along_axis(yk, ids[..., None], 1))  # (v, m, 3)
        out[sl] = _ls_weights(np.stack(Y), np.stack(X), out[sl])
    return idx, out


def _kabsch(x: np.ndarray, y: np.ndarray, a: np.ndarray):
    """Per frame, the rigid (R, p) minimising sum_v a_v |R x_v + p - y_v|^2: x (V, 3), y (F, V, 3), a (V,)."""
    sa = max(float(a.sum()), 1e-30)
    cx = (a[:, None] * x).sum(0) / sa
    cy = np.einsum("v,fvi->fi", a, y) / sa
    H = np.einsum("v,vi,fvj->fij", a, x - cx, y - cy[:, None])
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.einsum("fji,fkj->fik", Vt, U)))
    D = np.tile(np.eye(3), (len(H), 1, 1))
    D[:, 2, 2] = d
    R = np.einsum("fji,fjk,flk->fil", Vt, D, U)  # V D U^T
    return R, cy - np.einsum("fij,j->fi", R, cx)


def refine_skin(x: np.ndarray, X: np.ndarray, idx: np.ndarray, w: np.ndarray, R: np.ndarray, p: np.ndarray,
                iters: int = 8):
    """Skinning decomposition (SSDR, Le & Deng 2012) started from the motion nodes: the joints'
    rigid transforms per key are re-solved (weighted Procrustes on what the other joints leave
    unexplained, one joint at a time) and the kept weights refitted, in turns, so that ``m``
    influences follow the field's trajectories ``X`` (F, V, 3) of canonical points ``x`` (V, 3).
    With all K influences the field is exact; with fewer, the joints stop being the nodes and
    become the best rigid parts the truncated skin can use. R (F, J, 3, 3), p (F, J, 3) are
    updated in place; returns the new weights."""
    V, m = idx.shape
    J = R.shape[1]
    for _ in range(iters):
        y = np.einsum("fvmij,vj->fvmi", R[:, idx], x) + p[:, idx]  # (F, V, m, 3)
        P = np.einsum("vm,fvmi->fvi", w, y)
        for j in range(J):
            v_, s_ = np.nonzero((idx == j) & (w > 1e-4))
            if len(v_) < 3:
                continue
            wj = w[v_, s_]
            own = wj[None, :, None] * y[:, v_, s_]
            q = X[:, v_] - P[:, v_] + own  # what joint j should explain, times its weight
            R[:, j], p[:, j] = _kabsch(x[v_], q / wj[None, :, None], wj ** 2)
            y_new = np.einsum("fij,vj->fvi", R[:, j], x[v_]) + p[:, j][:, None]
            P[:, v_] += wj[None, :, None] * y_new - own
            y[:, v_, s_] = y_new
        w = _ls_weights(y, X, w)
    return w


def _ls_weights(y: np.ndarray, X: np.ndarray, w_old: np.ndarray) -> np.ndarray:
    """Per vertex, weights over its m joints' predictions y (F, V, m, 3) fitting X (F, V, 3): least
    squares with sum 1, clipped to >= 0, kept only where they beat ``w_old``."""
    F, V, m, _ = y.shape
    if m == 1:
        return w_old
    Y = y.transpose(1, 0, 3, 2).reshape(V, F * 3, m)
    b0 = X.transpose(1, 0, 2).reshape(V, F * 3)
    D = Y[..., :m - 1] - Y[..., m - 1:]
    b = b0 - Y[..., m - 1]
    G = np.einsum("vfi,vfj->vij", D, D) + 1e-12 * np.eye(m - 1)
    h = np.einsum("vfi,vf->vi", D, b)
    w_ = np.linalg.solve(G, h[..., None])[..., 0]
    new = np.clip(np.concatenate([w_, 1 - w_.sum(1, keepdims=True)], 1), 0, None)
    new = new / np.maximum(new.sum(1, keepdims=True), 1e-12)
    err = lambda w: np.linalg.norm(np.einsum("vfm,vm->vf", Y, w) - b0, axis=1)  # noqa: E731
    better = err(new) < err(w_old)
    out = w_old.copy()
    out[better] = new[better]
    return out


def quantise_weights(w: np.ndarray) -> np.ndarray:
    """float32 weights >= 0 whose float32 sum is 1 to rounding (the largest absorbs the remainder)."""
    w32 = np.clip(w, 0, None).astype(np.float32)
    w32 /= w32.sum(1, keepdims=True, dtype=np.float32)
    big = np.argmax(w32, 1)
    rows = np.arange(len(w32))
    w32[rows, big] = 0
    w32[rows, big] = np.float32(1) - w32.sum(1, dtype=np.float32)
    return w32


# ----------------------------------------------------------------------------- replay (what an engine does)
def replay(positions, joints, weights, ibm, translations, rotations_xyzw) -> np.ndarray:
    """Skinned positions as a glTF player computes them: ``sum_i w_i J_{j_i} IBM_{j_i} x`` with joint
    globals ``translate(T) rotate(q)`` (children of an untransformed root). Arrays as decoded from
    the file: positions (V, 3), joints/weights (V, M), ibm (J, 4, 4), translations (J, 3), rotations
    (J, 4) xyzw."""
    from .animated import _rotmats  # wxyz, normalised

    R = _rotmats(np.asarray(rotations_xyzw, np.float64)[:, [3, 0, 1, 2]])
    Jm = np.zeros((len(R), 4, 4))
    Jm[:, :3, :3], Jm[:, :3, 3], Jm[:, 3, 3] = R, translations, 1.0
    S = Jm @ ibm  # (J, 4, 4) skin matrices
    M = np.einsum("vm,vmij->vij", weights, S[joints])
    return np.einsum("vij,vj->vi", M[:, :3, :3], positions) + M[:, :3, 3]


def screw_pivot(R: np.ndarray, p: np.ndarray, c: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """A joint's rest position: any point works at the keys (the joint's map is the same rigid
    motion), but between keys a player interpolates the joint's *position* linearly and its
    rotation by slerp. That is the field's own screw motion exactly when the joint sits on the
    screw axis of the step, so the pivot is the point whose positions over the keys lie closest
    to the steps' axes (least squares, each step weighted by its squared angle; a little pull
    towards the node's centre ``c`` where nothing turns). R (F, 3, 3), p (F, 3)."""
    A = ridge * np.eye(3)
    b = ridge * np.asarray(c, np.float64)
    for i in range(len(R) - 1):
        Rr = R[i + 1] @ R[i].T  # the step's motion, in the world: y -> Rr y + tr
        tr = p[i + 1] - Rr @ p[i]
        cos = np.clip((np.trace(Rr) - 1) / 2, -1, 1)
        theta = float(np.arccos(cos))
        if theta < 1e-6:
            continue
        w_axis = np.array([Rr[2, 1] - Rr[1, 2], Rr[0, 2] - Rr[2, 0], Rr[1, 0] - Rr[0, 1]])
        n = np.linalg.norm(w_axis)
        if n < 1e-12:  # a half turn: the axis is the eigenvector of eigenvalue 1
            vals, vecs = np.linalg.eigh((Rr + Rr.T) / 2)
            w_axis = vecs[:, np.argmax(vals)]
        else:
            w_axis = w_axis / n
        Pp = np.eye(3) - np.outer(w_axis, w_axis)
        a = np.linalg.lstsq(np.eye(3) - Rr, Pp @ tr, rcond=None)[0]  # a point on the axis
        M = Pp @ R[i]  # distance of the joint's position R_i c' + p_i from that axis, in c'
        wgt = theta ** 2
        A += wgt * M.T @ M
        b += wgt * M.T @ (Pp @ (a - p[i]))
    return np.linalg.solve(A, b)


# ----------------------------------------------------------------------------- the file
def _slerp_keys(q: np.ndarray) -> np.ndarray:
    """Keys (F, 4) with consecutive dot products >= 0 (slerp then takes the short way)."""
    q = q.copy()
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q


def glb_bytes(verts, faces, colors, joints, weights, ibm, rest_T, rest_q, key_T, key_q, seconds,
              animated: List[bool]) -> bytes:
    """A glb: the mesh node (skinned, untransformed, a scene root), a ``joints`` root with one child
    per joint, the skin, and an animation of every moving joint's translation and rotation.
    joints/weights (V, M) with M a multiple of 4 (JOINTS_n / WEIGHTS_n sets); rest_* (J, ...);
    key_* (F, J, ...)."""
    e = geo.GlbEditor(geo.glb_bytes(verts, faces, colors))
    doc, add = e.doc, e.add
    J = len(ibm)

    prim = doc["meshes"][0]["primitives"][0]
    jt, jct = ("<u1", 5121) if J <= MAX_JOINTS_U8 else ("<u2", 5123)
    for s in range(joints.shape[1] // 4):
        cols = slice(4 * s, 4 * s + 4)
        prim["attributes"][f"JOINTS_{s}"] = add(joints[:, cols].astype(jt), {"componentType": jct, "count": len(joints),
                                                                              "type": "VEC4"}, 34962)
        prim["attributes"][f"WEIGHTS_{s}"] = add(weights[:, cols].astype("<f4"), {"componentType": 5126,
                                                                                   "count": len(joints), "type": "VEC4"}, 34962)
    ibm_i = add(np.ascontiguousarray(ibm.transpose(0, 2, 1)).astype("<f4"),  # column-major
                {"componentType": 5126, "count": J, "type": "MAT4"})
    mesh_node = {"mesh": 0, "skin": 0, "name": "surface"}
    root = {"name": "joints", "children": list(range(2, 2 + J))}
    joint_nodes = [{"name": f"node_{j}", "translation": [float(v) for v in rest_T[j].astype(np.float32)],
                    "rotation": [float(v) for v in rest_q[j].astype(np.float32)]} for j in range(J)]
    doc["nodes"] = [mesh_node, root] + joint_nodes
    doc["scenes"] = [{"nodes": [0, 1]}]
    doc["skins"] = [{"name": "motion nodes", "inverseBindMatrices": ibm_i, "joints": list(range(2, 2 + J)),
                     "skeleton": 1}]
    t = np.asarray(seconds, "<f4")
    ti = add(t, {"componentType": 5126, "count": len(t), "type": "SCALAR",
                 "min": [float(t.min())], "max": [float(t.max())]})
    samplers, channels = [], []
    for j in range(J):
        if not animated[j]:
            continue
        for path, arr, typ in (("translation", key_T[:, j], "VEC3"), ("rotation", key_q[:, j], "VEC4")):
            oi = add(np.ascontiguousarray(arr, "<f4"), {"componentType": 5126, "count": len(t), "type": typ})
            samplers.append({"input": ti, "output": oi, "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": 2 + j, "path": path}})
    if channels:
        doc["animations"] = [{"name": "scene4d", "samplers": samplers, "channels": channels}]
    return e.to_bytes()


def _unit_xyzw(R: np.ndarray) -> np.ndarray:
    q = rotmat_to_quat(R)  # wxyz
    q = np.array([q[1], q[2], q[3], q[0]])
    return q / np.linalg.norm(q)


def build(scene, v: np.ndarray, g_ref, t_ref: float, times: List[float], seconds: List[float], F: np.ndarray,
          influences: int = 4, refine_vertices: int = 20000, refine_iters: int = 8):
    """Everything the file holds, in the target frame, plus the measured errors. ``v``: vertices
    of the surface extracted at ``t_ref`` (scene frame); ``g_ref``: the Gaussians at ``t_ref``.

    A field that blends at most ``influences`` nodes per point (``neighbours``) is written as is:
    joints = nodes, weights = the field's. A field blending more nodes is written by skinning
    decomposition (:func:`refine_skin`) on up to ``refine_vertices`` vertices."""
    import torch

    from .animated import _nearest, _rotmats as _rotmats_wxyz

    F = np.asarray(F, np.float64)
    mu = g_ref.means.detach().double().numpy()
    opaque = np.flatnonzero(g_ref.opacities.detach().double().numpy() > 0.1)
    if len(opaque) == 0:
        opaque = np.arange(len(mu))
    _, nn = _nearest(v, mu[opaque], 1)
    ent = scene.entity.cpu().numpy()[opaque[nn[:, 0]]] if len(scene.entities) > 1 else np.zeros(len(v), np.int64)
    ext = float(np.ptp(mu[opaque], axis=0).max()) or 1.0
    nk = len(times)
    frames = list(times) + [t_ref]  # keys, then the rest pose
    gi = opaque[nn[:, 0]]  # each vertex's nearest opaque Gaussian
    with torch.no_grad():
        can = scene.canonical()
    g_can = can.means.detach().double().numpy()
    rot_can = _rotmats_wxyz(can.quats.detach().double().numpy())
    rot_ref = _rotmats_wxyz(g_ref.quats.detach().double().numpy())
    inv_all = []
    x_can = v.copy()
    inv_res = 0.0
    V = len(v)
    m = max(1, influences)
    joints = np.zeros((V, m), np.int64)
    weights = np.zeros((V, m))
    J_c, J_R, J_p, moving = [], [], [], []  # per joint: centre, per-frame rotation and translation
    truth_sets, methods = [], []
    for e, field in enumerate(scene.fields):
        rows = np.flatnonzero(ent == e)
        base = len(J_c)
        if field is None:
            J_c.append(np.zeros(3))
            J_R.append(np.tile(np.eye(3), (len(frames), 1, 1)))
            J_p.append(np.zeros((len(frames), 3)))
            moving.append(False)
            joints[rows, 0], weights[rows, 0] = base, 1.0
            continue
        f64 = copy.deepcopy(field).double().cpu()
        c = f64.centers.detach().numpy()
        K = len(c)
        poses = [_poses(f64, t) for t in frames]
        R = np.stack([a for a, _ in poses])  # (F+1, K, 3, 3)
        P = np.stack([b for _, b in poses])
        if len(rows):
            # second start: each vertex carried back by its nearest Gaussian's own motion
            start = g_can[gi[rows]] + np.einsum("vji,vj->vi", rot_ref[gi[rows]], v[rows] - mu[gi[rows]])
            start = np.einsum("vij,vj->vi", rot_can[gi[rows]], start - g_can[gi[rows]]) + g_can[gi[rows]]
            x_can[rows], r = to_canonical(f64, v[rows], t_ref, start=start)
            inv_res = max(inv_res, float(r.max()))
            inv_all.append(r)
            W = _weights(f64, x_can[rows])
            nb = int(getattr(f64.cfg, "neighbours", 0) or 0)
            if 0 < nb <= m or K <= m:  # the field is a skin with <= m influences: write it as is
                idx = np.argsort(-W, axis=1)[:, :min(m, K)]
                w = np.take_along_axis(W, idx, 1)
                w = w / w.sum(1, keepdims=True)
                methods.append(f"entity {e}: exact (the field blends {nb or K} nodes per point)")
            else:  # decomposition: joints re-solved so that m influences follow the full blend
                idx, w = fit_weights(x_can[rows], W, list(zip(R[:nk], P[:nk])), m)
                X_all = np.stack([_lbs(W, R[i], P[i], x_can[rows]) for i in range(len(frames))])
                sub = np.random.default_rng(0).permutation(len(rows))[:refine_vertices]
                refine_skin(x_can[rows][sub], X_all[:, sub], idx[sub], w[sub].copy(), R, P, iters=refine_iters)
                y = np.einsum("fvmij,vj->fvmi", R[:, idx], x_can[rows]) + P[:, idx]
                w = _ls_weights(y, X_all, w)
                methods.append(f"entity {e}: skinning decomposition (the field blends {nb or K} nodes per point, "
                               f"{m} kept; joints re-solved on {min(len(rows), refine_vertices)} vertices)")
            joints[rows, :idx.shape[1]] = base + idx
            weights[rows, :idx.shape[1]] = w
            truth_sets.append((rows, f64, W))
        for k in range(K):
            J_c.append(screw_pivot(R[:nk, k], P[:nk, k], c[k]))
            J_R.append(R[:, k])
            J_p.append(P[:, k])
            moving.append(True)
    Jn = len(J_c)
    pad = (-m) % 4
    if pad:
        joints = np.concatenate([joints, np.zeros((V, pad), np.int64)], 1)
        weights = np.concatenate([weights, np.zeros((V, pad))], 1)
    w32 = quantise_weights(weights)
    joints[w32 == 0] = 0  # glTF: a slot of weight 0 names joint 0
    # the target frame: x' = F x; a joint's rigid map (R, p) -> (F R F^T, F p)
    x_out = x_can @ F.T
    centres = np.asarray(J_c) @ F.T
    ibm = np.tile(np.eye(4), (Jn, 1, 1))
    ibm[:, :3, 3] = -centres
    key_T = np.zeros((len(frames), Jn, 3))
    key_q = np.zeros((len(frames), Jn, 4))
    for j in range(Jn):
        for i in range(len(frames)):  # joint global = translate(p + R c) rotate(R), in the target frame
            R_, p_ = J_R[j][i], J_p[j][i]
            key_T[i, j] = F @ (p_ + R_ @ J_c[j])
            key_q[i, j] = _unit_xyzw(F @ R_ @ F.T)
        key_q[:nk, j] = _slerp_keys(key_q[:nk, j])
    rest_T, rest_q = key_T[nk], key_q[nk]
    key_T, key_q = key_T[:nk], key_q[:nk]
    # measure: the written float32 skin, replayed as a player does, against the full field
    mids = [0.5 * (a_ + b_) for a_, b_ in zip(times[:-1], times[1:])]
    truth = np.repeat(x_out[None], nk + len(mids), 0)
    for rows, f64, W in truth_sets:
        for i, t in enumerate(list(times) + mids):
            R_, p_ = _poses(f64, t)
            truth[i, rows] = _lbs(W, R_, p_, x_can[rows]) @ F.T
    xf = x_out.astype(np.float32).astype(np.float64)
    ibm32 = ibm.astype(np.float32).astype(np.float64)
    w64 = w32.astype(np.float64)
    f32 = lambda a_: a_.astype(np.float32).astype(np.float64)  # noqa: E731
    err_keys = [np.linalg.norm(replay(xf, joints, w64, ibm32, f32(key_T[i]), f32(key_q[i])) - truth[i], axis=1)
                for i in range(nk)]
    err_mid = [np.linalg.norm(replay(xf, joints, w64, ibm32, 0.5 * (f32(key_T[i]) + f32(key_T[i + 1])),
                                     _slerp_half(f32(key_q[i]), f32(key_q[i + 1]))) - truth[nk + i], axis=1)
               for i in range(len(mids))]
    ek = np.stack(err_keys) / ext
    em = np.stack(err_mid) / ext if err_mid else np.zeros((1, 1))
    info = {"joints": Jn, "influences": m, "vertices": V, "skin_method": methods or ["no moving entity"],
            "canonical_inverse_residual_of_extent": {
                "max": round(inv_res / ext, 9),
                "p99": round(float(np.percentile(np.concatenate(inv_all), 99)) / ext, 9) if inv_all else 0.0}}
    errors = {
        "skin_replay_max_of_extent_at_keys": float(ek.max()),
        "skin_replay_p99_of_extent_at_keys": float(np.percentile(ek, 99)),
        "skin_replay_max_of_extent_between_keys": float(em.max()),
        "skin_replay_max_of_extent_per_key": [round(float(a_), 8) for a_ in ek.max(1)],
    }
    return dict(verts=x_out, joints=joints, weights=w32, ibm=ibm, rest_T=rest_T, rest_q=rest_q,
                key_T=key_T, key_q=key_q, animated=moving, info=info, errors=errors,
                det_negative=np.linalg.det(F) < 0)


def _slerp_half(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.sum(a * b, axis=1, keepdims=True)
    b = np.where(d < 0, -b, b)
    q = a + b
    return q / np.linalg.norm(q, axis=1, keepdims=True)

"""numba kernels of the compiled CPU rasterizer (see :mod:`renderers.cpu_backend` for the contract).

Imported lazily by ``cpu_backend`` (numba is an import of its own cost and may be missing). Every
kernel takes and fills numpy arrays; arithmetic is float64 inside whatever the array dtype, so the
float32 path is at least as accurate as the torch backend's float32 path and the float64 path agrees
with it to rounding. Formulas and conventions are those of :mod:`renderers.torch_backend` (gsplat's),
written out per (camera, Gaussian) and per (tile, Gaussian, pixel):

* projection: EWA ``cov2d = J W Sigma W^T J^T + eps2d I``, J at the position clamped to 1.3x the
  frustum; opacity-aware radii; colour ``max(SH(dir) + 0.5, 0)``;
* compositing: per tile, the tile's Gaussians in depth order, each evaluated only on the pixels
  where its alpha can reach ``alpha_min``: per row, the span between the roots of
  ``sigma(dx) = ln(o / alpha_min)`` (outside it alpha < alpha_min exactly, so the skipped pixels
  are the ones the torch backend discards). Along a span ``exp(-sigma)`` follows the exact
  recurrence ``g(x+1) = g(x) r(x)``, ``r(x+1) = r(x) exp(-A)`` (two products a pixel, two exps a
  row). The torch backend also skips pixels where rounding makes sigma negative; the conics here
  are positive definite (eps2d > 0), so that cannot happen beyond float rounding of a zero;
* backward: the forward replayed front to back with the same decisions, ``dL/dalpha_i = T_i G.f_i
  - (S_i + g_T T_final) / (1 - alpha_i)`` with ``S_i`` the part of the pixel behind i (total minus
  the running prefix, accumulated in float64), one gradient row per (tile, Gaussian) pair (no
  write races, no atomics), then summed per Gaussian in a fixed order: results do not depend on
  the thread count.

Kernels are serial over a range (of Gaussians, or of tiles) and release the GIL: the caller runs
ranges on several threads (:func:`renderers.cpu_backend._parallel`). Nothing here uses numba's
threading layers, so nothing here spins, and compiling stays short.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_OPTS = dict(cache=True, nogil=True, error_model="numpy")

# Real SH constants (3DGS / gsplat order), as in renderers.gaussians
SH_C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2_0, C2_1, C2_2, C2_3, C2_4 = 1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396
C3_0, C3_1, C3_2, C3_3, C3_4, C3_5, C3_6 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)


# ----------------------------------------------------------------------------- helpers


@njit(inline="always", **_OPTS)
def _sh_basis(deg, x, y, z, b):
    """Fill b[0:(deg+1)^2] with the SH basis at unit direction (x, y, z)."""
    b[0] = SH_C0
    if deg >= 1:
        b[1] = -C1 * y
        b[2] = C1 * z
        b[3] = -C1 * x
    if deg >= 2:
        xx, yy, zz = x * x, y * y, z * z
        b[4] = C2_0 * x * y
        b[5] = C2_1 * y * z
        b[6] = C2_2 * (2.0 * zz - xx - yy)
        b[7] = C2_3 * x * z
        b[8] = C2_4 * (xx - yy)
    if deg >= 3:
        xx, yy, zz = x * x, y * y, z * z
        b[9] = C3_0 * y * (3.0 * xx - yy)
        b[10] = C3_1 * x * y * z
        b[11] = C3_2 * y * (4.0 * zz - xx - yy)
        b[12] = C3_3 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
        b[13] = C3_4 * x * (4.0 * zz - xx - yy)
        b[14] = C3_5 * z * (xx - yy)
        b[15] = C3_6 * x * (xx - 3.0 * yy)


@njit(inline="always", **_OPTS)
def _sh_basis_vjp(deg, x, y, z, gb):
    """d(sum_k gb_k b_k)/d(x, y, z), the basis polynomials differentiated as written."""
    gx = 0.0
    gy = 0.0
    gz = 0.0
    if deg >= 1:
        gy += -C1 * gb[1]
        gz += C1 * gb[2]
        gx += -C1 * gb[3]
    if deg >= 2:
        gx += C2_0 * y * gb[4]
        gy += C2_0 * x * gb[4]
        gy += C2_1 * z * gb[5]
        gz += C2_1 * y * gb[5]
        gx += -2.0 * C2_2 * x * gb[6]
        gy += -2.0 * C2_2 * y * gb[6]
        gz += 4.0 * C2_2 * z * gb[6]
        gx += C2_3 * z * gb[7]
        gz += C2_3 * x * gb[7]
        gx += 2.0 * C2_4 * x * gb[8]
        gy += -2.0 * C2_4 * y * gb[8]
    if deg >= 3:
        xx, yy, zz = x * x, y * y, z * z
        gx += C3_0 * 6.0 * x * y * gb[9]
        gy += C3_0 * (3.0 * xx - 3.0 * yy) * gb[9]
        gx += C3_1 * y * z * gb[10]
        gy += C3_1 * x * z * gb[10]
        gz += C3_1 * x * y * gb[10]
        gx += C3_2 * (-2.0 * x * y) * gb[11]
        gy += C3_2 * (4.0 * zz - xx - 3.0 * yy) * gb[11]
        gz += C3_2 * 8.0 * y * z * gb[11]
        gx += C3_3 * (-6.0 * x * z) * gb[12]
        gy += C3_3 * (-6.0 * y * z) * gb[12]
        gz += C3_3 * (6.0 * zz - 3.0 * xx - 3.0 * yy) * gb[12]
        gx += C3_4 * (4.0 * zz - 3.0 * xx - yy) * gb[13]
        gy += C3_4 * (-2.0 * x * y) * gb[13]
        gz += C3_4 * 8.0 * x * z * gb[13]
        gx += C3_5 * 2.0 * x * z * gb[14]
        gy += C3_5 * (-2.0 * y * z) * gb[14]
        gz += C3_5 * (xx - yy) * gb[14]
        gx += C3_6 * (3.0 * xx - 3.0 * yy) * gb[15]
        gy += C3_6 * (-6.0 * x * y) * gb[15]
    return gx, gy, gz


@njit(inline="always", **_OPTS)
def _quat_rotmat(qw, qx, qy, qz, R):
    """Normalised wxyz quaternion -> R (3, 3); returns the norm and the unit quaternion."""
    nq = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w, x, y, z = qw / nq, qx / nq, qy / nq, qz / nq
    R[0, 0] = 1.0 - 2.0 * (y * y + z * z)
    R[0, 1] = 2.0 * (x * y - w * z)
    R[0, 2] = 2.0 * (x * z + w * y)
    R[1, 0] = 2.0 * (x * y + w * z)
    R[1, 1] = 1.0 - 2.0 * (x * x + z * z)
    R[1, 2] = 2.0 * (y * z - w * x)
    R[2, 0] = 2.0 * (x * z - w * y)
    R[2, 1] = 2.0 * (y * z + w * x)
    R[2, 2] = 1.0 - 2.0 * (x * x + y * y)
    return nq, w, x, y, z


# ----------------------------------------------------------------------------- projection


@njit(**_OPTS)
def project_forward(means, quats, scales, opac, sh, deg, w2c, K, width, height, eps2d, near, far,
                    alpha_min, radius_clip, means2d, conics, depths, radii, colors, lo, hi):
    """Fill means2d (C,N,2), conics (C,N,3), depths (C,N), radii (C,N,2) int32, colors (C,N,3) for
    Gaussians [lo, hi)."""
    C = w2c.shape[0]
    nb = (deg + 1) * (deg + 1)
    cc = np.empty((C, 3))  # camera centres -R^T t
    for c in range(C):
        for i in range(3):
            cc[c, i] = -(w2c[c, 0, i] * w2c[c, 0, 3] + w2c[c, 1, i] * w2c[c, 1, 3] + w2c[c, 2, i] * w2c[c, 2, 3])
    log_amin = math.log(alpha_min)
    Rq = np.empty((3, 3))
    basis = np.empty(16)
    M = np.empty((3, 3))
    S = np.empty((3, 3))
    RS = np.empty((3, 3))
    Cc = np.empty((3, 3))
    for n in range(lo, hi):
        _quat_rotmat(float(quats[n, 0]), float(quats[n, 1]), float(quats[n, 2]), float(quats[n, 3]), Rq)
        for i in range(3):
            for j in range(3):
                M[i, j] = Rq[i, j] * scales[n, j]
        for i in range(3):
            for j in range(3):
                S[i, j] = M[i, 0] * M[j, 0] + M[i, 1] * M[j, 1] + M[i, 2] * M[j, 2]
        mx, my, mz = float(means[n, 0]), float(means[n, 1]), float(means[n, 2])
        o = float(opac[n])
        for c in range(C):
            x = w2c[c, 0, 0] * mx + w2c[c, 0, 1] * my + w2c[c, 0, 2] * mz + w2c[c, 0, 3]
            y = w2c[c, 1, 0] * mx + w2c[c, 1, 1] * my + w2c[c, 1, 2] * mz + w2c[c, 1, 3]
            z = w2c[c, 2, 0] * mx + w2c[c, 2, 1] * my + w2c[c, 2, 2] * mz + w2c[c, 2, 3]
            for i in range(3):
                for j in range(3):
                    RS[i, j] = w2c[c, i, 0] * S[0, j] + w2c[c, i, 1] * S[1, j] + w2c[c, i, 2] * S[2, j]
            for i in range(3):
                for j in range(3):
                    Cc[i, j] = RS[i, 0] * w2c[c, j, 0] + RS[i, 1] * w2c[c, j, 1] + RS[i, 2] * w2c[c, j, 2]
            in_depth = (z > near) and (z < far)
            zs = z if in_depth else 1.0
            fx, fy, cx, cy = float(K[c, 0, 0]), float(K[c, 1, 1]), float(K[c, 0, 2]), float(K[c, 1, 2])
            tfx, tfy = 0.5 * width / fx, 0.5 * height / fy
            lxp, lxn = (width - cx) / fx + 0.3 * tfx, cx / fx + 0.3 * tfx
            lyp, lyn = (height - cy) / fy + 0.3 * tfy, cy / fy + 0.3 * tfy
            rz = 1.0 / zs
            tx = zs * min(lxp, max(-lxn, x * rz))
            ty = zs * min(lyp, max(-lyn, y * rz))
            j00, j02 = fx * rz, -fx * tx * rz * rz
            j11, j12 = fy * rz, -fy * ty * rz * rz
            a = j00 * j00 * Cc[0, 0] + 2.0 * j00 * j02 * Cc[0, 2] + j02 * j02 * Cc[2, 2] + eps2d
            b = j00 * j11 * Cc[0, 1] + j00 * j12 * Cc[0, 2] + j02 * j11 * Cc[1, 2] + j02 * j12 * Cc[2, 2]
            d = j11 * j11 * Cc[1, 1] + 2.0 * j11 * j12 * Cc[1, 2] + j12 * j12 * Cc[2, 2] + eps2d
            det = a * d - b * b
            ok = in_depth and det > 0.0
            ds = det if ok else 1.0
            conics[c, n, 0] = d / ds
            conics[c, n, 1] = -b / ds
            conics[c, n, 2] = a / ds
            u = fx * x * rz + cx
            v = fy * y * rz + cy
            means2d[c, n, 0] = u
            means2d[c, n, 1] = v
            depths[c, n] = z
            rx = 0.0
            ry = 0.0
            if ok and o >= alpha_min:
                ext = min(math.sqrt(2.0 * (math.log(max(o, alpha_min)) - log_amin)), 3.33)
                rx = math.ceil(ext * math.sqrt(max(a, 0.0)))
                ry = math.ceil(ext * math.sqrt(max(d, 0.0)))
                if not ((rx > radius_clip or ry > radius_clip) and u + rx > 0 and u - rx < width
                        and v + ry > 0 and v - ry < height):
                    rx = 0.0
                    ry = 0.0
            else:
                rx = 0.0
                ry = 0.0
            radii[c, n, 0] = int(rx)
            radii[c, n, 1] = int(ry)
            # colour from the direction camera centre -> Gaussian
            dx, dy, dz = mx - cc[c, 0], my - cc[c, 1], mz - cc[c, 2]
            nd = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            _sh_basis(deg, dx / nd, dy / nd, dz / nd, basis)
            for ch in range(3):
                s = 0.0
                for k in range(nb):
                    s += basis[k] * sh[n, k, ch]
                colors[c, n, ch] = max(s + 0.5, 0.0)


@njit(**_OPTS)
def project_backward(means, quats, scales, sh, deg, w2c, K, width, height, eps2d, near, far,
                     g_means2d, g_conics, g_depths, g_colors,
                     g_means, g_quats, g_scales, g_sh, gp, lo, hi):
    """Gradients of the projection for Gaussians [lo, hi): fill g_means (N,3), g_quats (N,4),
    g_scales (N,3), g_sh (N,K,3) rows, and add this range's part of d/d world_to_camera[:, :3, :4]
    to gp (C, 12) (one gp per fixed range, summed by the caller in range order: the result does
    not depend on the thread count)."""
    C = w2c.shape[0]
    nb = (deg + 1) * (deg + 1)
    cc = np.empty((C, 3))
    for c in range(C):
        for i in range(3):
            cc[c, i] = -(w2c[c, 0, i] * w2c[c, 0, 3] + w2c[c, 1, i] * w2c[c, 1, 3] + w2c[c, 2, i] * w2c[c, 2, 3])
    Rq = np.empty((3, 3))
    M = np.empty((3, 3))
    S = np.empty((3, 3))
    RS = np.empty((3, 3))
    Cc = np.empty((3, 3))
    gS = np.empty((3, 3))
    gCc = np.empty((3, 3))
    T1 = np.empty((3, 3))
    basis = np.empty(16)
    gb = np.empty(16)
    for n in range(lo, hi):
        # skip Gaussians no output depends on (culled everywhere): their gradients are zero
        any_g = False
        for c in range(C):
            if (g_means2d[c, n, 0] != 0.0 or g_means2d[c, n, 1] != 0.0 or g_conics[c, n, 0] != 0.0
                    or g_conics[c, n, 1] != 0.0 or g_conics[c, n, 2] != 0.0 or g_depths[c, n] != 0.0
                    or g_colors[c, n, 0] != 0.0 or g_colors[c, n, 1] != 0.0 or g_colors[c, n, 2] != 0.0):
                any_g = True
                break
        if not any_g:
            continue
        nq, qw, qx, qy, qz = _quat_rotmat(float(quats[n, 0]), float(quats[n, 1]), float(quats[n, 2]),
                                          float(quats[n, 3]), Rq)
        for i in range(3):
            for j in range(3):
                M[i, j] = Rq[i, j] * scales[n, j]
        for i in range(3):
            for j in range(3):
                S[i, j] = M[i, 0] * M[j, 0] + M[i, 1] * M[j, 1] + M[i, 2] * M[j, 2]
                gS[i, j] = 0.0
        mx, my, mz = float(means[n, 0]), float(means[n, 1]), float(means[n, 2])
        gmx = 0.0
        gmy = 0.0
        gmz = 0.0
        for c in range(C):
            gu, gv = float(g_means2d[c, n, 0]), float(g_means2d[c, n, 1])
            gA, gB, gC = float(g_conics[c, n, 0]), float(g_conics[c, n, 1]), float(g_conics[c, n, 2])
            gzd = float(g_depths[c, n])
            gc0, gc1, gc2 = float(g_colors[c, n, 0]), float(g_colors[c, n, 1]), float(g_colors[c, n, 2])
            if (gu == 0.0 and gv == 0.0 and gA == 0.0 and gB == 0.0 and gC == 0.0 and gzd == 0.0
                    and gc0 == 0.0 and gc1 == 0.0 and gc2 == 0.0):
                continue
            # ---- colour: max(SH(dir) + 0.5, 0), dir = m - centre = m + R^T t
            dx, dy, dz = mx - cc[c, 0], my - cc[c, 1], mz - cc[c, 2]
            nraw = math.sqrt(dx * dx + dy * dy + dz * dz)
            nd = max(nraw, 1e-12)
            ux, uy, uz = dx / nd, dy / nd, dz / nd
            _sh_basis(deg, ux, uy, uz, basis)
            gcol0, gcol1, gcol2 = gc0, gc1, gc2
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            for k in range(nb):
                s0 += basis[k] * sh[n, k, 0]
                s1 += basis[k] * sh[n, k, 1]
                s2 += basis[k] * sh[n, k, 2]
            if s0 + 0.5 < 0.0:
                gcol0 = 0.0
            if s1 + 0.5 < 0.0:
                gcol1 = 0.0
            if s2 + 0.5 < 0.0:
                gcol2 = 0.0
            for k in range(nb):
                g_sh[n, k, 0] += gcol0 * basis[k]
                g_sh[n, k, 1] += gcol1 * basis[k]
                g_sh[n, k, 2] += gcol2 * basis[k]
            if deg >= 1 and (gcol0 != 0.0 or gcol1 != 0.0 or gcol2 != 0.0):
                for k in range(nb):
                    gb[k] = gcol0 * sh[n, k, 0] + gcol1 * sh[n, k, 1] + gcol2 * sh[n, k, 2]
                gux, guy, guz = _sh_basis_vjp(deg, ux, uy, uz, gb)
                if nraw > 1e-12:
                    dot = gux * ux + guy * uy + guz * uz
                    gdx, gdy, gdz = (gux - ux * dot) / nd, (guy - uy * dot) / nd, (guz - uz * dot) / nd
                else:
                    gdx, gdy, gdz = gux / nd, guy / nd, guz / nd
                gmx += gdx
                gmy += gdy
                gmz += gdz
                # dir = m + R^T t: d/dt_j = sum_i R_ji g_i ; d/dR_ji = t_j g_i
                for jj in range(3):
                    tj = w2c[c, jj, 3]
                    gp[c, 4 * jj + 3] += w2c[c, jj, 0] * gdx + w2c[c, jj, 1] * gdy + w2c[c, jj, 2] * gdz
                    gp[c, 4 * jj + 0] += tj * gdx
                    gp[c, 4 * jj + 1] += tj * gdy
                    gp[c, 4 * jj + 2] += tj * gdz
            # ---- geometry, recomputed as in the forward
            x = w2c[c, 0, 0] * mx + w2c[c, 0, 1] * my + w2c[c, 0, 2] * mz + w2c[c, 0, 3]
            y = w2c[c, 1, 0] * mx + w2c[c, 1, 1] * my + w2c[c, 1, 2] * mz + w2c[c, 1, 3]
            z = w2c[c, 2, 0] * mx + w2c[c, 2, 1] * my + w2c[c, 2, 2] * mz + w2c[c, 2, 3]
            for i in range(3):
                for j in range(3):
                    RS[i, j] = w2c[c, i, 0] * S[0, j] + w2c[c, i, 1] * S[1, j] + w2c[c, i, 2] * S[2, j]
            for i in range(3):
                for j in range(3):
                    Cc[i, j] = RS[i, 0] * w2c[c, j, 0] + RS[i, 1] * w2c[c, j, 1] + RS[i, 2] * w2c[c, j, 2]
            in_depth = (z > near) and (z < far)
            zs = z if in_depth else 1.0
            fx, fy, cx, cy = float(K[c, 0, 0]), float(K[c, 1, 1]), float(K[c, 0, 2]), float(K[c, 1, 2])
            tfx, tfy = 0.5 * width / fx, 0.5 * height / fy
            lxp, lxn = (width - cx) / fx + 0.3 * tfx, cx / fx + 0.3 * tfx
            lyp, lyn = (height - cy) / fy + 0.3 * tfy, cy / fy + 0.3 * tfy
            rz = 1.0 / zs
            ux_ = x * rz
            uy_ = y * rz
            cux = min(lxp, max(-lxn, ux_))
            cuy = min(lyp, max(-lyn, uy_))
            tx = zs * cux
            ty = zs * cuy
            j00, j02 = fx * rz, -fx * tx * rz * rz
            j11, j12 = fy * rz, -fy * ty * rz * rz
            a = j00 * j00 * Cc[0, 0] + 2.0 * j00 * j02 * Cc[0, 2] + j02 * j02 * Cc[2, 2] + eps2d
            b = j00 * j11 * Cc[0, 1] + j00 * j12 * Cc[0, 2] + j02 * j11 * Cc[1, 2] + j02 * j12 * Cc[2, 2]
            d = j11 * j11 * Cc[1, 1] + 2.0 * j11 * j12 * Cc[1, 2] + j12 * j12 * Cc[2, 2] + eps2d
            det = a * d - b * b
            # ---- conic (d/det, -b/det, a/det) -> (a, b, d)
            if in_depth and det > 0.0:
                i2 = 1.0 / (det * det)
                ga = (-d * d * gA + b * d * gB - b * b * gC) * i2
                gbb = (2.0 * b * d * gA - (det + 2.0 * b * b) * gB + 2.0 * a * b * gC) * i2
                gd = (-b * b * gA + a * b * gB - a * a * gC) * i2
            else:  # det_safe = 1: conic = (d, -b, a)
                ga = gC
                gbb = -gB
                gd = gA
            # cov2d = J Cc J^T, b = (cov01 + cov10) / 2: G2 = [[ga, gbb/2], [gbb/2, gd]]
            h = 0.5 * gbb
            # gCc = J^T G2 J (J = [[j00, 0, j02], [0, j11, j12]])
            gCc[0, 0] = j00 * j00 * ga
            gCc[0, 1] = j00 * j11 * h
            gCc[0, 2] = j00 * (ga * j02 + h * j12)
            gCc[1, 1] = j11 * j11 * gd
            gCc[1, 2] = j11 * (h * j02 + gd * j12)
            gCc[2, 2] = j02 * (ga * j02 + h * j12) + j12 * (h * j02 + gd * j12)
            gCc[1, 0] = gCc[0, 1]
            gCc[2, 0] = gCc[0, 2]
            gCc[2, 1] = gCc[1, 2]
            # gJ = 2 G2 J Cc; only J's non-constant entries matter
            # (J Cc) rows: r0 = j00 Cc[0] + j02 Cc[2], r1 = j11 Cc[1] + j12 Cc[2]
            r00 = j00 * Cc[0, 0] + j02 * Cc[2, 0]
            r02 = j00 * Cc[0, 2] + j02 * Cc[2, 2]
            r10 = j11 * Cc[1, 0] + j12 * Cc[2, 0]
            r11 = j11 * Cc[1, 1] + j12 * Cc[2, 1]
            r12 = j11 * Cc[1, 2] + j12 * Cc[2, 2]
            r01 = j00 * Cc[0, 1] + j02 * Cc[2, 1]
            gJ00 = 2.0 * (ga * r00 + h * r10)
            gJ02 = 2.0 * (ga * r02 + h * r12)
            gJ11 = 2.0 * (h * r01 + gd * r11)
            gJ12 = 2.0 * (h * r02 + gd * r12)
            grz = fx * gJ00 + fy * gJ11 - 2.0 * fx * tx * rz * gJ02 - 2.0 * fy * ty * rz * gJ12
            gtx = -fx * rz * rz * gJ02
            gty = -fy * rz * rz * gJ12
            # means2d = (fx x rz + cx, fy y rz + cy)
            gx = fx * rz * gu
            gy = fy * rz * gv
            grz += fx * x * gu + fy * y * gv
            # tx = zs * clamp(x rz)
            gzs = 0.0
            if -lxn < ux_ < lxp:
                gzs += gtx * ux_
                gx += gtx * zs * rz
                grz += gtx * zs * x
            else:
                gzs += gtx * cux
            if -lyn < uy_ < lyp:
                gzs += gty * uy_
                gy += gty * zs * rz
                grz += gty * zs * y
            else:
                gzs += gty * cuy
            gzs += -grz * rz * rz
            gz = gzd + (gzs if in_depth else 0.0)
            # Cc = R S R^T: gS += R^T gCc R ; gR += 2 gCc R S
            for i in range(3):
                for j in range(3):
                    T1[i, j] = gCc[i, 0] * w2c[c, 0, j] + gCc[i, 1] * w2c[c, 1, j] + gCc[i, 2] * w2c[c, 2, j]
            for i in range(3):
                for j in range(3):
                    gS[i, j] += w2c[c, 0, i] * T1[0, j] + w2c[c, 1, i] * T1[1, j] + w2c[c, 2, i] * T1[2, j]
            for i in range(3):
                for j in range(3):
                    gp[c, 4 * i + j] += 2.0 * (gCc[i, 0] * RS[0, j] + gCc[i, 1] * RS[1, j] + gCc[i, 2] * RS[2, j])
            # p = R m + t
            gmx += w2c[c, 0, 0] * gx + w2c[c, 1, 0] * gy + w2c[c, 2, 0] * gz
            gmy += w2c[c, 0, 1] * gx + w2c[c, 1, 1] * gy + w2c[c, 2, 1] * gz
            gmz += w2c[c, 0, 2] * gx + w2c[c, 1, 2] * gy + w2c[c, 2, 2] * gz
            gp[c, 0] += gx * mx
            gp[c, 1] += gx * my
            gp[c, 2] += gx * mz
            gp[c, 3] += gx
            gp[c, 4] += gy * mx
            gp[c, 5] += gy * my
            gp[c, 6] += gy * mz
            gp[c, 7] += gy
            gp[c, 8] += gz * mx
            gp[c, 9] += gz * my
            gp[c, 10] += gz * mz
            gp[c, 11] += gz
        g_means[n, 0] = gmx
        g_means[n, 1] = gmy
        g_means[n, 2] = gmz
        # S = M M^T: gM = (gS + gS^T) M ; M = Rq diag(s)
        gsx = 0.0
        gsy = 0.0
        gsz = 0.0
        G00 = 0.0
        G01 = 0.0
        G02 = 0.0
        G10 = 0.0
        G11 = 0.0
        G12 = 0.0
        G20 = 0.0
        G21 = 0.0
        G22 = 0.0
        for i in range(3):
            for j in range(3):
                gm_ij = ((gS[i, 0] + gS[0, i]) * M[0, j] + (gS[i, 1] + gS[1, i]) * M[1, j]
                         + (gS[i, 2] + gS[2, i]) * M[2, j])
                if j == 0:
                    gsx += gm_ij * Rq[i, j]
                elif j == 1:
                    gsy += gm_ij * Rq[i, j]
                else:
                    gsz += gm_ij * Rq[i, j]
                gr = gm_ij * scales[n, j]
                if i == 0:
                    if j == 0:
                        G00 = gr
                    elif j == 1:
                        G01 = gr
                    else:
                        G02 = gr
                elif i == 1:
                    if j == 0:
                        G10 = gr
                    elif j == 1:
                        G11 = gr
                    else:
                        G12 = gr
                else:
                    if j == 0:
                        G20 = gr
                    elif j == 1:
                        G21 = gr
                    else:
                        G22 = gr
        g_scales[n, 0] = gsx
        g_scales[n, 1] = gsy
        g_scales[n, 2] = gsz
        w, x, y, z = qw, qx, qy, qz
        gw = 2.0 * (-z * G01 + y * G02 + z * G10 - x * G12 - y * G20 + x * G21)
        gx_ = 2.0 * (y * G01 + z * G02 + y * G10 - 2.0 * x * G11 - w * G12 + z * G20 + w * G21 - 2.0 * x * G22)
        gy_ = 2.0 * (-2.0 * y * G00 + x * G01 + w * G02 + x * G10 + z * G12 - w * G20 + z * G21 - 2.0 * y * G22)
        gz_ = 2.0 * (-2.0 * z * G00 - w * G01 + x * G02 + w * G10 - 2.0 * z * G11 + y * G12 + x * G20 + y * G21)
        dot = gw * w + gx_ * x + gy_ * y + gz_ * z
        g_quats[n, 0] = (gw - w * dot) / nq
        g_quats[n, 1] = (gx_ - x * dot) / nq
        g_quats[n, 2] = (gy_ - y * dot) / nq
        g_quats[n, 3] = (gz_ - z * dot) / nq


# ----------------------------------------------------------------------------- tile binning


@njit(**_OPTS)
def bin_tiles(means2d, radii, depths, tile_w, tile_h, tiles_x, tiles_y):
    """(tile, Gaussian) pairs sorted by tile then depth, as torch_backend.intersect_tiles.

    Returns ``gauss`` (M,) int64 flat (c * N + n) indices and ``tile_start`` (C * tiles + 1,) int64.
    """
    C = means2d.shape[0]
    N = means2d.shape[1]
    tpi = tiles_x * tiles_y
    rect = np.zeros((C, N, 4), dtype=np.int64)
    for c in range(C):
        for n in range(N):
            if radii[c, n, 0] > 0 and radii[c, n, 1] > 0:
                mx = float(means2d[c, n, 0])
                my = float(means2d[c, n, 1])
                rx = float(radii[c, n, 0])
                ry = float(radii[c, n, 1])
                x0 = min(max(math.floor((mx - rx) / tile_w), 0), tiles_x)
                x1 = min(max(math.ceil((mx + rx) / tile_w), 0), tiles_x)
                y0 = min(max(math.floor((my - ry) / tile_h), 0), tiles_y)
                y1 = min(max(math.ceil((my + ry) / tile_h), 0), tiles_y)
                rect[c, n, 0] = x0
                rect[c, n, 1] = x1
                rect[c, n, 2] = y0
                rect[c, n, 3] = y1
    counts = np.zeros(C * tpi + 1, dtype=np.int64)
    for c in range(C):
        base = c * tpi + 1
        for n in range(N):
            for ty in range(rect[c, n, 2], rect[c, n, 3]):
                for tx in range(rect[c, n, 0], rect[c, n, 1]):
                    counts[base + ty * tiles_x + tx] += 1
    tile_start = np.cumsum(counts)
    gauss = np.empty(tile_start[-1], dtype=np.int64)
    for c in range(C):
        order = np.argsort(depths[c], kind="mergesort")
        cursor = tile_start[c * tpi: (c + 1) * tpi].copy()
        for k in range(N):
            n = order[k]
            for ty in range(rect[c, n, 2], rect[c, n, 3]):
                for tx in range(rect[c, n, 0], rect[c, n, 1]):
                    t = ty * tiles_x + tx
                    gauss[cursor[t]] = c * N + n
                    cursor[t] += 1
    return gauss, tile_start


# ----------------------------------------------------------------------------- compositing


@njit(inline="always", **_OPTS)
def _rows(my, A, B, Cn, o, alpha_min, y0, y1):
    """Rows [py0, py1) of the tile rows [y0, y1) where o exp(-sigma) can reach alpha_min, and the
    sigma threshold ln(o / alpha_min): sigma >= dy^2 / (2 cov_yy) for every dx, so beyond
    |dy| = sqrt(2 thr cov_yy) no pixel passes (a hair of margin absorbs rounding; the rows it adds
    find an empty span). Degenerate conics (not positive definite) get every row."""
    detc = A * Cn - B * B
    thr = math.log(o / alpha_min) if o > alpha_min else 0.0
    if detc > 0.0 and A > 0.0:
        ey = math.sqrt(2.0 * thr * A / detc)
        c = my - 0.5
        m = 1e-6 * (1.0 + abs(c))
        return max(y0, int(math.ceil(c - ey - m))), min(y1, int(math.floor(c + ey + m)) + 1), thr, detc
    return y0, y1, thr, -1.0


@njit(inline="always", **_OPTS)
def _row_span(mx, dy, A, B, Cn, thr, detc, x0, x1):
    """Pixels [px0, px1) of one row (offset dy from the centre) where sigma <= thr: the roots of
    0.5 A dx^2 + B dy dx + 0.5 C dy^2 = thr, widened by a hair so no pixel that passes the exact
    test is left out (the ones in the hair fail it exactly as the torch backend's do)."""
    if detc <= 0.0:
        return x0, x1
    disc = 2.0 * A * thr - detc * dy * dy
    if disc < 0.0:
        return x0, x0
    h = math.sqrt(disc) / A
    c = mx - B * dy / A - 0.5
    m = 1e-6 * (1.0 + abs(c))
    return max(x0, int(math.ceil(c - h - m))), min(x1, int(math.floor(c + h + m)) + 1)


@njit(**_OPTS)
def raster_forward(gauss, tile_start, N, tile_w, tile_h, tiles_x, width, height, means2d, conics, opac, colors, depths,
                   alpha_min, alpha_max, t_min, feat, T_out, t_lo, t_hi):
    """Front-to-back blending per tile: feat (C,H,W,4) = sum_i w_i (rgb_i, z_i), T_out (C,H,W) final T.

    means2d (CN,2), conics (CN,3), colors (CN,3), depths (CN,) flat over (camera, Gaussian);
    opac (N,). Along a row, exp(-sigma) is advanced by the exact recurrence
    g(x+1) = g(x) r(x), r(x+1) = r(x) exp(-A), two products a pixel instead of an exp."""
    tiles_y = (height + tile_h - 1) // tile_h
    tpi = tiles_x * tiles_y
    Q = tile_w * tile_h
    for tile in range(t_lo, t_hi):
        c = tile // tpi
        lt = tile % tpi
        x0 = (lt % tiles_x) * tile_w
        y0 = (lt // tiles_x) * tile_h
        x1 = min(x0 + tile_w, width)
        y1 = min(y0 + tile_h, height)
        T = np.ones(Q)
        acc = np.zeros((Q, 4))
        done = np.zeros(Q, dtype=np.bool_)
        n_live = (x1 - x0) * (y1 - y0)
        for p in range(tile_start[tile], tile_start[tile + 1]):
            g = gauss[p]
            mx, my = float(means2d[g, 0]), float(means2d[g, 1])
            A, B, Cn = float(conics[g, 0]), float(conics[g, 1]), float(conics[g, 2])
            o = float(opac[g % N])
            f0, f1, f2, f3 = float(colors[g, 0]), float(colors[g, 1]), float(colors[g, 2]), float(depths[g])
            py0, py1, thr, detc = _rows(my, A, B, Cn, o, alpha_min, y0, y1)
            eA = math.exp(-A)
            for py in range(py0, py1):
                dy = py + 0.5 - my
                px0, px1 = _row_span(mx, dy, A, B, Cn, thr, detc, x0, x1)
                if px1 <= px0:
                    continue
                dx = px0 + 0.5 - mx
                gv = math.exp(-(0.5 * (A * dx * dx + Cn * dy * dy) + B * dx * dy))
                r = math.exp(-(A * dx + 0.5 * A + B * dy))
                q = (py - y0) * tile_w + px0 - x0
                for _ in range(px1 - px0):
                    if not done[q]:
                        alpha = min(alpha_max, o * gv)
                        if alpha >= alpha_min:
                            Tq = T[q]
                            nT = Tq * (1.0 - alpha)
                            if nT <= t_min:
                                done[q] = True
                                n_live -= 1
                            else:
                                w = alpha * Tq
                                acc[q, 0] += w * f0
                                acc[q, 1] += w * f1
                                acc[q, 2] += w * f2
                                acc[q, 3] += w * f3
                                T[q] = nT
                    gv *= r
                    r *= eA
                    q += 1
            if n_live == 0:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                q = (py - y0) * tile_w + px - x0
                feat[c, py, px, 0] = acc[q, 0]
                feat[c, py, px, 1] = acc[q, 1]
                feat[c, py, px, 2] = acc[q, 2]
                feat[c, py, px, 3] = acc[q, 3]
                T_out[c, py, px] = T[q]


@njit(**_OPTS)
def raster_backward(gauss, tile_start, N, tile_w, tile_h, tiles_x, width, height, means2d, conics, opac, colors, depths,
                    alpha_min, alpha_max, t_min, feat, T_final, g_feat, g_T, pair_grads, p_base, t_lo, t_hi):
    """Gradients per (tile, Gaussian) pair: pair_grads (M, 10) = d/d(mean x, y, conic a, b, c,
    opacity, r, g, b, z), the forward replayed front to back with its decisions."""
    tiles_y = (height + tile_h - 1) // tile_h
    tpi = tiles_x * tiles_y
    Q = tile_w * tile_h
    for tile in range(t_lo, t_hi):
        p_lo = tile_start[tile]
        p_hi = tile_start[tile + 1]
        if p_hi == p_lo:
            continue
        c = tile // tpi
        lt = tile % tpi
        x0 = (lt % tiles_x) * tile_w
        y0 = (lt // tiles_x) * tile_h
        x1 = min(x0 + tile_w, width)
        y1 = min(y0 + tile_h, height)
        T = np.ones(Q)
        pre = np.zeros(Q)  # running sum_k<=i w_k G.f_k
        rest = np.zeros(Q)  # total + g_T T_final, total = sum_k w_k G.f_k = G . feat
        G = np.zeros((Q, 4))
        done = np.ones(Q, dtype=np.bool_)
        n_live = 0
        for py in range(y0, y1):
            for px in range(x0, x1):
                q = (py - y0) * tile_w + px - x0
                done[q] = False
                n_live += 1
                s = 0.0
                for k in range(4):
                    gk = float(g_feat[c, py, px, k])
                    G[q, k] = gk
                    s += gk * feat[c, py, px, k]
                rest[q] = s + float(g_T[c, py, px]) * T_final[c, py, px]
        for p in range(p_lo, p_hi):
            g = gauss[p]
            mx, my = float(means2d[g, 0]), float(means2d[g, 1])
            A, B, Cn = float(conics[g, 0]), float(conics[g, 1]), float(conics[g, 2])
            o = float(opac[g % N])
            f0, f1, f2, f3 = float(colors[g, 0]), float(colors[g, 1]), float(colors[g, 2]), float(depths[g])
            py0, py1, thr, detc = _rows(my, A, B, Cn, o, alpha_min, y0, y1)
            eA = math.exp(-A)
            gmx = 0.0
            gmy = 0.0
            gA = 0.0
            gB = 0.0
            gC = 0.0
            go = 0.0
            gf0 = 0.0
            gf1 = 0.0
            gf2 = 0.0
            gf3 = 0.0
            for py in range(py0, py1):
                dy = py + 0.5 - my
                px0, px1 = _row_span(mx, dy, A, B, Cn, thr, detc, x0, x1)
                if px1 <= px0:
                    continue
                dx = px0 + 0.5 - mx
                gv = math.exp(-(0.5 * (A * dx * dx + Cn * dy * dy) + B * dx * dy))
                r = math.exp(-(A * dx + 0.5 * A + B * dy))
                q = (py - y0) * tile_w + px0 - x0
                for _ in range(px1 - px0):
                    if not done[q]:
                        raw = o * gv
                        alpha = min(alpha_max, raw)
                        if alpha >= alpha_min:
                            Tq = T[q]
                            nT = Tq * (1.0 - alpha)
                            if nT <= t_min:
                                done[q] = True
                                n_live -= 1
                            else:
                                w = alpha * Tq
                                G0, G1, G2, G3 = G[q, 0], G[q, 1], G[q, 2], G[q, 3]
                                gf0 += w * G0
                                gf1 += w * G1
                                gf2 += w * G2
                                gf3 += w * G3
                                Gf = G0 * f0 + G1 * f1 + G2 * f2 + G3 * f3
                                pq = pre[q] + w * Gf
                                pre[q] = pq
                                T[q] = nT
                                if raw < alpha_max:  # clamped alphas carry no gradient (gsplat)
                                    g_alpha = Tq * Gf - (rest[q] - pq) / (1.0 - alpha)
                                    go += g_alpha * gv
                                    g_sigma = -g_alpha * alpha
                                    gA += g_sigma * 0.5 * dx * dx
                                    gB += g_sigma * dx * dy
                                    gC += g_sigma * 0.5 * dy * dy
                                    gmx -= g_sigma * (A * dx + B * dy)
                                    gmy -= g_sigma * (B * dx + Cn * dy)
                    gv *= r
                    r *= eA
                    dx += 1.0
                    q += 1
            pair_grads[p - p_base, 0] = gmx
            pair_grads[p - p_base, 1] = gmy
            pair_grads[p - p_base, 2] = gA
            pair_grads[p - p_base, 3] = gB
            pair_grads[p - p_base, 4] = gC
            pair_grads[p - p_base, 5] = go
            pair_grads[p - p_base, 6] = gf0
            pair_grads[p - p_base, 7] = gf1
            pair_grads[p - p_base, 8] = gf2
            pair_grads[p - p_base, 9] = gf3
            if n_live == 0:
                for pp in range(p + 1, p_hi):
                    for k in range(10):
                        pair_grads[pp - p_base, k] = 0.0
                break


@njit(**_OPTS)
def reduce_pairs(gauss, pair_grads, p_base, N, g_means2d, g_conics, g_opac, g_colors, g_depths):
    """Add the gradient rows of pairs [p_base, p_base + len(pair_grads)) to their Gaussians', in
    pair order (deterministic)."""
    for i in range(pair_grads.shape[0]):
        g = gauss[p_base + i]
        r = pair_grads[i]
        g_means2d[g, 0] += r[0]
        g_means2d[g, 1] += r[1]
        g_conics[g, 0] += r[2]
        g_conics[g, 1] += r[3]
        g_conics[g, 2] += r[4]
        g_opac[g % N] += r[5]
        g_colors[g, 0] += r[6]
        g_colors[g, 1] += r[7]
        g_colors[g, 2] += r[8]
        g_depths[g] += r[9]

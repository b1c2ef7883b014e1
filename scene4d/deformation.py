"""Deformation fields: (canonical Gaussian, t) -> offsets of position, rotation and log-scale.

Two fields:

* :class:`HexPlaneField` (default) — multi-resolution space-time planes (K-planes / HexPlane, as in
  4DGaussians, Wu et al. CVPR 2024): six 2D feature planes (xy, xz, yz, xt, yt, zt) sampled with
  ``grid_sample`` and multiplied (Hadamard) per resolution, concatenated over resolutions, then a
  small MLP with one zero-initialised linear head per offset.
* :class:`MLPField` — positional encoding of (x, t) into an MLP (Deformable-3DGS, Yang et al. 2024).
* :class:`MotionNodesField` — a few hundred-or-fewer motion nodes, each with its own rigid motion
  (a rotation and a translation per time knot), blended onto the Gaussians by learnable radial
  weights (SC-GS, Huang et al. CVPR 2024; the motion bases of Shape-of-Motion, Wang et al. 2024).
  Whatever moves rigidly is carried rigidly: a turning object keeps its shape and pattern between
  time knots, where a displacement field interpolated between knots cuts the chord of every turn
  and blurs it.

Every head starts at zero, so a fresh field is the identity: a new scene is static until trained.

Every field is a :class:`DeformationField`: ``deform(means, quats, log_scales, t)`` is the one call
:meth:`scene4d.field.Scene4D.at` makes, and each field declares its own optimiser parameter groups
(:meth:`DeformationField.param_groups`), hooks (``initialize``, ``hold_after``) and named
regularisers, so neither the scene nor the training loop needs to know what is inside a field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, AbstractSet, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # the loop's learning-rate table; only its attribute names are used here
    from .train.config import LearningRates

MAX_LOG_SCALE_OFFSET = 0.5
"""Largest change of log-scale an offset field may apply (x1.65 / /1.65)."""


class DeformationField(nn.Module):
    """What every deformation field provides. A field deforms the Gaussians of ONE entity; the
    scene (:class:`scene4d.field.Scene4D`) hands it only that entity's rows.

    Subclasses implement :meth:`deform` and :meth:`param_groups`; the hooks default to no-ops.
    """

    def deform(self, means: Tensor, quats: Tensor, log_scales: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        """Canonical (N, 3) means (already moved by temporal velocity), (N, 4) wxyz quats and (N, 3)
        log-scales -> (means (N, 3), quats (N, 4) wxyz, scales (N, 3), linear) at scene time t."""
        raise NotImplementedError

    def param_groups(self, lrs: "LearningRates", scene_scale: float) -> List[dict]:
        """This field's parameters as named Adam groups ``{"name", "params", "lr"}`` (the initial
        learning rate; lengths are scaled by ``scene_scale``). Every parameter in exactly one group."""
        raise NotImplementedError

    def initialize(self, points: Tensor) -> None:
        """Fit the field's layout to its entity's initial Gaussian centres (N, 3); default: nothing."""

    def hold_after(self, t: float) -> None:
        """Make the field constant in time after ``t`` (time curricula); default: nothing (a field
        whose time is continuous, as the MLP's, cannot be held)."""

    def regularizers(self, skip: AbstractSet[str] = frozenset()) -> Dict[str, Tensor]:
        """Named scalar regularisers over this field only; the objective weights them by name.
        ``skip``: names the objective weighs 0, which need not be computed."""
        return {}


class _OffsetField(DeformationField):
    """A field that predicts offsets ``forward(means, t) -> (d_means, d_quats, d_log_scales)``."""

    def deform(self, means: Tensor, quats: Tensor, log_scales: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        d_means, d_quats, d_log_scales = self(means, t)
        # bounded: an unbounded scale offset lets one step blow Gaussians up to screen size
        scales = torch.exp(log_scales + MAX_LOG_SCALE_OFFSET * torch.tanh(d_log_scales / MAX_LOG_SCALE_OFFSET))
        return means + d_means, quats + d_quats, scales


@dataclass
class HexPlaneConfig:
    """Space-time plane field."""

    kind: str = "hexplane"
    features: int = 16
    """Feature channels per plane."""
    resolutions: List[int] = field(default_factory=lambda: [32, 64])
    """Spatial plane resolutions (one set of six planes per entry)."""
    time_resolution: int = 16
    """Resolution of the time axis of the xt, yt, zt planes."""
    hidden: int = 64
    """Width of the MLP head."""
    bounds_radius: float = 1.5
    """Half-size of the cube around ``bounds_center`` that the planes cover (set from the data)."""
    bounds_center: Tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class MLPConfig:
    """Positional-encoding MLP field."""

    kind: str = "mlp"
    pos_freqs: int = 8
    time_freqs: int = 6
    hidden: int = 128
    depth: int = 4
    bounds_radius: float = 1.5
    bounds_center: Tuple[float, float, float] = (0.0, 0.0, 0.0)


class _Heads(nn.Module):
    """Shared trunk output -> (d_means (N,3), d_quats (N,4), d_log_scales (N,3)), zero at init."""

    def __init__(self, width: int):
        super().__init__()
        self.pos = nn.Linear(width, 3)
        self.rot = nn.Linear(width, 4)
        self.scale = nn.Linear(width, 3)
        for lin in (self.pos, self.rot, self.scale):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, h: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.pos(h), self.rot(h), self.scale(h)


class HexPlaneField(_OffsetField):
    # plane axes: pairs of coordinates of (x, y, z, t)
    PLANES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

    def __init__(self, cfg: HexPlaneConfig):
        super().__init__()
        self.cfg = cfg
        self.planes = nn.ParameterList()
        for res in cfg.resolutions:
            for a, b in self.PLANES:
                ra = cfg.time_resolution if a == 3 else res
                rb = cfg.time_resolution if b == 3 else res
                if b == 3:
                    # time planes start at 1: the Hadamard product then equals the static features
                    p = torch.ones(1, cfg.features, rb, ra)
                else:
                    p = torch.empty(1, cfg.features, rb, ra).uniform_(0.1, 0.5)
                self.planes.append(nn.Parameter(p))
        width = cfg.features * len(cfg.resolutions)
        self.trunk = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU())
        self.heads = _Heads(cfg.hidden)
        self.register_buffer("center", torch.tensor(cfg.bounds_center, dtype=torch.float32))

    def features(self, means: Tensor, t: float) -> Tensor:
        """(N, 3) positions at scene time t -> (N, features * len(resolutions))."""
        x = (means - self.center) / self.cfg.bounds_radius
        tt = torch.full_like(x[:, :1], 2.0 * float(t) - 1.0)
        xt = torch.cat([x.clamp(-1, 1), tt], dim=-1)  # (N, 4) in [-1, 1]
        out = []
        i = 0
        for _ in self.cfg.resolutions:
            f = None
            for a, b in self.PLANES:
                grid = xt[:, (a, b)].reshape(1, -1, 1, 2)
                v = F.grid_sample(self.planes[i], grid, mode="bilinear", padding_mode="border", align_corners=True)
                v = v[0, :, :, 0].t()  # (N, features)
                f = v if f is None else f * v
                i += 1
            out.append(f)
        return torch.cat(out, dim=-1)

    def forward(self, means: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        return self.heads(self.trunk(self.features(means, t)))

    def param_groups(self, lrs: "LearningRates", scene_scale: float) -> List[dict]:
        """The MLP (trunk + heads, ``lrs.deform`` x scene scale) and the planes (``lrs.planes``)."""
        mlp = [p for n, p in self.named_parameters() if not n.startswith("planes.")]
        return [{"name": "mlp", "params": mlp, "lr": lrs.deform * scene_scale},
                {"name": "planes", "params": list(self.planes), "lr": lrs.planes}]

    @torch.no_grad()
    def hold_after(self, t: float) -> None:
        """Make the field constant in time after ``t``: every time knot past the one that the window
        ``[0, t]`` reaches takes that knot's value. A time curriculum calls this each step, so a
        moment entering the window starts where the last fitted one ended (as a tracker would)."""
        knots = self.cfg.time_resolution
        last = min(knots - 1, int(math.ceil(float(t) * (knots - 1) - 1e-6)))
        if last >= knots - 1:
            return
        for p, (_, b) in self._planes_with_axes():
            if b == 3:  # time runs along the rows of the xt, yt, zt planes
                p[..., last + 1 :, :] = p[..., last : last + 1, :]

    def _planes_with_axes(self):
        """(plane, (axis a, axis b)) for every plane, all resolutions, in storage order."""
        return zip(self.planes, [ab for _ in self.cfg.resolutions for ab in self.PLANES])

    def regularizers(self, skip: AbstractSet[str] = frozenset()) -> Dict[str, Tensor]:
        """Plane total variation (spatial smoothness) and time smoothness (K-planes eq. 6-7)."""
        tv = []
        smooth = []
        for p, (_, b) in self._planes_with_axes():
            tv.append((p[..., 1:, :] - p[..., :-1, :]).square().mean() + (p[..., :, 1:] - p[..., :, :-1]).square().mean())
            if b == 3:  # second difference along time (rows of the time planes)
                d2 = p[..., 2:, :] - 2 * p[..., 1:-1, :] + p[..., :-2, :]
                smooth.append(d2.square().mean())
        return {"plane_tv": torch.stack(tv).mean(), "time_smoothness": torch.stack(smooth).mean()}


@dataclass
class MotionNodesConfig:
    """Rigid motion nodes blended onto the Gaussians (linear blend skinning)."""

    kind: str = "nodes"
    nodes: int = 48
    """Motion nodes; each carries one rigid motion over time."""
    time_resolution: int = 25
    """Time knots per node (a pose each; between knots the screw motion from one pose to the next)."""
    learn_nodes: bool = True
    """Let node centres and radii move during training (SC-GS); False keeps their initial layout."""
    bounds_radius: float = 1.5
    bounds_center: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    neighbours: int = 0
    """Nodes blended per point: the this-many strongest (SC-GS blends its 4 nearest), 0 for all. Each
    keeps its share less the next node's, so weights stay continuous where the set changes. With 4
    the field is exactly a 4-influence skin (``export --format mesh-anim`` writes it without loss)."""


class MotionNodesField(DeformationField):
    """K nodes with centres ``c_k`` and radii ``r_k``; node k moves rigidly by ``(R_k(t), T_k(t))``
    about its centre. A Gaussian at canonical ``x`` goes to ``sum_k w_k (R_k (x - c_k) + c_k + T_k)``
    with ``w = softmax_k(-|x - c_k|^2 / 2 r_k^2)``, and its rotation to ``blend_k(q_k) * q``.
    Each knot holds a rotation vector and a translation (identity at start); between knots a node
    turns and slides along the screw motion from one pose to the next, so an object turning fast
    keeps its shape between knots instead of cutting the chord of its turn."""

    ARAP_NEIGHBOURS = 4
    """Nearest nodes each node is held rigid to by :meth:`arap`."""

    def __init__(self, cfg: MotionNodesConfig):
        super().__init__()
        self.cfg = cfg
        k, t = cfg.nodes, cfg.time_resolution
        self.rotvecs = nn.Parameter(torch.zeros(k, t, 3))
        self.translations = nn.Parameter(torch.zeros(k, t, 3))
        centers = torch.zeros(k, 3)
        log_radii = torch.full((k,), math.log(cfg.bounds_radius / max(k, 1) ** (1 / 3)))
        if cfg.learn_nodes:
            self.centers = nn.Parameter(centers)
            self.log_radii = nn.Parameter(log_radii)
        else:
            self.register_buffer("centers", centers)
            self.register_buffer("log_radii", log_radii)

    @torch.no_grad()
    def place_nodes(self, points: Tensor) -> None:
        """Spread the nodes over ``points`` (N, 3) by farthest-point sampling; each radius is half
        the distance to the nearest other node, so neighbouring nodes overlap a little."""
        n = points.shape[0]
        k = self.cfg.nodes
        idx = torch.zeros(k, dtype=torch.long)
        d = (points - points.mean(0)).square().sum(-1)
        idx[0] = int(torch.argmin(d))
        d = (points - points[idx[0]]).square().sum(-1)
        for i in range(1, k):
            idx[i] = int(torch.argmax(d)) if i < n else int(torch.randint(n, (1,)))
            d = torch.minimum(d, (points - points[idx[i]]).square().sum(-1))
        c = points[idx].float()
        dist = torch.cdist(c, c) + torch.eye(k, device=c.device) * 1e9  # a scene placed on the GPU too
        r = 0.5 * dist.min(dim=1).values.clamp_min(1e-3)
        self.centers.copy_(c)
        self.log_radii.copy_(torch.log(r))

    def initialize(self, points: Tensor) -> None:
        """Nodes spread over the entity's initial centres (:meth:`place_nodes`)."""
        self.place_nodes(points)

    def deform(self, means: Tensor, quats: Tensor, log_scales: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        """Rigid blend (:meth:`warp`); scales are carried unchanged (rigid motion keeps sizes)."""
        means, quats = self.warp(means, quats, t)
        return means, quats, torch.exp(log_scales)

    def param_groups(self, lrs: "LearningRates", scene_scale: float) -> List[dict]:
        """Rotation vectors (``lrs.rotation``, radians), translations (``lrs.motion`` x scene scale)
        and, when learnt, centres (``lrs.nodes`` x scene scale) and log-radii (``lrs.nodes`` x 10)."""
        groups = [{"name": "rotvecs", "params": [self.rotvecs], "lr": lrs.rotation},
                  {"name": "translations", "params": [self.translations], "lr": lrs.motion * scene_scale}]
        if self.cfg.learn_nodes:
            groups += [{"name": "centers", "params": [self.centers], "lr": lrs.nodes * scene_scale},
                       {"name": "log_radii", "params": [self.log_radii], "lr": lrs.nodes * 10}]
        return groups

    def _poses(self, t: float) -> Tuple[Tensor, Tensor]:
        """Every node's motion at time t as a world transform ``x -> R x + p``: (K, 4) xyzw unit
        quaternions and (K, 3) translations. Between knots the pose follows the screw motion from
        one knot's pose to the next (SE(3) geodesic), which does not depend on the pivot: nodes
        that carry one rigid body agree at every instant, not only at the knots."""
        import roma  # on use: importing roma loads torch._dynamo (~2.5 s), which most commands never need

        n = self.cfg.time_resolution
        c = self.centers
        q_all = roma.rotvec_to_unitquat(self.rotvecs)  # (K, T, 4)
        u = min(max(float(t), 0.0), 1.0) * (n - 1)
        i0 = min(int(math.floor(u)), max(n - 2, 0))
        f = u - i0

        def pose(i):
            q = q_all[:, i]
            R = roma.unitquat_to_rotmat(q)
            return q, c - torch.einsum("kij,kj->ki", R, c) + self.translations[:, i], R

        qa, pa, Ra = pose(i0)
        if n == 1 or f == 0.0:
            return qa, pa
        qb, pb, _ = pose(i0 + 1)
        q_rel = roma.quat_product(roma.quat_conjugation(qa), qb)
        q_rel = torch.where(q_rel[:, 3:] < 0, -q_rel, q_rel)  # the short way round
        w_rel = _quat_log(q_rel)  # (K, 3) rotation vector from pose a to pose b
        d = torch.einsum("kji,kj->ki", Ra, pb - pa)  # R_a^T (p_b - p_a)
        v = _se3_v(w_rel, d, inverse=True)
        step = _se3_v(f * w_rel, f * v, inverse=False)
        q = roma.quat_product(qa, roma.rotvec_to_unitquat(f * w_rel))
        return q, pa + torch.einsum("kij,kj->ki", Ra, step)

    def weights(self, means: Tensor) -> Tensor:
        """(N, K) blend weights of the nodes for Gaussians at canonical ``means``."""
        c = self.centers
        # -|x - c_k|^2 / 2 r_k^2 expanded into one (N, 5) x (5, K) product: [x, |x|^2, 1] against
        # [c_k s_k, -s_k / 2, -|c_k|^2 s_k / 2] with s_k = 1 / r_k^2 (cdist's backward costs ~5x more,
        # and the elementwise form ~10 (N, K) ops forward and back)
        s = torch.exp(-2 * self.log_radii)
        lhs = torch.cat([means, means.square().sum(-1, keepdim=True), torch.ones_like(means[:, :1])], dim=-1)
        rhs = torch.cat([c * s[:, None], (-0.5 * s)[:, None], (-0.5 * s * c.square().sum(-1))[:, None]], dim=-1)
        logits = lhs @ rhs.t()
        k = self.cfg.neighbours
        if 0 < k < logits.shape[-1]:
            # the k strongest nodes blend, each less the (k+1)-th's share: a node entering or leaving
            # the k does so at weight 0, so the weights stay continuous in x (no popping)
            with torch.no_grad():
                top = logits.topk(k + 1, dim=-1).indices
            a = torch.softmax(logits.gather(-1, top), dim=-1)
            w = (a[..., :k] - a[..., k:]).clamp_min(0) + 1e-12
            w = w / w.sum(-1, keepdim=True)
            return torch.zeros_like(logits).scatter(-1, top[..., :k], w)
        return torch.softmax(logits, dim=-1)

    def warp(self, means: Tensor, quats: Tensor, t: float, weights: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Canonical (N, 3) means and (N, 4) wxyz quats -> their values at time t. ``weights``:
        :meth:`weights` of these means, when the caller keeps them (a viewer scrubbing time over
        fixed canonical Gaussians evaluates them once)."""
        import roma

        q_xyzw, p = self._poses(t)
        R = roma.unitquat_to_rotmat(q_xyzw)  # (K, 3, 3)
        w = self.weights(means) if weights is None else weights  # (N, K)
        # the blended affine map sum_k w_k [R_k | p_k] in one (N, K) x (K, 12) product, applied
        # elementwise (batched 3x3 products and einsum cost ~2x more per step on a CPU)
        Ap = w @ torch.cat([R.reshape(-1, 9), p], dim=1)
        A = Ap[:, :9].reshape(-1, 3, 3)
        new_means = (A * means[:, None, :]).sum(-1) + Ap[:, 9:]
        # q and -q are one rotation: bring every node to the hemisphere of the Gaussian's main node
        # before blending, or two nodes turning alike could cancel out (a choice, not differentiated)
        with torch.no_grad():  # node j's sign for a Gaussian whose main node is i: row i of a (K, K) table
            table = torch.where(q_xyzw @ q_xyzw.t() < 0, -1.0, 1.0).to(w.dtype)
            # every pair of nodes in one hemisphere (the usual case): no sign to apply. Checked on
            # the CPU only, where reading the answer back costs nothing
            same = not table.is_cuda and bool((table > 0).all())
        if same:
            qb = w @ q_xyzw
        else:
            qb = (w * table[w.argmax(dim=-1)]) @ q_xyzw  # blended node rotation
        qb = qb / qb.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        q = roma.quat_product(qb, roma.quat_wxyz_to_xyzw(quats))
        return new_means, roma.quat_xyzw_to_wxyz(q)

    @torch.no_grad()
    def hold_after(self, t: float) -> None:
        """Knots past the one the window ``[0, t]`` reaches take its value, so a moment entering the
        window starts where the motion fitted so far ends. (Carrying the last knot-to-knot velocity
        forward instead, a tracker's prediction, cost 3.6 dB on the demo capture: early velocities
        are noisy.)"""
        knots = self.cfg.time_resolution
        last = min(knots - 1, int(math.ceil(float(t) * (knots - 1) - 1e-6)))
        if last >= knots - 1:
            return
        for p in (self.rotvecs, self.translations):
            p[:, last + 1 :] = p[:, last : last + 1]

    def regularizers(self, skip: AbstractSet[str] = frozenset()) -> Dict[str, Tensor]:
        """``time_smoothness``: second difference of every node's rotation and translation over knots.
        ``arap``: :meth:`arap`. Reconstruction weights ``arap`` 0: as SC-GS's term it cost 1.6 to 2 dB
        on the demo capture at weights 1 and 10, because one field there carries every object and
        the term ties nodes of neighbouring objects together. Generation gives each character its
        own entity (its own field), where the term keeps a character's body rigid instead."""
        out = {}
        if "time_smoothness" not in skip:
            terms = []
            for p in (self.rotvecs, self.translations):
                if p.shape[1] >= 3:
                    terms.append((p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]).square().mean())
            out["time_smoothness"] = torch.stack(terms).sum() if terms else self.rotvecs.sum() * 0
        if "arap" not in skip:  # reconstruction weighs it 0: ~4 % of a CPU training step saved
            out["arap"] = self.arap()
        return out

    def arap(self) -> Tensor:
        """As-rigid-as-possible between neighbouring nodes (SC-GS, Huang et al. 2024, eq. 7), a
        scalar: at every knot, each node's ``ARAP_NEIGHBOURS`` nearest nodes (by canonical centre)
        should move with its own rigid motion. Node k maps x to ``R_k (x - c_k) + c_k + T_k``, so
        the residual for neighbour j is ``(c_j + T_j) - (c_k + T_k) - R_k (c_j - c_k)``; the mean of
        its square over (k, j, knot). Zero for a fresh (identity) field and for any motion that is
        one rigid motion of all nodes. Only this field's nodes take part: a term per entity never
        couples two entities."""
        import roma

        k = self.cfg.nodes
        if k < 2:
            return self.rotvecs.sum() * 0
        c = self.centers
        with torch.no_grad():  # who neighbours whom is a layout choice, not something to optimise
            nbr = torch.cdist(c, c).topk(min(self.ARAP_NEIGHBOURS, k - 1) + 1, largest=False).indices[:, 1:]  # (K, M)
        d = c[nbr] - c[:, None]  # (K, M, 3) canonical offsets to the neighbours
        R = roma.rotvec_to_rotmat(self.rotvecs)  # (K, T, 3, 3)
        moved = d[:, :, None] + self.translations[nbr] - self.translations[:, None]  # (K, M, T, 3)
        carried = torch.einsum("ktij,kmj->kmti", R, d)  # (K, M, T, 3)
        return (moved - carried).square().sum(-1).mean()


def _safe_norm(x: Tensor) -> Tensor:
    """|x| over the last axis with a finite gradient at 0."""
    return torch.sqrt(x.square().sum(-1, keepdim=True) + 1e-20)


def _quat_log(q_xyzw: Tensor) -> Tensor:
    """(..., 4) unit quaternions with w >= 0 -> (..., 3) rotation vectors (smooth at identity)."""
    v, w = q_xyzw[..., :3], q_xyzw[..., 3:]
    s = _safe_norm(v)
    small = s < 1e-4
    ratio = torch.where(small, 2.0 / w.clamp_min(1e-8), 2.0 * torch.atan2(torch.where(small, torch.ones_like(s), s), w)
                        / torch.where(small, torch.ones_like(s), s))
    return v * ratio


def _se3_v(w: Tensor, x: Tensor, *, inverse: bool) -> Tensor:
    """``V(w) x`` (or ``V(w)^-1 x``), the translation part of the SE(3) exponential (logarithm) for
    rotation vector w: ``V = I + a [w]x + b [w]x^2``; ``V^-1 = I - 1/2 [w]x + c [w]x^2``."""
    th = _safe_norm(w)
    # below 0.3 rad the closed forms lose digits to cancellation in float32 (1 - cos t ~ t^2/2); the
    # series to th^4 is exact there to ~1e-8 (float64 keeps the closed forms down to 0.01)
    small = th < (1e-2 if th.dtype == torch.float64 else 0.3)
    t = torch.where(small, torch.ones_like(th), th)  # big-angle formulas only where they are stable
    wx = torch.cross(w, x, dim=-1)
    wwx = torch.cross(w, wx, dim=-1)
    th2 = th.square()
    th4 = th2.square()
    if inverse:
        c = torch.where(small, 1 / 12 + th2 / 720 + th4 / 30240, (1 - t * torch.sin(t) / (2 * (1 - torch.cos(t)))) / t.square())
        return x - 0.5 * wx + c * wwx
    a = torch.where(small, 0.5 - th2 / 24 + th4 / 720, (1 - torch.cos(t)) / t.square())
    b = torch.where(small, 1 / 6 - th2 / 120 + th4 / 5040, (t - torch.sin(t)) / t**3)
    return x + a * wx + b * wwx


def positional_encoding(x: Tensor, n_freqs: int) -> Tensor:
    """(N, D) -> (N, D * (1 + 2 n_freqs)): x, sin(2^k pi x), cos(2^k pi x)."""
    freqs = (2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)) * math.pi
    xb = x[..., None] * freqs  # (N, D, F)
    return torch.cat([x, torch.sin(xb).flatten(1), torch.cos(xb).flatten(1)], dim=-1)


class MLPField(_OffsetField):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        d_in = 3 * (1 + 2 * cfg.pos_freqs) + (1 + 2 * cfg.time_freqs)
        layers: List[nn.Module] = []
        w = d_in
        for _ in range(cfg.depth):
            layers += [nn.Linear(w, cfg.hidden), nn.ReLU()]
            w = cfg.hidden
        self.trunk = nn.Sequential(*layers)
        self.heads = _Heads(cfg.hidden)
        self.register_buffer("center", torch.tensor(cfg.bounds_center, dtype=torch.float32))

    def forward(self, means: Tensor, t: float) -> Tuple[Tensor, Tensor, Tensor]:
        x = ((means - self.center) / self.cfg.bounds_radius).clamp(-1.5, 1.5)
        tt = torch.full_like(x[:, :1], float(t))
        h = torch.cat([positional_encoding(x, self.cfg.pos_freqs), positional_encoding(tt, self.cfg.time_freqs)], -1)
        return self.heads(self.trunk(h))

    def param_groups(self, lrs: "LearningRates", scene_scale: float) -> List[dict]:
        """One group: the whole MLP at ``lrs.deform`` x scene scale."""
        return [{"name": "mlp", "params": list(self.parameters()), "lr": lrs.deform * scene_scale}]


def make_field(cfg) -> DeformationField:
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    if isinstance(cfg, HexPlaneConfig):
        return HexPlaneField(cfg)
    if isinstance(cfg, MLPConfig):
        return MLPField(cfg)
    if isinstance(cfg, MotionNodesConfig):
        return MotionNodesField(cfg)
    raise ValueError(f"unknown deformation config {cfg!r}")


FIELD_CONFIGS = {"hexplane": HexPlaneConfig, "mlp": MLPConfig, "nodes": MotionNodesConfig}
"""Deformation field kinds and their configs: space-time planes, positional-encoding MLP, rigid motion nodes."""


def config_from_dict(d: dict):
    kind = d.get("kind")
    if kind not in FIELD_CONFIGS:
        raise ValueError(f"unknown deformation kind {kind!r}; known: {sorted(FIELD_CONFIGS)}")
    d = dict(d)
    if "bounds_center" in d:
        d["bounds_center"] = tuple(d["bounds_center"])
    return FIELD_CONFIGS[kind](**d)


def config_to_dict(cfg) -> dict:
    return asdict(cfg)

"""The 4D scene: entities of canonical Gaussians, each with its own deformation field;
``scene.at(t)`` -> Gaussians.

Canonical parameters are stored raw, as the optimiser sees them: ``means`` (N,3), ``quats`` (N,4)
wxyz, ``log_scales`` (N,3), ``opacity_logits`` (N,), ``sh_dc`` (N,1,3), ``sh_rest`` (N,K-1,3).

Optional **temporal opacity** (``t_center`` (N,), ``t_log_scale`` (N,), as in Yang et al.'s
real-time 4DGS and Spacetime Gaussians): a Gaussian's opacity at time t is multiplied by
``exp(-1/2 ((t - t_center) / exp(t_log_scale))^2)`` and its centre moves by ``t_velocity (N,3) * (t -
t_center)`` (before the deformation field). It lets a fit represent what a deformation
field cannot reach from a zero start: objects that travel far (a ball crossing the scene), appear
or leave the frame. Gaussians that stay whole-clip (large time scale) are the static scene.

**Entities.** One :class:`Scene4D` holds every Gaussian in one set of parameter tensors (so one
optimiser, one densification strategy and one rasterize call serve them all) plus a per-Gaussian
``entity`` index (N,) int64 into ``scene.entities``; entity i has its own deformation field
``scene.fields[i]`` (None: static), applied to its own Gaussians only, and its own regularisers.
Densification carries the index through clone / split / prune (:func:`scene4d.densify._update_rows`).
A scene of one entity is exactly a scene with one deformation field.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import AbstractSet, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from renderers import Gaussians, rgb_to_sh0

from .deformation import MAX_LOG_SCALE_OFFSET, DeformationField, make_field  # noqa: F401 (re-exported)

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")
TEMPORAL_NAMES = ("t_center", "t_log_scale", "t_velocity")
"""Extra per-Gaussian parameters of temporal opacity (present only when it is on)."""


def init_params(points: Tensor, colors: Optional[Tensor], sh_degree: int, *, opacity: float = 0.1,
                scale_from_neighbours: bool = True, times: Optional[Tensor] = None,
                time_scale: float = 0.25) -> Dict[str, Tensor]:
    """Canonical parameters for Gaussians at ``points`` (N,3), with colours (N,3) in [0,1] or grey.

    ``times`` (N,) in [0, 1] turns temporal opacity on: each Gaussian is centred at its time with
    temporal standard deviation ``time_scale``.
    """
    n = points.shape[0]
    if colors is None:
        colors = torch.full((n, 3), 0.5)
    if scale_from_neighbours and n > 1:
        d = _mean_knn_distance(points, k=3)
    else:
        d = torch.full((n,), 0.01)
    k = (sh_degree + 1) ** 2
    out = {
        "means": points.clone().float(),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
        "log_scales": torch.log(0.5 * d.clamp_min(1e-4))[:, None].repeat(1, 3).float(),
        "opacity_logits": torch.logit(torch.full((n,), opacity)),
        "sh_dc": rgb_to_sh0(colors.float())[:, None, :],
        "sh_rest": torch.zeros(n, k - 1, 3),
    }
    if times is not None:
        out["t_center"] = times.detach().clone().float().reshape(n)
        out["t_log_scale"] = torch.full((n,), math.log(time_scale))
        out["t_velocity"] = torch.zeros(n, 3)
    return out


def _mean_knn_distance(x: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """Mean distance of each point to its k nearest neighbours (chunked, no extra dependency)."""
    out = []
    k = min(k, x.shape[0] - 1)  # a handful of points has fewer than k neighbours
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i : i + chunk], x)
        d = d.topk(k + 1, largest=False).values[:, 1:]  # drop self
        out.append(d.mean(dim=1))
    return torch.cat(out)


@dataclass
class EntitySpec:
    """One entity of a scene: a name and its deformation field's config (None: static)."""

    name: str = "scene"
    deformation: object = None
    """A :data:`scene4d.deformation.FIELD_CONFIGS` config, or None."""


class _RowBuffers(MutableMapping):
    """The scene's per-Gaussian non-trained tensors (``entity``) as a mapping, so that the one
    place that resizes per-Gaussian state (:func:`scene4d.densify._update_rows`) can resize them
    in place of the module's buffers."""

    NAMES = ("entity",)

    def __init__(self, module: nn.Module):
        self._m = module

    def __getitem__(self, k: str) -> Tensor:
        if k not in self.NAMES:
            raise KeyError(k)
        return getattr(self._m, k)

    def __setitem__(self, k: str, v: Tensor) -> None:
        if k not in self.NAMES:
            raise KeyError(k)
        setattr(self._m, k, v)  # a registered buffer: nn.Module keeps it a buffer

    def __delitem__(self, k: str) -> None:
        raise TypeError("per-Gaussian buffers cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES)

    def __len__(self) -> int:
        return len(self.NAMES)


class Scene4D(nn.Module):
    """Canonical Gaussians of one or more entities, each with an optional deformation field.

    ``Scene4D(params, deformation_cfg, sh_degree)``: one entity named "scene" (today's scene).
    ``Scene4D(params, sh_degree=d, entities=[EntitySpec("dog", cfg_a), EntitySpec("cat", cfg_b)],
    entity=index)``: several; ``index`` (N,) int gives each row's entity (default: all entity 0).
    :meth:`from_entities` builds one from per-entity parameter sets.
    """

    def __init__(self, params: Dict[str, Tensor], deformation_cfg=None, sh_degree: int = 0, *,
                 entities: Optional[Sequence[EntitySpec]] = None, entity: Optional[Tensor] = None):
        super().__init__()
        names = PARAM_NAMES + (TEMPORAL_NAMES if all(k in params for k in TEMPORAL_NAMES) else ())
        self.params = nn.ParameterDict({k: nn.Parameter(params[k].clone()) for k in names})
        self.sh_degree = sh_degree
        if entities is None:
            entities = [EntitySpec("scene", deformation_cfg)]
        elif deformation_cfg is not None:
            raise ValueError("give the deformation either as deformation_cfg (one entity) or per entity, not both")
        entities = list(entities)
        if not entities:
            raise ValueError("a scene needs at least one entity")
        if len({e.name for e in entities}) != len(entities):
            raise ValueError(f"entity names must differ: {[e.name for e in entities]}")
        self.entities: List[EntitySpec] = entities
        # None for a static entity (ModuleList keeps the slot, so fields[i] is entity i's)
        self.fields = nn.ModuleList([make_field(e.deformation) if e.deformation is not None else None
                                     for e in entities])
        n = self.params["means"].shape[0]
        if entity is None:
            entity = torch.zeros(n, dtype=torch.long)
        entity = torch.as_tensor(entity).to(device=self.params["means"].device, dtype=torch.long).reshape(-1).clone()
        if entity.shape[0] != n:
            raise ValueError(f"entity index has {entity.shape[0]} rows for {n} Gaussians")
        if n and (int(entity.min()) < 0 or int(entity.max()) >= len(entities)):
            raise ValueError(f"entity index out of range for {len(entities)} entities")
        self.register_buffer("entity", entity)

    @classmethod
    def from_entities(cls, parts: Sequence[Tuple[str, Dict[str, Tensor], object]], sh_degree: int = 0) -> "Scene4D":
        """A scene of ``(name, params, deformation config or None)`` parts, in that order: each
        part's Gaussians (``init_params`` output, all with or all without temporal opacity) become
        that entity's rows. Call :meth:`initialize_fields` after to lay out node fields."""
        names = list(parts[0][1].keys())
        params = {k: torch.cat([p[k] for _, p, _ in parts]) for k in names}
        index = torch.cat([torch.full((p["means"].shape[0],), i, dtype=torch.long) for i, (_, p, _) in enumerate(parts)])
        return cls(params, sh_degree=sh_degree, entities=[EntitySpec(n, c) for n, _, c in parts], entity=index)

    def add_entity(self, name: str, deformation=None, params: Optional[Dict[str, Tensor]] = None) -> int:
        """Append an entity named ``name`` with its field config (None: static) and, optionally,
        its Gaussians (``init_params`` output, appended as its rows); returns its index. Call it
        before training starts: optimisers built earlier hold the old parameter tensors."""
        if name in self.entity_names:
            raise ValueError(f"an entity named {name!r} exists already")
        self.entities.append(EntitySpec(name, deformation))
        field = make_field(deformation) if deformation is not None else None
        self.fields.append(field.to(self.device) if field is not None else None)
        i = len(self.entities) - 1
        if params is not None:
            dev = self.device
            self.replace_gaussians({k: torch.cat([self.params[k].detach(), params[k].to(dev)]) for k in self.param_names},
                                   torch.cat([self.entity, torch.full((params["means"].shape[0],), i, dtype=torch.long,
                                                                      device=dev)]))
        return i

    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def device(self) -> torch.device:
        """Where the parameters (and so every ``at(t)``) live."""
        return self.params["means"].device

    @property
    def temporal_opacity(self) -> bool:
        return "t_center" in self.params

    @property
    def param_names(self) -> tuple:
        return tuple(self.params.keys())

    @property
    def n_entities(self) -> int:
        return len(self.entities)

    @property
    def entity_names(self) -> List[str]:
        return [e.name for e in self.entities]

    @property
    def dynamic(self) -> bool:
        """Whether anything changes with time: some entity has a field, or opacity is temporal."""
        return self.temporal_opacity or any(f is not None for f in self.fields)

    @property
    def row_buffers(self) -> MutableMapping:
        """Per-Gaussian tensors that are not trained (``entity``), for densification surgery."""
        return _RowBuffers(self)

    def _single(self, what: str):
        # ValueError, not AttributeError: nn.Module would replace the latter by "no attribute"
        if len(self.entities) != 1:
            raise ValueError(f"scene has {len(self.entities)} entities; use scene.fields[i] / "
                                 f"scene.entities[i].deformation instead of scene.{what}")

    @property
    def deformation(self) -> Optional[DeformationField]:
        """The deformation field of a one-entity scene (``fields[0]``)."""
        self._single("deformation")
        return self.fields[0]

    @property
    def deformation_cfg(self):
        """The deformation config of a one-entity scene."""
        self._single("deformation_cfg")
        return self.entities[0].deformation

    def check_rows(self) -> None:
        """Raise unless the entity index has one row per Gaussian (densification that was not
        handed ``row_buffers`` leaves it behind)."""
        if self.entity.shape[0] != len(self):
            raise RuntimeError(f"entity index has {self.entity.shape[0]} rows for {len(self)} Gaussians: resize "
                               "per-Gaussian state only through densify._update_rows(..., buffers=scene.row_buffers)")

    def rows(self, entities: Optional[Sequence[int]] = None) -> Optional[Tensor]:
        """Row indices (ascending, int64) of the Gaussians of ``entities``; None for every row."""
        if entities is None:
            return None
        sel = torch.as_tensor(list(entities), dtype=torch.long, device=self.entity.device)
        return torch.nonzero(torch.isin(self.entity, sel)).flatten()

    @torch.no_grad()
    def initialize_fields(self) -> None:
        """Lay out every field over its own entity's current centres (motion nodes placed by
        farthest-point sampling; other fields: nothing)."""
        for i, f in enumerate(self.fields):
            if f is not None:
                rows = None if len(self.entities) == 1 else self.rows([i])
                means = self.params["means"] if rows is None else self.params["means"][rows]
                f.initialize(means.detach())

    def hold_after(self, t: float) -> None:
        """Every field constant in time after ``t`` (see :meth:`DeformationField.hold_after`)."""
        for f in self.fields:
            if f is not None:
                f.hold_after(t)

    def regularizers(self, skip: AbstractSet[str] = frozenset()) -> Dict[str, Tensor]:
        """Every field's named regularisers, summed by name over entities; each term is computed
        within one entity's field (never across two). ``skip``: names not to compute (weighted 0)."""
        out: Dict[str, Tensor] = {}
        for f in self.fields:
            if f is not None:
                for k, v in f.regularizers(skip).items():
                    out[k] = v if k not in out else out[k] + v
        return out

    def _p(self, name: str, rows: Optional[Tensor]) -> Tensor:
        p = self.params[name]
        return p if rows is None else p[rows]

    def _opacities(self, t: float, rows: Optional[Tensor]) -> Tensor:
        o = torch.sigmoid(self._p("opacity_logits", rows))
        if self.temporal_opacity:
            z = (float(t) - self._p("t_center", rows)) * torch.exp(-self._p("t_log_scale", rows))
            o = o * torch.exp(-0.5 * z.square())
        return o

    def _means(self, t: float, rows: Optional[Tensor]) -> Tensor:
        if self.temporal_opacity:
            return self._p("means", rows) + self._p("t_velocity", rows) * (float(t) - self._p("t_center", rows))[:, None]
        return self._p("means", rows)

    def opacities_at(self, t: float) -> Tensor:
        return self._opacities(t, None)

    def canonical(self) -> Gaussians:
        p = self.params
        return Gaussians(
            means=p["means"],
            quats=p["quats"],
            scales=torch.exp(p["log_scales"]),
            opacities=torch.sigmoid(p["opacity_logits"]),
            sh=torch.cat([p["sh_dc"], p["sh_rest"]], dim=1),
        )

    def means_at(self, t: float) -> Tensor:
        """Centres at time t before the deformation field (moved by their velocity when temporal)."""
        return self._means(t, None)

    def _rows_at(self, t: float, rows: Optional[Tensor], field: Optional[DeformationField], deform: bool):
        """(means, quats, scales, opacities, sh) of ``rows`` (None: all) moved by ``field``."""
        if field is None or not deform:
            if rows is None and not self.temporal_opacity:
                g = self.canonical()
                return g.means, g.quats, g.scales, g.opacities, g.sh
            means, quats, scales = self._means(t, rows), self._p("quats", rows), torch.exp(self._p("log_scales", rows))
        else:
            means, quats, scales = field.deform(self._means(t, rows), self._p("quats", rows), self._p("log_scales", rows), t)
        sh = torch.cat([self._p("sh_dc", rows), self._p("sh_rest", rows)], dim=1)
        return means, quats, scales, self._opacities(t, rows), sh

    def at(self, t: float, *, deform: bool = True, entities: Optional[Sequence[int]] = None) -> Gaussians:
        """The Gaussians at scene time ``t`` in [0, 1]: every entity composited (N rows, in row
        order), or only ``entities`` (indices into ``scene.entities``; the rows :meth:`rows`
        gives, ascending). Each entity is moved by its own field only."""
        if entities is None and len(self.entities) == 1:
            return Gaussians(*self._rows_at(t, None, self.fields[0], deform))
        self.check_rows()
        chosen = range(len(self.entities)) if entities is None else sorted(set(int(i) for i in entities))
        parts, order = [], []
        for i in chosen:
            rows = torch.nonzero(self.entity == i).flatten()
            parts.append(self._rows_at(t, rows, self.fields[i], deform))
            order.append(rows)
        # back to ascending row order: means2d rows then line up with the scene's rows
        perm = torch.argsort(torch.cat(order))
        return Gaussians(*(torch.cat([p[k] for p in parts])[perm] for k in range(5)))

    def replace_gaussians(self, params: Dict[str, Tensor], entity: Optional[Tensor] = None) -> None:
        """Swap in other per-Gaussian values (any N; a checkpoint's), keeping fields and entities.
        Optimisers built before this hold the old tensors: build them after."""
        dev = self.device
        for k in self.param_names:
            self.params[k] = nn.Parameter(params[k].detach().clone().to(dev))
        n = self.params["means"].shape[0]
        self.entity = (torch.zeros(n, dtype=torch.long) if entity is None else entity.clone().long()).to(dev)

    def bounds(self):
        """(centre (3,), radius) of the opaque bulk over the whole time range, for framing paths."""
        from .render import robust_bounds

        with torch.no_grad():
            if not self.dynamic:
                return robust_bounds(self.canonical())
            return robust_bounds(Gaussians.cat([self.at(float(t)) for t in torch.linspace(0, 1, 5)]))

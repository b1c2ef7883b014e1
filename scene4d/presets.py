"""Reconstruction presets: JSON files users pick by name, or copy and edit.

The named presets live in the top-level ``configs/`` folder (``configs/fast.json``, ...). A preset
file holds::

    {
      "description": "...",                 # one line, shown by `scene4d presets`
      "base": "fast",                        # optional: start from another preset and override it
      "field": "nodes",                      # the deformation field used unless --deformation says
      "fields": {"nodes": {...}, ...},       # how this preset sizes each field kind
      "train": {"iters": 2800, "densify": {...}, ...}   # TrainConfig values
    }

Every key is optional; what a file leaves out comes from its ``base`` (a preset name, or a path
relative to the file that names it), or else the built-in defaults,
so ``{"base": "fast", "train": {"iters": 6000}}`` is a complete preset. A finished scene's
``scene.json`` is a preset too (the settings that run used), and so may be a base. Unknown keys and values of
the wrong type are errors that name the file and the key: a typo must not silently fall back to a
default and cost an hour-long run.
"""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import fields as dc_fields
from dataclasses import is_dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from .deformation import FIELD_CONFIGS as FIELD_CLASSES

_PRESET_KEYS = ("description", "base", "field", "fields", "train")
_SCENE_SIZED = ("kind", "bounds_radius", "bounds_center")  # set by the run from the capture, not by a preset


PRESET_DIR = (Path(__file__).parent / "presets_data").resolve()
"""The named presets: the top-level ``configs/`` folder (``scene4d/presets_data`` links to it, and
an installed wheel carries the files there). Found by path, not imported: a top-level package named
``configs`` would clash with the many projects that have a ``configs/`` of their own."""


class PresetError(ValueError):
    """A preset name or file that cannot be used; the message names the file and the key."""


def preset_names() -> list[str]:
    """The presets shipped in ``configs/``, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def preset_path(name_or_path: Union[str, Path], named_in: Optional[Path] = None) -> Path:
    """The file behind a preset name (``fast``) or a path (``my.json``). ``named_in``: the preset
    file whose ``base`` this is (for the error message)."""
    s = str(name_or_path)
    p = Path(s)
    by = f"{named_in}: 'base' names " if named_in is not None else ""
    if s.endswith(".json") or p.is_file() or "/" in s:
        if not p.is_file():
            hint = f" (did you mean the named preset {p.stem!r}?)" if p.stem in preset_names() else ""
            raise PresetError(f"{by}{p}: no such preset file{hint}; named presets: {', '.join(preset_names())}")
        return p
    if s not in preset_names():
        if Path(s + ".json").is_file():
            hint = f" (did you mean the file {s}.json?)"
        else:
            near = difflib.get_close_matches(s, preset_names(), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise PresetError(f"{by}unknown preset {s!r}{hint}; choose one of {', '.join(preset_names())}, or give a "
                          f"preset file (.json): `scene4d presets NAME > my.json` prints one to edit")
    return PRESET_DIR / f"{s}.json"


def read_preset(name_or_path: Union[str, Path], _seen: tuple = (), _named_in: Optional[Path] = None) -> dict:
    """The preset as one dict, its ``base`` chain merged in (the file's own keys win). Each file's
    keys and value types are checked as it is read, so an error names the file that holds it."""
    path = preset_path(name_or_path, _named_in)
    where = str(path)
    try:
        d = json.loads(path.read_text(), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise PresetError(f"{where}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except _Duplicate as e:
        raise PresetError(f"{where}: key {e.args[0]!r} appears twice in one object; keep one") from None
    except _Constant as e:
        raise PresetError(f"{where}: {e.args[0]} is not a number a run can use; give a finite value") from None
    if not isinstance(d, dict):
        raise PresetError(f"{where}: a preset file holds one JSON object, got {type(d).__name__}")
    if isinstance(d.get("provenance"), dict) and isinstance(d["provenance"].get("config"), dict):
        d = _from_run_config(d["provenance"]["config"], where)  # a scene.json: run again with its settings
    _check_file(d, where)
    if "base" in d:
        base = d["base"]
        if not isinstance(base, str):
            raise PresetError(f"{where}: 'base' is the name or path of another preset, got {json.dumps(base)}")
        if (Path(base).suffix == ".json" or "/" in base) and not Path(base).is_absolute():
            base = str(path.parent / base)  # a path is relative to the file that names it
        key = str(preset_path(base, path).resolve())
        if key in _seen or key == str(path.resolve()):
            raise PresetError(f"{where}: 'base' chain loops back to {base}")
        merged = read_preset(base, _seen + (str(path.resolve()),), path)
        d = _merge(merged, {k: v for k, v in d.items() if k != "base"})
    return d


def load_preset(name_or_path: Union[str, Path], field: Optional[str] = None):
    """A :class:`~scene4d.reconstruct.TrainConfig` from a preset name or file. ``field`` (one of
    :data:`FIELD_CLASSES`) replaces the preset's deformation field by that kind, sized as the
    preset sizes it. Values out of range (``iters: 0``, a negative learning rate, ``sh_degree: 7``)
    are errors naming the file and key."""
    from .densify import DensifyConfig
    from .reconstruct import TrainConfig

    if field is not None and field not in FIELD_CLASSES:
        raise PresetError(f"unknown deformation field {field!r}; choose one of {', '.join(FIELD_CLASSES)}")
    path = preset_path(name_or_path)
    d = read_preset(path)
    where = str(path) + (" (with the presets it builds on)" if "base" in json.loads(path.read_text()) else "")
    train = dict(d.get("train", {}))
    densify = train.pop("densify", {})
    cfg = TrainConfig(**train, densify=DensifyConfig(**densify))
    kind = field or d.get("field", "hexplane")
    cfg.deformation = FIELD_CLASSES[kind](**d.get("fields", {}).get(kind, {}))
    _check_ranges(cfg, kind, where)
    return cfg


def preset_to_json(cfg, description: str = "") -> dict:
    """``cfg`` (a TrainConfig) as a complete preset file's contents (what ``scene4d presets NAME``
    prints): copy it, edit it, pass it as ``--preset FILE.json``."""
    from dataclasses import asdict

    train = asdict(cfg)
    train.pop("deformation")
    out = {"description": description}
    if cfg.deformation is not None:
        own = {k: v for k, v in asdict(cfg.deformation).items() if k not in _SCENE_SIZED}
        out["field"] = cfg.deformation.kind
        out["fields"] = {cfg.deformation.kind: own}
    out["train"] = train
    return out


def _from_run_config(cfg: dict, where: str) -> dict:
    """The settings a finished run recorded (``scene.json``'s ``provenance.config``) as a preset."""
    train = {k: v for k, v in cfg.items() if k != "deformation"}
    deform = cfg.get("deformation")
    if deform is None:
        raise PresetError(f"{where}: that run was static (no deformation field); run again with a preset "
                          "and --static")
    kind = deform.get("kind")
    sizes = {k: v for k, v in deform.items() if k not in _SCENE_SIZED}
    return {"description": f"the settings of the run in {Path(where).parent}", "field": kind,
            "fields": {kind: sizes}, "train": train}


# ----------------------------------------------------------------------------- checks
class _Duplicate(Exception):
    pass


class _Constant(Exception):
    pass


def _no_constants(name: str):
    raise _Constant(name)  # NaN, Infinity, -Infinity: Python's json reads them; no setting wants one


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise _Duplicate(k)
        seen[k] = v
    return seen


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _layout() -> Dict[str, list]:
    """Every place a key may stand in a preset file, by its dotted prefix."""
    from .densify import DensifyConfig
    from .reconstruct import TrainConfig

    out = {"": list(_PRESET_KEYS), "train.": [f.name for f in dc_fields(TrainConfig) if f.name != "deformation"],
           "train.densify.": [f.name for f in dc_fields(DensifyConfig)], "fields.": list(FIELD_CLASSES)}
    for kind, cls in FIELD_CLASSES.items():
        out[f"fields.{kind}."] = [f.name for f in dc_fields(cls) if f.name not in _SCENE_SIZED]
    return out


def _check_file(d: dict, where: str) -> None:
    """One preset file's keys (each where it belongs) and value types."""
    from .densify import DensifyConfig
    from .reconstruct import TrainConfig

    layout = _layout()
    _check_keys(d, layout, where, "")
    if "field" in d and (not isinstance(d["field"], str) or d["field"] not in FIELD_CLASSES):
        raise PresetError(f"{where}: 'field' is {json.dumps(d['field'])}; choose one of {', '.join(FIELD_CLASSES)}")
    if "description" in d and not isinstance(d["description"], str):
        raise PresetError(f"{where}: 'description' is a line of text")
    train = d.get("train", {})
    if not isinstance(train, dict):
        raise PresetError(f"{where}: 'train' must be an object of training values, e.g. {{\"iters\": 6000}}")
    _check_keys(train, layout, where, "train.")
    densify = train.get("densify", {})
    if not isinstance(densify, dict):
        raise PresetError(f"{where}: 'train.densify' must be an object, e.g. {{\"max_gaussians\": 20000}}")
    _check_keys(densify, layout, where, "train.densify.")
    _check_types(TrainConfig, {k: v for k, v in train.items() if k != "densify"}, where, "train.")
    _check_types(DensifyConfig, densify, where, "train.densify.")
    sizes = d.get("fields", {})
    if not isinstance(sizes, dict):
        raise PresetError(f"{where}: 'fields' maps a field kind to its sizes, e.g. {{\"nodes\": {{\"nodes\": 48}}}}")
    _check_keys(sizes, layout, where, "fields.")
    for k, v in sizes.items():  # every kind the file sizes, not only the one a run uses
        if not isinstance(v, dict):
            raise PresetError(f"{where}: 'fields.{k}' must be an object of {FIELD_CLASSES[k].__name__} values")
        _check_keys(v, layout, where, f"fields.{k}.")
        _check_types(FIELD_CLASSES[k], v, where, f"fields.{k}.")


def _check_keys(d: dict, layout: Dict[str, list], where: str, prefix: str) -> None:
    allowed = layout[prefix]
    for k in d:
        if k in allowed:
            continue
        # a known key at another level ("iters" at the top instead of under "train")
        homes = [p + k for p, keys in layout.items() if k in keys and p != prefix]
        homes += [p[:-1] for p in layout if p.endswith("." + k + ".") and p[:-1] != prefix + k]
        if homes:
            hint = f"; it belongs under {' or '.join(repr(h) for h in sorted(set(homes)))}"
        else:
            near = difflib.get_close_matches(k, allowed, n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; known here: {', '.join(allowed)}"
        raise PresetError(f"{where}: unknown key '{prefix}{k}'{hint}")


_AT_LEAST = {  # dotted key -> least value (ints and floats); fractions below
    "train.iters": 1, "train.warmup_iters": 0, "train.sh_degree": 0, "train.sh_interval": 1,
    "train.init_points": 1, "train.init_time_scale": 1e-6, "train.downscales": 0,
    "train.resolution_schedule": 1, "train.checkpoint_every": 1, "train.seed": 0, "train.threads": 1,
    "train.plane_tv_weight": 0, "train.time_smoothness_weight": 0,
    "train.densify.grow_grad2d": 0, "train.densify.grow_scale3d": 0, "train.densify.prune_scale3d": 0,
    "train.densify.refine_start": 0, "train.densify.refine_stop": 0, "train.densify.refine_every": 1,
    "train.densify.reset_every": 1, "train.densify.max_gaussians": 1,
    "fields.hexplane.features": 1, "fields.hexplane.time_resolution": 2, "fields.hexplane.hidden": 1,
    "fields.mlp.pos_freqs": 0, "fields.mlp.time_freqs": 0, "fields.mlp.hidden": 1, "fields.mlp.depth": 1,
    "fields.nodes.nodes": 1, "fields.nodes.time_resolution": 1,
}
_BETWEEN = {"train.sh_degree": (0, 3), "train.init_opacity": (1e-6, 1 - 1e-6), "train.lambda_dssim": (0, 1),
            "train.time_curriculum": (0, 1), "train.time_window_start": (1e-6, 1),
            "train.densify.prune_opacity": (0, 1)}


def _check_ranges(cfg, kind: str, where: str) -> None:
    from dataclasses import asdict

    flat = {f"train.{k}": v for k, v in asdict(cfg).items() if k not in ("densify", "deformation")}
    flat.update({f"train.densify.{k}": v for k, v in asdict(cfg.densify).items()})
    flat.update({f"fields.{kind}.{k}": v for k, v in asdict(cfg.deformation).items() if k not in _SCENE_SIZED})
    for key, v in flat.items():
        if v is None or isinstance(v, (bool, str)):
            continue
        if isinstance(v, (list, tuple)):
            if key == "fields.hexplane.resolutions" and (not v or min(v) < 2):
                raise PresetError(f"{where}: '{key}' is {json.dumps(list(v))}; give one or more grid sizes of "
                                  "at least 2, e.g. [32, 64]")
            continue
        least = 0 if key.startswith("train.lr_") else _AT_LEAST.get(key)
        if key in _BETWEEN:
            lo, hi = _BETWEEN[key]
            if not lo <= v <= hi:
                raise PresetError(f"{where}: '{key}' is {v}; it must be between {lo:g} and {hi:g}")
        elif least is not None and v < least:
            raise PresetError(f"{where}: '{key}' is {v}; it must be at least {least:g}")


def _check_types(cls, d: dict, where: str, prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    for k, v in d.items():
        if not _fits(hints[k], v):
            raise PresetError(f"{where}: '{prefix}{k}' is {json.dumps(v)}, which is not {_describe(hints[k])}")


def _fits(tp, v) -> bool:
    origin = typing.get_origin(tp)
    if origin is Union:
        return any(_fits(a, v) for a in typing.get_args(tp))
    if tp is type(None):
        return v is None
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is str:
        return isinstance(v, str)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return isinstance(v, list) and all(_fits(args[0], x) for x in v) if args else isinstance(v, list)
    if is_dataclass(tp):
        return isinstance(v, dict)
    return True


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(typing.get_args(tp)[0], "values")
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))

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

Every key is optional; what a file leaves out comes from its ``base`` (or the built-in defaults),
so ``{"base": "fast", "train": {"iters": 6000}}`` is a complete preset. Unknown keys and values of
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
from typing import Optional, Union

import configs

from .deformation import HexPlaneConfig, MLPConfig, MotionNodesConfig

FIELD_CLASSES = {"hexplane": HexPlaneConfig, "mlp": MLPConfig, "nodes": MotionNodesConfig}
"""Deformation field kinds: space-time planes, positional-encoding MLP, rigid motion nodes."""

_PRESET_KEYS = ("description", "base", "field", "fields", "train")
_SCENE_SIZED = ("kind", "bounds_radius", "bounds_center")  # set by the run from the capture, not by a preset


class PresetError(ValueError):
    """A preset name or file that cannot be used; the message names the file and the key."""


def preset_names() -> list[str]:
    """The presets shipped in ``configs/``."""
    return configs.names()


def preset_path(name_or_path: Union[str, Path]) -> Path:
    """The file behind a preset name (``fast``) or a path (``my.json``)."""
    s = str(name_or_path)
    p = Path(s)
    if s.endswith(".json") or p.is_file() or "/" in s:
        if not p.is_file():
            raise PresetError(f"{p}: no such preset file (named presets: {', '.join(preset_names())})")
        return p
    if s not in preset_names():
        near = difflib.get_close_matches(s, preset_names(), n=1)
        raise PresetError(f"unknown preset {s!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                          + f"; choose one of {', '.join(preset_names())}, or give a preset file (.json)"
                          f" — copy one of {configs.DIR} and edit it")
    return configs.DIR / f"{s}.json"


def read_preset(name_or_path: Union[str, Path], _seen: tuple = ()) -> dict:
    """The preset as one dict, its ``base`` chain merged in (the file's own keys win)."""
    path = preset_path(name_or_path)
    where = str(path)
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PresetError(f"{where}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(d, dict):
        raise PresetError(f"{where}: a preset file holds one JSON object, got {type(d).__name__}")
    _check_keys(d, _PRESET_KEYS, where, "")
    if "base" in d:
        base = d["base"]
        if not isinstance(base, str):
            raise PresetError(f"{where}: 'base' is the name or path of another preset, got {base!r}")
        if Path(base).suffix == ".json" and not Path(base).is_absolute():
            base = str(path.parent / base)  # relative to the file that names it
        key = str(preset_path(base).resolve())
        if key in _seen:
            raise PresetError(f"{where}: 'base' chain loops back to {base}")
        merged = read_preset(base, _seen + (str(path.resolve()),))
        d = _merge(merged, {k: v for k, v in d.items() if k != "base"})
    return d


def load_preset(name_or_path: Union[str, Path], field: Optional[str] = None):
    """A :class:`~scene4d.reconstruct.TrainConfig` from a preset name or file. ``field`` (one of
    :data:`FIELD_CLASSES`) replaces the preset's deformation field by that kind, sized as the
    preset sizes it."""
    from .densify import DensifyConfig
    from .reconstruct import TrainConfig

    if field is not None and field not in FIELD_CLASSES:
        raise PresetError(f"unknown deformation field {field!r}; choose one of {', '.join(FIELD_CLASSES)}")
    path = preset_path(name_or_path)
    where = str(path)
    d = read_preset(path)
    train = d.get("train", {})
    if not isinstance(train, dict):
        raise PresetError(f"{where}: 'train' must be an object of TrainConfig values")
    train = dict(train)
    allowed = [f.name for f in dc_fields(TrainConfig) if f.name != "deformation"]
    _check_keys(train, allowed, where, "train.")
    densify = train.pop("densify", {})
    if not isinstance(densify, dict):
        raise PresetError(f"{where}: 'train.densify' must be an object of DensifyConfig values")
    _check_keys(densify, [f.name for f in dc_fields(DensifyConfig)], where, "train.densify.")
    _check_types(TrainConfig, train, where, "train.")
    _check_types(DensifyConfig, densify, where, "train.densify.")
    cfg = TrainConfig(**train, densify=DensifyConfig(**densify))

    kind = field or d.get("field", "hexplane")
    if kind not in FIELD_CLASSES:
        raise PresetError(f"{where}: 'field' is {kind!r}; choose one of {', '.join(FIELD_CLASSES)}")
    sizes = d.get("fields", {})
    if not isinstance(sizes, dict):
        raise PresetError(f"{where}: 'fields' maps a field kind to its sizes, e.g. {{\"nodes\": {{\"nodes\": 48}}}}")
    _check_keys(sizes, list(FIELD_CLASSES), where, "fields.")
    for k, v in sizes.items():  # every kind the file sizes, not only the one this run uses
        if not isinstance(v, dict):
            raise PresetError(f"{where}: 'fields.{k}' must be an object of {FIELD_CLASSES[k].__name__} values")
        cls = FIELD_CLASSES[k]
        _check_keys(v, [f.name for f in dc_fields(cls) if f.name not in _SCENE_SIZED], where, f"fields.{k}.")
        _check_types(cls, v, where, f"fields.{k}.")
    cfg.deformation = FIELD_CLASSES[kind](**sizes.get(kind, {}))
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


# ----------------------------------------------------------------------------- checks
def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _check_keys(d: dict, allowed, where: str, prefix: str) -> None:
    for k in d:
        if k not in allowed:
            near = difflib.get_close_matches(k, list(allowed), n=1)
            raise PresetError(f"{where}: unknown key '{prefix}{k}'" + (f"; did you mean '{prefix}{near[0]}'?" if near
                                                                           else f"; known: {', '.join(allowed)}"))


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

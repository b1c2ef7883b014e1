"""The scene folder, the one thing every command reads and writes::

    scene/
      scene.json           format name + version, entities (name, Gaussian count, deformation
                           kind/config each), up axis, time range, background, provenance; written
                           LAST, so its presence means "complete"
      weights.safetensors  canonical Gaussians of every entity (canonical.*), each Gaussian's entity
                           (entity.index, int64) and entity i's deformation parameters (deformation.i.*)
      cameras.json         the capture's train/test cameras (for --path train|test)
      checkpoints/         resumable training state (safetensors + JSON)
      renders/, metrics.json

Every file is written atomically (temporary file + rename). No pickle anywhere.

Version history: 1 (one entity; weights ``deformation.*``, no ``entity.index``, no ``up``);
2 (several entities, ``up``). Version-1 folders load as one-entity scenes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

from cameras import Cameras
from cameras.io import publish_mode

from .deformation import config_from_dict, config_to_dict
from .field import PARAM_NAMES, TEMPORAL_NAMES, EntitySpec, Scene4D

FORMAT = "scene4d"
VERSION = 2
UP_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")
"""What ``scene.json``'s ``up`` may say: the world axis that points up."""


class SceneFolderError(ValueError):
    """A scene folder that cannot be read: says what is missing and what to do."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_save_tensors(path: Path, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb+") as f:  # on disk before the rename (and before any manifest naming it)
            os.fsync(f.fileno())
        publish_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cameras_to_json(cams: Cameras) -> dict:
    return {
        "width": cams.width,
        "height": cams.height,
        "K": cams.K.detach().cpu().double().tolist(),
        "world_to_camera": cams.world_to_camera.detach().cpu().double().tolist(),
        "times": None if cams.times is None else cams.times.detach().cpu().double().tolist(),
    }


def cameras_from_json(d: dict, where: str) -> Cameras:
    try:
        return Cameras(
            K=torch.tensor(d["K"], dtype=torch.float32),
            world_to_camera=torch.tensor(d["world_to_camera"], dtype=torch.float32),
            width=int(d["width"]),
            height=int(d["height"]),
            times=None if d.get("times") is None else torch.tensor(d["times"], dtype=torch.float32),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SceneFolderError(f"{where}: malformed cameras ({type(e).__name__}: {e})") from None


def scene_tensors(scene: Scene4D) -> Dict[str, torch.Tensor]:
    """Every tensor of ``scene`` by its weights-file name (format version 2)."""
    scene.check_rows()
    out = {f"canonical.{k}": scene.params[k] for k in scene.param_names}
    out["entity.index"] = scene.entity
    for i, f in enumerate(scene.fields):
        if f is not None:
            out.update({f"deformation.{i}.{k}": v for k, v in f.state_dict().items()})
    return out


def load_scene_tensors(scene: Scene4D, tensors: Dict[str, torch.Tensor], where: str = "weights") -> None:
    """Put ``tensors`` (:func:`scene_tensors`' names, or version 1's ``deformation.*``) into
    ``scene``, whose entities and fields must match; the Gaussian count may differ."""
    params = {}
    for k in scene.param_names:
        if f"canonical.{k}" not in tensors:
            raise SceneFolderError(f"{where}: missing tensor 'canonical.{k}'")
        params[k] = tensors[f"canonical.{k}"]
    scene.replace_gaussians(params, tensors.get("entity.index"))
    _load_fields(scene, tensors, version=2 if "entity.index" in tensors else 1, where=where)


def _check_shapes(specs, params, tensors, version, meta_path, wpath) -> None:
    """Before anything is built: every tensor scene.json implies (the Gaussians' and each field's,
    laid out on the meta device, which allocates nothing) exists in the weights with that shape
    and a floating dtype. A hand-edited scene.json asking for 10^9 nodes, or weights of another
    scene, stop here in one line instead of allocating gigabytes or failing inside torch."""
    from .deformation import make_field

    n = params["means"].shape[0] if params["means"].dim() == 2 else -1
    for k, t in params.items():
        if not t.is_floating_point() or t.shape[:1] != (n,) or (k == "means" and tuple(t.shape) != (n, 3)):
            raise SceneFolderError(f"{wpath}: canonical.{k} has shape {tuple(t.shape)} and dtype {t.dtype}; expected "
                                   f"{n} rows of floats (as canonical.means); the file is damaged or from another scene")
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).reshape(n, -1).any(1).sum()) if n > 0 else 0
            raise SceneFolderError(f"{wpath}: canonical.{k} holds NaN or infinite values ({bad} of {n} Gaussians); the "
                                   "run that made it diverged or the file is damaged: fit it again with lower learning "
                                   "rates")
    for i, spec in enumerate(specs):
        if spec.deformation is None:
            continue
        try:
            with torch.device("meta"):
                field = make_field(spec.deformation)
        except (ValueError, TypeError, RuntimeError) as e:
            raise SceneFolderError(f"{meta_path}: entities[{i}].deformation cannot be built ({str(e)[:200]})") from None
        prefix = f"deformation.{i}." if version >= 2 else "deformation."
        for name, p in field.state_dict().items():
            t = tensors.get(prefix + name)
            if t is None or tuple(t.shape) != tuple(p.shape) or not t.is_floating_point():
                got = "missing" if t is None else f"{tuple(t.shape)} {t.dtype}"
                raise SceneFolderError(f"{meta_path}: entities[{i}].deformation implies {prefix + name} of shape "
                                       f"{tuple(p.shape)}, but {wpath.name} holds {got}; scene.json and the weights do "
                                       "not belong together (was scene.json edited by hand?)")


def _load_fields(scene: Scene4D, tensors: Dict[str, torch.Tensor], *, version: int, where) -> None:
    for i, f in enumerate(scene.fields):
        if f is None:
            continue
        prefix = f"deformation.{i}." if version >= 2 else "deformation."  # version 1: one field, no index
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            f.load_state_dict(sd)
        except RuntimeError as e:
            raise SceneFolderError(f"{where}: deformation weights of entity {i} do not match scene.json "
                                   f"({str(e)[:200]})") from None


def save_scene(
    folder: Path,
    scene: Scene4D,
    *,
    train_cameras: Optional[Cameras] = None,
    test_cameras: Optional[Cameras] = None,
    background=(1.0, 1.0, 1.0),
    provenance: Optional[dict] = None,
    up: str = "+z",
) -> Path:
    """Write a complete scene folder; ``scene.json`` goes last. ``up``: the world axis that points
    up (one of :data:`UP_AXES`), for viewers and exporters."""
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {', '.join(UP_AXES)}, not {up!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(folder / "weights.safetensors", scene_tensors(scene))
    cams = {}
    if train_cameras is not None:
        cams["train"] = cameras_to_json(train_cameras)
    if test_cameras is not None:
        cams["test"] = cameras_to_json(test_cameras)
    atomic_write_json(folder / "cameras.json", cams)
    counts = torch.bincount(scene.entity.detach().cpu(), minlength=scene.n_entities).tolist()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "entities": [
            {
                "name": e.name,
                "n_gaussians": int(counts[i]),
                "sh_degree": scene.sh_degree,
                "temporal_opacity": scene.temporal_opacity,
                "deformation": None if e.deformation is None else config_to_dict(e.deformation),
            }
            for i, e in enumerate(scene.entities)
        ],
        "up": up,
        "time_range": [0.0, 1.0],
        "background": list(map(float, background)),
        "provenance": {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(provenance or {})},
    }
    atomic_write_json(folder / "scene.json", meta)
    return folder


def load_scene(folder: Path) -> Tuple[Scene4D, dict, Dict[str, Cameras]]:
    """Read a scene folder (format version 1 or 2) -> (scene, scene.json dict, {"train": Cameras,
    "test": Cameras}). A version-1 ``scene.json`` is returned with ``up`` set to "+z"."""
    folder = Path(folder)
    if not folder.exists():
        raise SceneFolderError(f"{folder}: no such scene folder")
    if not folder.is_dir():
        raise SceneFolderError(f"{folder}: not a folder (a scene is a folder made by scene4d reconstruct/generate)")
    meta_path = folder / "scene.json"
    if not meta_path.is_file():
        hint = ""
        if (folder / "checkpoints").is_dir():
            hint = (" It has training checkpoints: the run did not finish. Continue it with "
                    f"`scene4d reconstruct DATA --out {folder} --resume`.")
        raise SceneFolderError(f"{folder}: not a complete scene4d scene (no scene.json).{hint}")
    from cameras.limits import read_json

    try:
        meta = read_json(meta_path, "scene.json", max_bytes=8 << 20)
    except ValueError as e:
        raise SceneFolderError(str(e)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SceneFolderError(f"{meta_path}: not a scene4d scene file (format is {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise SceneFolderError(
            f"{meta_path}: scene format version {version!r} is newer than this scene4d understands ({VERSION}); "
            "upgrade scene4d (pip install -U scene4d)"
        )
    wpath = folder / "weights.safetensors"
    if not wpath.is_file():
        raise SceneFolderError(f"{folder}: scene.json is there but weights.safetensors is missing; the folder is damaged")
    try:
        tensors = load_file(str(wpath))
    except Exception as e:
        raise SceneFolderError(f"{wpath}: unreadable weights ({e}); the file is damaged or truncated") from None
    ents = meta.get("entities")
    if not isinstance(ents, list) or not ents or not all(isinstance(e, dict) for e in ents):
        raise SceneFolderError(f"{meta_path}: 'entities' is missing or not a list of objects; the file is damaged "
                               "(re-run scene4d reconstruct, or restore scene.json)")
    if version < 2 and len(ents) != 1:
        raise SceneFolderError(f"{meta_path}: a version-1 scene has exactly one entity, this one lists {len(ents)}")
    up = meta.setdefault("up", "+z")
    if up not in UP_AXES:
        raise SceneFolderError(f"{meta_path}: 'up' is {up!r}; it must be one of {', '.join(UP_AXES)}")
    ent = ents[0]
    names = PARAM_NAMES + (TEMPORAL_NAMES if ent.get("temporal_opacity") else ())
    params = {}
    for k in names:
        key = f"canonical.{k}"
        if key not in tensors:
            raise SceneFolderError(f"{wpath}: missing tensor {key!r}")
        params[k] = tensors[key]
    index = tensors.get("entity.index")
    if version >= 2 and index is None:
        raise SceneFolderError(f"{wpath}: missing tensor 'entity.index'; the folder is damaged")
    specs = []
    for i, e in enumerate(ents):
        dcfg = e.get("deformation")
        try:
            specs.append(EntitySpec(str(e.get("name", f"entity{i}")), config_from_dict(dcfg) if dcfg else None))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise SceneFolderError(f"{meta_path}: entities[{i}] does not describe a scene this scene4d can build "
                                   f"({type(err).__name__}: {str(err)[:200]}); was scene.json edited by hand?") from None
    _check_shapes(specs, params, tensors, version, meta_path, wpath)
    try:
        scene = Scene4D(params, sh_degree=int(ent.get("sh_degree", 0)), entities=specs, entity=index)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise SceneFolderError(f"{meta_path}: entities do not describe a scene this scene4d can build "
                               f"({type(e).__name__}: {str(e)[:200]}); was scene.json edited by hand?") from None
    _load_fields(scene, tensors, version=version, where=wpath)
    cams: Dict[str, Cameras] = {}
    cpath = folder / "cameras.json"
    if cpath.is_file():
        try:
            cj = read_json(cpath, "cameras.json")
        except ValueError as e:
            raise SceneFolderError(str(e)) from None
        for split in ("train", "test"):
            if split in cj:
                cams[split] = cameras_from_json(cj[split], f"{cpath}[{split}]")
    return scene, meta, cams

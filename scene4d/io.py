"""The scene folder, the one thing every command reads and writes::

    scene/
      scene.json           format name + version, entities, deformation kind/config, time range,
                           background, provenance; written LAST, so its presence means "complete"
      weights.safetensors  canonical Gaussians (canonical.*) and deformation parameters (deformation.*)
      cameras.json         the capture's train/test cameras (for --path train|test)
      checkpoints/         resumable training state (safetensors + JSON)
      renders/, metrics.json

Every file is written atomically (temporary file + rename). No pickle anywhere.
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
from .field import PARAM_NAMES, TEMPORAL_NAMES, Scene4D

FORMAT = "scene4d"
VERSION = 1


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
    out = {f"canonical.{k}": scene.params[k] for k in scene.param_names}
    if scene.deformation is not None:
        out.update({f"deformation.{k}": v for k, v in scene.deformation.state_dict().items()})
    return out


def save_scene(
    folder: Path,
    scene: Scene4D,
    *,
    train_cameras: Optional[Cameras] = None,
    test_cameras: Optional[Cameras] = None,
    background=(1.0, 1.0, 1.0),
    provenance: Optional[dict] = None,
) -> Path:
    """Write a complete scene folder; ``scene.json`` goes last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(folder / "weights.safetensors", scene_tensors(scene))
    cams = {}
    if train_cameras is not None:
        cams["train"] = cameras_to_json(train_cameras)
    if test_cameras is not None:
        cams["test"] = cameras_to_json(test_cameras)
    atomic_write_json(folder / "cameras.json", cams)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "entities": [
            {
                "name": "scene",
                "n_gaussians": len(scene),
                "sh_degree": scene.sh_degree,
                "temporal_opacity": scene.temporal_opacity,
                "deformation": None if scene.deformation_cfg is None else config_to_dict(scene.deformation_cfg),
            }
        ],
        "time_range": [0.0, 1.0],
        "background": list(map(float, background)),
        "provenance": {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(provenance or {})},
    }
    atomic_write_json(folder / "scene.json", meta)
    return folder


def load_scene(folder: Path) -> Tuple[Scene4D, dict, Dict[str, Cameras]]:
    """Read a scene folder -> (scene, scene.json dict, {"train": Cameras, "test": Cameras})."""
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
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise SceneFolderError(f"{meta_path}: not valid JSON ({e})") from None
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
    if not isinstance(ents, list) or not ents or not isinstance(ents[0], dict):
        raise SceneFolderError(f"{meta_path}: 'entities' is missing or not a list of objects; the file is damaged "
                               "(re-run scene4d reconstruct, or restore scene.json)")
    ent = ents[0]
    params = {}
    names = PARAM_NAMES + (TEMPORAL_NAMES if ent.get("temporal_opacity") else ())
    for k in names:
        key = f"canonical.{k}"
        if key not in tensors:
            raise SceneFolderError(f"{wpath}: missing tensor {key!r}")
        params[k] = tensors[key]
    dcfg = ent.get("deformation")
    try:
        scene = Scene4D(params, config_from_dict(dcfg) if dcfg else None, sh_degree=int(ent.get("sh_degree", 0)))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise SceneFolderError(f"{meta_path}: entities[0] does not describe a scene this scene4d can build "
                               f"({type(e).__name__}: {str(e)[:200]}); was scene.json edited by hand?") from None
    if scene.deformation is not None:
        sd = {k[len("deformation."):]: v for k, v in tensors.items() if k.startswith("deformation.")}
        try:
            scene.deformation.load_state_dict(sd)
        except RuntimeError as e:
            raise SceneFolderError(f"{wpath}: deformation weights do not match scene.json ({str(e)[:200]})") from None
    cams: Dict[str, Cameras] = {}
    cpath = folder / "cameras.json"
    if cpath.is_file():
        try:
            cj = json.loads(cpath.read_text())
        except json.JSONDecodeError as e:
            raise SceneFolderError(f"{cpath}: not valid JSON ({e})") from None
        for split in ("train", "test"):
            if split in cj:
                cams[split] = cameras_from_json(cj[split], f"{cpath}[{split}]")
    return scene, meta, cams

"""The import job: a splat file (ply, splat, spz v1-v4, KHR glb) -> a static scene folder.

The file's frame: if ``FILE.export.json`` (written by ``scene4d export``) lies beside it, its
``frame_on_disk`` is undone exactly and the scene gets back its recorded up axis. Otherwise the
file's own frame tag is used (scene4d writes one into ply headers and glb ``asset.extras``
when the file is not in its format's usual frame, e.g. mirrored for Unity); otherwise the
file is taken to be in its format's usual frame — PLY/.splat/SPZ (after SPZ's RUB -> RDF flip):
the 3DGS/COLMAP one, up -Y; glb: glTF's, up +Y — and rotated so that the scene is Z-up, which
``scene4d render`` assumes. ``--up`` names the file's up axis instead (right-handed); ``--frame TARGET`` says which export
``--target`` wrote it (``unity``: a mirrored file, e.g. a .spz or .splat, which carry no tag).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..formats import FormatError
from ..formats.frames import TARGETS, frame_change, parse_up, transform_splats, up_to_z
from ..render import UsageError
from . import glb, ply, splat, spz

BY_SUFFIX = {".ply": ply, ".splat": splat, ".spz": spz, ".glb": glb}


def _sniff(path: Path):
    head = path.read_bytes()[:4]
    if head[:3] == b"ply":
        return ply
    if head == b"glTF":
        return glb
    if head[:2] == b"\x1f\x8b" or head == b"NGSP":
        return spz
    return None


def _file_to_scene_frame(path: Path, unit, up: Optional[str], frame: Optional[str] = None):
    """(F taking file data into the scene frame, scene up axis, how it was decided).

    In order: ``--up`` or ``--frame`` (the user says); ``FILE.export.json`` beside the file; the
    frame tag scene4d writes into ply headers and glb ``asset.extras`` when a file is not in its
    format's usual frame (e.g. ``--target unity``: mirrored); the format's convention."""
    disk = np.eye(3) if unit is not spz else spz.RDF_TO_RUB  # its own inverse
    if up is not None:
        return up_to_z(up) @ disk, "+z", f"--up {up}"
    if frame is not None:
        return frame_change("+z", frame).T @ disk, "+z", f"--frame {frame}"
    rec_path = path.parent / (path.name + ".export.json")
    if rec_path.is_file():
        try:
            rec = json.loads(rec_path.read_text())
            F = np.array(rec["frame_on_disk"], np.float64)[:3, :3]
            return F.T, parse_up(rec["up"]["scene"]), f"undoing {rec_path.name}"
        except (ValueError, KeyError, TypeError):
            pass  # not our record: fall back to the file's tag or the format's convention
    tag = unit.embedded_frame(path) if hasattr(unit, "embedded_frame") else None
    if tag is not None:
        target, scene_up = tag
        return frame_change(scene_up, target).T @ disk, scene_up, f"the file's frame tag (written for {target}, up {scene_up})"
    file_up = {"generic": "-y", "gltf": "+y"}[unit.FILE_FRAME]
    return up_to_z(file_up) @ disk, "+z", f"{unit.NAME} convention (up {file_up})"


def import_file(path: Path, out: Path, up: Optional[str] = None, frame: Optional[str] = None) -> dict:
    """Write a static scene folder from a splat file; returns a summary."""
    from renderers.splat_io import SplatFileError

    from ..field import Scene4D
    from ..io import atomic_write_json, save_scene

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if up is not None:
        try:
            up = parse_up(up)
        except ValueError as e:
            raise UsageError(f"--up: {e}") from None
    if frame is not None:
        if up is not None:
            raise UsageError("--up and --frame both say what the file's frame is; give one")
        if frame not in TARGETS:
            raise UsageError(f"unknown --frame {frame!r}; choose one of {', '.join(TARGETS)} (the --target it was "
                             "exported for)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} already exists; choose a new folder (import never overwrites)")
    unit = BY_SUFFIX.get(path.suffix.lower()) or _sniff(path)
    if unit is None:
        raise FormatError(f"{path}: not a splat file scene4d reads (.ply, .splat, .spz, .glb)")
    try:
        s = unit.read(path)
    except SplatFileError as e:
        raise FormatError(str(e)) from None
    if len(s) == 0:
        raise FormatError(f"{path}: the file holds no Gaussians")
    finite = all(np.isfinite(a).all() for a in (s.means, s.quats, s.log_scales, s.sh))
    if not finite:
        raise FormatError(f"{path}: the file holds NaN or infinite values; damaged or not a splat file")
    F, scene_up, how = _file_to_scene_frame(path, unit, up, frame)
    s = transform_splats(s, F)
    import torch

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    params = {"means": t(s.means), "quats": t(s.quats), "log_scales": t(s.log_scales),
              "opacity_logits": t(s.opacity_logits), "sh_dc": t(s.sh[:, :1]), "sh_rest": t(s.sh[:, 1:])}
    scene = Scene4D(params, None, sh_degree=s.sh_degree)
    save_scene(out, scene, provenance={"command": f"scene4d import {path}", "imported_from": str(path),
                                       "import_frame": how})
    meta = json.loads((out / "scene.json").read_text())
    if meta.get("up") != scene_up:
        meta["up"] = scene_up
        atomic_write_json(out / "scene.json", meta)
    return {"n_gaussians": len(s), "sh_degree": s.sh_degree, "format": unit.NAME, "frame": how, "up": scene_up}

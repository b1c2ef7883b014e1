"""The export job: scene (folder or .ply) -> one file per format, or a PLY sequence, + ``OUT.export.json``.

Time: a scene's times span ``scene.json``'s ``time_range`` (default [0, 1]). A static format is
written at ``--time`` (default: the start of the range); ``ply-sequence`` writes ``--frames`` N
files at ``t_k = t0 + (t1 - t0) k / (N - 1)``, played at ``--fps`` (duration N / fps).

Frame: the scene's up axis (``scene.json`` ``"up"``, default ``"+z"``; ``--up`` overrides) and
the target (:mod:`scene4d.formats.frames`) give an orthogonal F; positions, orientations and SH
bands are transformed together. The record beside the output says exactly what was done.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from renderers.ply import write_atomic

from ..formats import Splats
from ..formats.frames import (TARGETS, axis_name, frame_change, frame_matrix4, handedness, parse_up,
                              transform_splats)
from ..render import UsageError
from . import animated, glb, mesh, ply, splat, splatv, spz, usd

UNITS = {"ply": ply, "splat": splat, "spz": spz, "glb": glb, "splatv": splatv, "mesh": mesh,
         "mesh-anim": animated, "usd": usd}
FORMATS = ("ply", "ply-sequence", "splat", "spz", "glb", "splatv", "mesh", "mesh-anim", "mesh-sequence", "usd")
NOT_YET = {
    "skin": "a skinned mesh is --format mesh-anim (a skin for motion-nodes scenes, morph targets otherwise; "
            "--animation skin|morph chooses)",
}
WRITER = "scene4d 0.1.0"


@dataclass
class ExportOptions:
    format: str
    target: Optional[str] = None
    up: Optional[str] = None
    time: Optional[float] = None
    frames: Optional[int] = None
    fps: float = 30.0
    sh_degree: Optional[int] = None
    spz_version: int = 2
    segments: int = 1
    tolerance: float = 0.005
    views: int = 44
    view_size: int = 256
    voxel: float = 0.0
    faces: int = 0
    animation: str = "auto"
    influences: int = 4
    scene_up: str = "+z"
    """Set by the job: the source's up axis (the frame tag ply/glb files carry records it)."""


@dataclass
class Source:
    path: Path
    scene: object  # anything with at(t) -> Gaussians
    up: str
    up_from: str
    time_range: tuple
    dynamic: bool
    sha256: str
    sh_degree: int = 0


def _sha256(paths: List[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_source(path: Path, up: Optional[str] = None) -> Source:
    """A scene folder or a 3DGS .ply, with its up axis and time range."""
    from ..cli import load_scene

    path = Path(path)
    scene, _, _ = load_scene(path)
    if path.is_dir():
        meta = json.loads((path / "scene.json").read_text())  # load_scene has checked it
        scene_up, up_from = meta.get("up", "+z"), "scene.json" if "up" in meta else "default (+z)"
        tr = meta.get("time_range", [0.0, 1.0])
        dynamic = bool(getattr(scene, "dynamic", False))  # any entity with a field, or temporal opacity
        files = [path / "scene.json", path / "weights.safetensors"]
    else:
        scene_up, up_from, tr, dynamic, files = "+z", "default (+z)", [0.0, 1.0], False, [path]
    if up is not None:
        scene_up, up_from = up, "--up"
    try:
        scene_up = parse_up(scene_up)
    except ValueError as e:
        raise UsageError(f"--up: {e}" if up_from == "--up" else f"{path}: scene.json 'up': {e}") from None
    sh = getattr(scene, "sh_degree", None)
    if sh is None:  # a static .ply: the degree its coefficients hold
        sh = scene.at(0.0).sh_degree
    return Source(path, scene, scene_up, up_from, (float(tr[0]), float(tr[1])), dynamic, _sha256(files), int(sh))


def resolve_format(fmt: Optional[str], out: Path) -> str:
    if fmt is None:
        by_suffix = {".ply": "ply", ".splat": "splat", ".spz": "spz", ".glb": "glb", ".splatv": "splatv",
                     ".usd": "usd", ".usda": "usd", ".usdc": "usd"}
        if out.suffix.lower() in by_suffix:
            return by_suffix[out.suffix.lower()]
        raise UsageError(f"--format is needed: {out} has no suffix that names one ({', '.join(FORMATS)})")
    f = fmt.strip().lower()
    if f in NOT_YET:
        raise UsageError(NOT_YET[f])
    if f not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return f


def check_writable(out: Path, folder: bool) -> None:
    """Fail before any work if ``out`` cannot be written (one line naming the reason)."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir() and not folder:
        raise UsageError(f"--out {out} is a folder; give a file name (e.g. {out / ('scene' + '.ply')})")
    if out.exists() and not out.is_dir() and folder:
        raise UsageError(f"--out {out} is a file; a sequence is written into a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def frame_times(src: Source, opts: ExportOptions, sequence: bool) -> List[float]:
    t0, t1 = src.time_range
    if sequence:
        if opts.time is not None:
            raise UsageError(f"--time picks one instant; a {opts.format} takes --frames N (and --fps)")
        n = 30 if opts.frames is None else opts.frames
        if n < 1:
            raise UsageError(f"--frames must be at least 1, got {n}")
        if opts.fps <= 0:
            raise UsageError(f"--fps must be positive, got {opts.fps}")
        return [t0] if n == 1 else [t0 + (t1 - t0) * k / (n - 1) for k in range(n)]
    if opts.frames is not None:
        raise UsageError(f"--frames is for ply-sequence, mesh-sequence, mesh-anim and usd; {opts.format} holds one instant "
                         "(use --time T)")
    t = t0 if opts.time is None else float(opts.time)
    if not (t0 - 1e-9 <= t <= t1 + 1e-9) or not np.isfinite(t):
        raise UsageError(f"--time {opts.time} is outside the scene's time range [{t0:g}, {t1:g}]")
    return [t]


def splats_at(src: Source, t: float, sh_degree: Optional[int]) -> Splats:
    import torch

    with torch.no_grad():
        g = src.scene.at(t)
    if len(g) == 0:
        raise UsageError(f"{src.path}: the scene has no Gaussians at t={t:g}; nothing to export")
    s = Splats.from_gaussians(g)
    if sh_degree is not None:
        if not 0 <= sh_degree <= 3:
            raise UsageError(f"--sh-degree must be 0..3, got {sh_degree}")
        s = s.with_sh_degree(min(sh_degree, s.sh_degree))
    return s


def export(path: Path, out: Path, opts: ExportOptions) -> dict:
    """Run one export; returns the record written to ``OUT.export.json``."""
    t_start = _time.perf_counter()
    out = Path(out)
    fmt = resolve_format(opts.format, out)
    opts.format = fmt
    if fmt == "usd":  # USD records its up axis: written Z-up, no target frame
        if opts.target not in (None, "blender"):
            raise UsageError("--target does not apply to USD: the stage records its up axis (written Z-up)")
        opts.target = "blender"
    if opts.target is None:  # glTF files default to glTF's own frame, everything else to the 3DGS one
        opts.target = "gltf" if fmt in ("glb", "mesh-anim", "mesh-sequence") or (fmt == "mesh" and out.suffix.lower() == ".glb") \
            else "generic"
    if opts.target not in TARGETS:
        raise UsageError(f"unknown --target {opts.target!r}; choose one of {', '.join(TARGETS)}")
    if fmt == "spz" and opts.spz_version not in (2, 3, 4):
        raise UsageError(f"--spz-version must be 2, 3 or 4, got {opts.spz_version}")
    sequence = fmt in ("ply-sequence", "mesh-sequence")
    if fmt in ("mesh", "usd"):
        if out.suffix.lower() not in UNITS[fmt].SUFFIXES:
            raise UsageError(f"--out {out}: a {fmt} file ends in {', '.join(UNITS[fmt].SUFFIXES)}")
    elif not sequence and out.suffix.lower() != UNITS[fmt].SUFFIX:
        raise UsageError(f"--out {out}: a {fmt} file ends in {UNITS[fmt].SUFFIX}")
    check_writable(out, folder=sequence)
    src = load_source(path, opts.up)
    opts.scene_up = src.up
    if fmt == "splatv":
        if opts.time is not None or opts.frames is not None:
            raise UsageError("splatv holds the whole time range; --time/--frames do not apply (see --segments)")
        times = list(src.time_range)
    elif fmt == "usd" and opts.frames is not None:
        times = frame_times(src, opts, True)
    elif fmt == "mesh-anim":
        t_ref = frame_times(src, ExportOptions(format="mesh", time=opts.time), False)[0]
        times = frame_times(src, ExportOptions(format=fmt, frames=opts.frames, fps=opts.fps), True)
    else:
        times = frame_times(src, opts, sequence)
    unit = UNITS["ply" if sequence else fmt]
    dynamic_record = sequence or fmt == "mesh-anim" or (fmt == "usd" and opts.frames is not None)
    F_target = frame_change(src.up, opts.target)
    F = unit.disk_frame(F_target)
    try:
        if fmt == "mesh-sequence":
            info = _write_mesh_sequence(src, out, times, opts, F)
        elif sequence:
            info = _write_sequence(src, out, times, opts, F)
        elif fmt == "splatv":
            info = splatv.write_from_source(src, out, opts, F)
        elif fmt == "mesh":
            info = mesh.write_from_source(src, out, opts, F, times[0])
        elif fmt == "mesh-anim":
            info = animated.write_from_source(src, out, opts, F, t_ref, times)
        elif fmt == "usd":
            info = usd.write_from_source(src, out, opts, F, times, splats_at)
        else:
            s = transform_splats(splats_at(src, times[0], opts.sh_degree), F)
            info = unit.write(s, out, opts)
            info["n_gaussians"] = len(s)
    except OSError as e:  # disk full, permissions changed under us: the old file (if any) is intact
        raise UsageError(f"--out {out}: writing failed ({e.strerror or e}); nothing was replaced") from None
    up_vec = np.zeros(3)
    up_vec["xyz".index(src.up[1])] = 1.0 if src.up[0] == "+" else -1.0
    record = {
        "writer": WRITER,
        "format": fmt,
        **{k: v for k, v in info.items() if k not in ("errors",)},
        "output": str(out),
        "bytes": _size(out),
        "source": {"path": str(src.path), "kind": "scene folder" if src.path.is_dir() else "3dgs ply",
                   "sha256": src.sha256, "dynamic": src.dynamic},
        "time": {"scene_range": list(src.time_range), "times": times,
                 **({"frames": len(times), "fps": opts.fps, "duration_s": len(times) / opts.fps,
                     "frame_k_time": "t0 + (t1 - t0) * k / (frames - 1)"} if dynamic_record else
                    {"splatv_time": "u = (t - t0) / (t1 - t0) in [0, 1]"} if fmt == "splatv" else
                    {"chosen_by": "--time" if opts.time is not None else "default: start of the range"})},
        "target": opts.target,
        "up": {"scene": src.up, "scene_up_from": src.up_from, "written": axis_name(F_target @ up_vec)},
        "handedness": handedness(F_target),
        "frame_change": frame_matrix4(F_target),
        "frame_on_disk": frame_matrix4(F),
        "sh_degree": {"scene": src.sh_degree, "written": info.get("sh_degree_written")},
        "fit_errors": info.get("errors"),
        "seconds": round(_time.perf_counter() - t_start, 3),
    }
    write_atomic(record_path(out), [(json.dumps(record, indent=2) + "\n").encode()])
    return record


def record_path(out: Path) -> Path:
    out = Path(out)
    return out.parent / (out.name.rstrip("/") + ".export.json")


def _size(out: Path) -> int:
    if out.is_dir():
        return sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return out.stat().st_size


def _write_folder(out: Path, kind: str, times: List[float], fps: float, write_frame) -> list:
    """Frames ``write_frame(folder, k, t) -> (file name, extra dict)`` + manifest.json into a temporary
    folder beside ``out``, then renamed onto it (replacing an earlier scene4d sequence only)."""
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FileExistsError(f"--out {out} exists and is not a scene4d sequence; choose an empty or new folder")
    parent = out.parent if str(out.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        frames = []
        for k, t in enumerate(times):
            name, extra = write_frame(tmp, k, t)
            frames.append({"file": name, "time": t, "seconds": k / fps, **extra})
        manifest = {"writer": WRITER, "format": kind, "fps": fps, "frames": frames}
        write_atomic(tmp / "manifest.json", [(json.dumps(manifest, indent=2) + "\n").encode()])
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if out.exists():
            old = parent / f".{out.name}.old.{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return frames


def _write_sequence(src: Source, out: Path, times: List[float], opts: ExportOptions, F) -> dict:
    """frame_00000.ply ... + manifest.json (fps, each file's time)."""
    def frame(folder: Path, k: int, t: float):
        s = transform_splats(splats_at(src, t, opts.sh_degree), F)
        ply.write(s, folder / f"frame_{k:05d}.ply", opts)
        return f"frame_{k:05d}.ply", {"n_gaussians": len(s), "sh_degree": s.sh_degree}

    frames = _write_folder(out, "ply-sequence", times, opts.fps, frame)
    return {"format_version": "3dgs-ply per frame + manifest.json", "n_gaussians": max(f["n_gaussians"] for f in frames),
            "sh_degree_written": frames[-1]["sh_degree"], "errors": "none: float32 values of scene.at(t_k)"}


def _write_mesh_sequence(src: Source, out: Path, times: List[float], opts: ExportOptions, F) -> dict:
    """frame_00000.glb ... (a mesh extracted at every frame time) + manifest.json: the fallback for
    scenes whose Gaussians appear and leave (temporal opacity), which one moving mesh cannot show."""
    def frame(folder: Path, k: int, t: float):
        rec = mesh.write_from_source(src, folder / f"frame_{k:05d}.glb", opts, F, t)
        m = rec["mesh"]
        return f"frame_{k:05d}.glb", {"faces": m["faces"], "vertices": m["vertices"], "n_gaussians": rec["n_gaussians"]}

    frames = _write_folder(out, "mesh-sequence", times, opts.fps, frame)
    return {"format_version": "glTF 2.0 mesh per frame + manifest.json", "sh_degree_written": 0,
            "n_gaussians": max(f["n_gaussians"] for f in frames), "errors": "see --format mesh"}


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m

"""``scene4d export`` and ``scene4d import`` (registered in :mod:`scene4d.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def export_scene(
    scene: Path,
    /,
    out: Path,
    format: Optional[str] = None,
    time: Optional[float] = None,
    frames: Optional[int] = None,
    fps: float = 30.0,
    up: Optional[str] = None,
    target: Optional[str] = None,
    sh_degree: Optional[int] = None,
    spz_version: int = 2,
    segments: int = 1,
    tolerance: float = 0.005,
    views: int = 44,
    view_size: int = 256,
    voxel: float = 0.0,
    faces: int = 0,
    animation: str = "auto",
    influences: int = 4,
    threads: Optional[int] = None,
) -> None:
    """Write a scene (at one time, or as a frame sequence) in a format other tools read, plus
    OUT.export.json (source, times, frame change, up axis, handedness, SH degree, measured errors).

    Args:
        scene: a scene folder (from scene4d reconstruct/import) or a 3DGS .ply file.
        out: the file to write (a folder for ply-sequence and mesh-sequence).
        format: ply (graphdeco 3DGS, lossless), ply-sequence (a folder: one .ply per frame +
            manifest.json), splat (antimatter15, 32 B/Gaussian, no SH), spz (Niantic, compressed),
            glb (glTF + KHR_gaussian_splatting), splatv (splaTV/gsplat.js: motion polynomials fitted over
            the time range, no SH), mesh (.glb/.obj/.ply triangles with vertex colours, by TSDF
            fusion of rendered depth), mesh-anim (.glb: that mesh moved by the scene's motion: a glTF
            skin with one joint per motion node for motion-nodes scenes, else one morph target per
            frame; see --animation), mesh-sequence (a folder: one .glb mesh per
            frame + manifest.json, for things that appear and leave), usd (.usda/.usdc:
            ParticleField3DGaussianSplat, time-sampled with --frames; needs usd-core). Default: from
            --out's suffix.
        time: the scene time to write, within the scene's time range (default: its start); for
            mesh-anim the time the surface is extracted at.
        frames: ply-sequence, mesh-sequence, mesh-anim, usd: frames spread over the time range (default
            30; usd: one instant unless given).
        fps: ply-sequence, mesh-sequence, mesh-anim, usd: playback rate (manifest, animation, time codes).
        up: the scene's up axis (+z, -y, ...); default: scene.json's "up", else +z.
        target: generic (up -Y, right-handed: SuperSplat, splat-transform, Spark, Unreal plug-ins),
            gltf (up +Y, front +Z), unity (gltf frame mirrored in X: left-handed, for aras-p's
            importer), blender (up +Z). Default: gltf for .glb files, else generic.
        sh_degree: write at most this SH degree (0-3; default: the scene's).
        spz_version: 2 (default: Unity's importer reads only v2), 3 or 4 (zstd; needs zstandard).
        segments: splatv: time segments, each a copy of every Gaussian with its own motion fit.
        tolerance: splatv: largest p99 position error allowed, as a fraction of the scene extent.
        views: mesh: rendered views fused into the distance grid.
        view_size: mesh: size of each square view in pixels.
        voxel: mesh: grid spacing in scene units (default: the opaque extent / 192).
        faces: mesh: decimate to at most this many triangles (default: keep all).
        animation: mesh-anim: skin (glTF skin, one joint per motion node: exact for motion-nodes
            scenes), morph (one morph target per frame: any motion), auto (skin where exact).
        influences: mesh-anim skin: joints per vertex (1-64; 4 is what every engine reads, Unity and
            Blender take more: JOINTS_1, WEIGHTS_1, ...).
        threads: CPU threads (default: torch's, all cores); 1 when other jobs share a small machine.
    """
    from .job import ExportOptions, export

    if threads is not None:
        import torch

        if threads < 1:
            from ..render import UsageError

            raise UsageError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    rec = export(scene, Path(out), ExportOptions(format=format, target=target, up=up, time=time, frames=frames,
                                                 fps=fps, sh_degree=sh_degree, spz_version=spz_version,
                                                 segments=segments, tolerance=tolerance, views=views,
                                                 view_size=view_size, voxel=voxel, faces=faces,
                                                 animation=animation, influences=influences))
    t = rec["time"]["times"]
    when = f"t={t[0]:g}" if len(t) == 1 else f"t={t[0]:g}..{t[-1]:g} in {rec['segments']} segment(s)" \
        if rec["format"] == "splatv" else f"{len(t)} frames t={t[0]:g}..{t[-1]:g} at {rec['time']['fps']:g} fps"
    print(f"wrote {rec['output']} ({rec['format']}, {rec['n_gaussians']} Gaussians, {rec['bytes'] / 1e6:.2f} MB, "
          f"SH {rec['sh_degree']['written']}, {when}; target {rec['target']}: up {rec['up']['scene']} -> "
          f"{rec['up']['written']}, {rec['handedness']}-handed; {rec['seconds']:.1f} s)")
    if "mesh" in rec:
        m = rec["mesh"]
        print(f"  mesh: {m['vertices']} vertices, {m['faces']} faces (of {m['faces_before_decimation']}), grid "
              f"{'x'.join(map(str, m['grid']))} at voxel {m['voxel']:.3g}; {m['views']} views rendered in "
              f"{m['render_s']} s, fused in {m['fuse_s']} s, extracted in {m['extract_s']} s")
    err = rec.get("fit_errors")
    if isinstance(err, dict) and err:
        nums = {k: v for k, v in err.items() if isinstance(v, (int, float))}
        if rec["format"] == "mesh-anim" and rec["mesh"].get("animation") == "skin":
            print(f"  skin: {rec['mesh']['joints']} joints, {rec['mesh']['influences']} per vertex; replay vs the field: "
                  f"max {err['skin_replay_max_of_extent_at_keys']:.2e} of the extent at the keys, "
                  f"{err['skin_replay_max_of_extent_between_keys']:.2e} between them")
        elif rec["format"] == "mesh-anim":
            print(f"  tracking: vertices to the nearest Gaussian, p95 {nums['at_reference_frame']:.2%} of the extent at "
                  f"the extracted frame, {nums['worst_frame']:.2%} at the worst frame")
        else:
            print("  max errors: " + ", ".join(f"{k} {v:.3g}" for k, v in nums.items() if not k.endswith("of_extent")))
    for note in rec.get("notes") or ():
        print(f"  note: {note}")
    from .job import record_path

    print(f"  record: {record_path(Path(out))}")


def import_file(file: Path, /, out: Path, up: Optional[str] = None, frame: Optional[str] = None) -> None:
    """Make a static scene folder from a splat file (.ply, .splat, .spz v1-v4, .glb with
    KHR_gaussian_splatting) that render and export accept.

    Args:
        file: the splat file.
        out: the scene folder to create (must not exist or be empty).
        up: the file's up axis (+z, -y, ...). Default: undo FILE.export.json if scene4d wrote
            the file, else the frame tag in its header (ply, glb), else the format's convention
            (ply/splat/spz: -y, glb: +y); the scene is stored Z-up.
        frame: the --target the file was exported for (generic, gltf, unity, blender): e.g. unity
            for a mirrored .spz/.splat whose OUT.export.json is lost.
    """
    from .importer import import_file as run

    info = run(Path(file), Path(out), up, frame)
    print(f"wrote scene {out} ({info['n_gaussians']} Gaussians, SH {info['sh_degree']}, from {info['format']}; "
          f"frame: {info['frame']}; up {info['up']})")

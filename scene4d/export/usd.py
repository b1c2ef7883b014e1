"""Unit: OpenUSD ``UsdVol.ParticleField3DGaussianSplat`` (``.usda``/``.usdc``/``.usd``), time-sampled.

Optional: needs ``usd-core`` (``pip install 'scene4d[usd]'``; OpenUSD >= 26.03 has the schema).
One prim ``/World/gaussians`` with ``positions`` (point3f), ``orientations`` (quatf, real first),
linear ``scales``, ``opacities`` in [0, 1], ``radiance:sphericalHarmonicsDegree`` and
``radiance:sphericalHarmonicsCoefficients`` (N (d+1)^2 float3, per particle contiguous). With
``--frames N`` positions, orientations, scales and opacities carry one time sample per frame
(time codes 0..N-1 at ``--fps``); the SH coefficients do not change over time in scene4d.

USD records its up axis, so no target frame applies: the data is written Z-up (``upAxis Z``,
the scene rotated from its own up if that is not +Z) with ``metersPerUnit 1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..formats import sigmoid
from ..formats.frames import transform_splats
from ..render import UsageError

NAME, SUFFIX, LOSSY = "usd", ".usd", False
SUFFIXES = (".usd", ".usda", ".usdc")


def disk_frame(F: np.ndarray) -> np.ndarray:
    return F


def _pxr():
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdVol, Vt
    except ImportError:
        raise UsageError("USD export needs usd-core: pip install 'scene4d[usd]'") from None
    if not hasattr(UsdVol, "ParticleField3DGaussianSplat"):
        raise UsageError("USD export needs OpenUSD >= 26.03 (UsdVol.ParticleField3DGaussianSplat): "
                         "pip install -U usd-core")
    return Gf, Sdf, Usd, UsdGeom, UsdVol, Vt


def write_from_source(src, out: Path, opts, F, times, splats_at) -> dict:
    """``splats_at(src, t, sh_degree) -> Splats``; ``F`` must take the scene's up to +Z."""
    Gf, Sdf, Usd, UsdGeom, UsdVol, Vt = _pxr()
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out {out}: a USD file ends in {', '.join(SUFFIXES)}")
    frames = [transform_splats(splats_at(src, t, opts.sh_degree), F) for t in times]
    n = len(frames[0])
    if any(len(s) != n for s in frames):
        raise UsageError(f"{src.path}: the number of Gaussians changes over time; time samples need a fixed set")
    tmp = out.parent / f".{out.stem}.tmp{out.suffix}"
    stage = Usd.Stage.CreateNew(str(tmp))
    try:
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        world = UsdGeom.Xform.Define(stage, "/World")
        stage.SetDefaultPrim(world.GetPrim())
        prim = UsdVol.ParticleField3DGaussianSplat.Define(stage, "/World/gaussians")
        animated = len(times) > 1
        if animated:
            stage.SetStartTimeCode(0)
            stage.SetEndTimeCode(len(times) - 1)
            stage.SetTimeCodesPerSecond(opts.fps)
            stage.SetFramesPerSecond(opts.fps)
        attrs = {"positions": prim.CreatePositionsAttr(), "orientations": prim.CreateOrientationsAttr(),
                 "scales": prim.CreateScalesAttr(), "opacities": prim.CreateOpacitiesAttr(),
                 "extent": prim.CreateExtentAttr()}
        for k, s in enumerate(frames):
            code = Usd.TimeCode(k) if animated else Usd.TimeCode.Default()
            q = s.quats.astype(np.float64)
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            scales = np.exp(s.log_scales.astype(np.float64)).astype(np.float32)
            lo = (s.means - 3 * scales.max(1, keepdims=True)).min(0)
            hi = (s.means + 3 * scales.max(1, keepdims=True)).max(0)
            attrs["positions"].Set(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(s.means, np.float32)), code)
            attrs["orientations"].Set(Vt.QuatfArray.FromNumpy(np.ascontiguousarray(q[:, [1, 2, 3, 0]], np.float32)), code)
            attrs["scales"].Set(Vt.Vec3fArray.FromNumpy(scales), code)
            attrs["opacities"].Set(Vt.FloatArray.FromNumpy(sigmoid(s.opacity_logits)), code)
            attrs["extent"].Set(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]), code)
        d = frames[0].sh_degree
        prim.CreateRadianceSphericalHarmonicsDegreeAttr().Set(d)
        prim.CreateRadianceSphericalHarmonicsCoefficientsAttr().Set(
            Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(frames[0].sh.reshape(-1, 3), np.float32)))
        stage.GetRootLayer().Save()
        from cameras.io import publish_mode

        publish_mode(tmp, out)
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"format_version": "OpenUSD UsdVol.ParticleField3DGaussianSplat", "sh_degree_written": d,
            "n_gaussians": n, "usd": {"upAxis": "Z", "metersPerUnit": 1.0, "time_samples": len(times) if animated else 0,
                                      "timeCodesPerSecond": opts.fps if animated else None},
            "errors": "none: float32 values (orientations normalised)"}

"""3D Gaussian Splatting ``.ply`` files (the layout of graphdeco's trainer).

One ``vertex`` element, float32 properties in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3*(K-1)-1)  opacity  scale_0..2  rot_0..3

``opacity`` is a logit, ``scale_*`` are natural-log standard deviations, ``rot_*`` a quaternion
(w, x, y, z), not necessarily normalised. ``f_rest`` is stored channel-major: index ``c*(K-1) + k``
is band coefficient ``k+1`` of colour channel ``c``. nerfstudio's ``ns-export gaussian-splat`` and
SuperSplat (uncompressed) write the same layout; we read any property order, ASCII or binary, float
or double, with or without normals.

:class:`SplatData` keeps the raw stored values so a file read and written again is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from . import ply
from .gaussians import Gaussians


class SplatFileError(ValueError):
    """A splat file that cannot be read: names the file, what is wrong and what to do."""


@dataclass
class SplatData:
    """Raw 3DGS parameters as stored in files. N Gaussians, K SH coefficients per channel.

    Attributes:
        means: (N, 3) float32 positions.
        quats: (N, 4) float32 quaternions (w, x, y, z), raw.
        log_scales: (N, 3) float32 natural-log scales.
        opacity_logits: (N,) float32 logits of opacity.
        sh: (N, K, 3) float32 SH coefficients (sh[:, 0] is f_dc).
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    def to_gaussians(self) -> Gaussians:
        return Gaussians(
            means=self.means,
            quats=self.quats,
            scales=torch.exp(self.log_scales),
            opacities=torch.sigmoid(self.opacity_logits),
            sh=self.sh,
        )

    @staticmethod
    def from_gaussians(g: Gaussians) -> "SplatData":
        o = g.opacities.detach().double().clamp(1e-7, 1 - 1e-7)
        return SplatData(
            means=g.means.detach().float(),
            quats=g.quats.detach().float(),
            log_scales=torch.log(g.scales.detach().double().clamp_min(1e-30)).float(),
            opacity_logits=torch.logit(o).float(),
            sh=g.sh.detach().float(),
        )


def _property_names(k: int) -> list:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def splat_array(data: Union[SplatData, Gaussians]) -> np.ndarray:
    """(N,) structured array of the standard 3DGS layout (float32 fields in graphdeco's order)."""
    if isinstance(data, Gaussians):
        data = SplatData.from_gaussians(data)
    n, k = data.sh.shape[0], data.sh.shape[1]
    names = _property_names(k)
    arr = np.zeros(n, dtype=[(nm, "<f4") for nm in names])
    np_ = lambda t: t.detach().cpu().float().numpy()  # noqa: E731
    means, sh = np_(data.means), np_(data.sh)
    for i, c in enumerate("xyz"):
        arr[c] = means[:, i]
    arr["opacity"] = np_(data.opacity_logits)
    scales, quats = np_(data.log_scales), np_(data.quats)
    for i in range(3):
        arr[f"f_dc_{i}"] = sh[:, 0, i]
        arr[f"scale_{i}"] = scales[:, i]
    for i in range(4):
        arr[f"rot_{i}"] = quats[:, i]
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major
    for i in range(rest.shape[1]):
        arr[f"f_rest_{i}"] = rest[:, i]
    return arr


def write_ply(path: Union[str, Path], data: Union[SplatData, Gaussians]) -> Path:
    """Write the standard 3DGS layout (binary little-endian float32), atomically."""
    return ply.write_ply(path, {"vertex": splat_array(data)})


_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]


def read_ply(path: Union[str, Path]) -> SplatData:
    """Read a 3DGS ``.ply``; raises :class:`SplatFileError` with the reason and a fix."""
    path = Path(path)
    if not path.is_file():
        raise SplatFileError(f"{path}: no such file")
    try:
        data = ply.read_ply(path)
    except ply.PlyError as e:
        raise SplatFileError(
            f"{path}: not a readable PLY file ({str(e).replace(str(path) + ': ', '')}). The file may be truncated "
            "(an interrupted download or copy) or not a PLY at all; re-export or re-copy it."
        ) from None
    return splat_data_from_array(data.elements, path)


def splat_data_from_array(elements: dict, path: Union[str, Path]) -> SplatData:
    """:class:`SplatData` from PLY elements (name -> structured array) of a 3DGS file at ``path``."""
    names = list(elements)
    if "chunk" in names:
        raise SplatFileError(
            f"{path}: this is a compressed splat PLY (SuperSplat/PlayCanvas 'chunk' layout), which "
            "scene4d does not read; export it from SuperSplat as an uncompressed .ply"
        )
    if "vertex" not in names:
        raise SplatFileError(f"{path}: no 'vertex' element (found {names}); not a 3D Gaussian Splatting file")
    v = elements["vertex"]
    props = list(v.dtype.names)
    missing = [p for p in _REQUIRED if p not in props]
    if missing:
        hint = (
            " It looks like a plain point cloud or mesh, not Gaussian splats."
            if {"x", "y", "z"} <= set(props) else ""
        )
        raise SplatFileError(
            f"{path}: missing 3DGS properties {missing} (has {props[:12]}{'...' if len(props) > 12 else ''}).{hint} "
            "Expected the 3DGS layout: x y z f_dc_0..2 [f_rest_*] opacity scale_0..2 rot_0..3."
        )
    n_rest = sum(1 for p in props if p.startswith("f_rest_"))
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise SplatFileError(
            f"{path}: {n_rest} f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0-3)"
        )
    rest_names = [f"f_rest_{i}" for i in range(n_rest)]
    absent = [r for r in rest_names if r not in props]
    if absent:
        raise SplatFileError(f"{path}: f_rest_* properties are not numbered 0..{n_rest - 1} (missing {absent[:3]})")
    n = len(v)
    try:
        col = lambda nm: np.asarray(v[nm], dtype=np.float32)  # noqa: E731
        means = np.stack([col("x"), col("y"), col("z")], -1)
        dc = np.stack([col(f"f_dc_{i}") for i in range(3)], -1)
        rest = np.stack([col(r) for r in rest_names], -1) if n_rest else np.zeros((n, 0), np.float32)
        opac = col("opacity")
        scales = np.stack([col(f"scale_{i}") for i in range(3)], -1)
        rots = np.stack([col(f"rot_{i}") for i in range(4)], -1)
    except Exception as e:
        raise SplatFileError(f"{path}: vertex data could not be read ({e}); the file may be truncated") from None
    k = n_rest // 3 + 1
    sh = np.concatenate([dc[:, None, :], rest.reshape(n, 3, k - 1).transpose(0, 2, 1)], axis=1)
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # noqa: E731  (a writable copy)
    return SplatData(t(means), t(rots), t(scales), t(opac), t(sh))


def load_gaussians(path: Union[str, Path]) -> Gaussians:
    """Read a 3DGS ``.ply`` as activated :class:`Gaussians`."""
    return read_ply(path).to_gaussians()

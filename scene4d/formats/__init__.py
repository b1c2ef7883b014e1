"""Splat file formats other tools read, and the frame changes between their conventions and ours.

Geometry and codecs only: no scene folders, no command line (those are :mod:`scene4d.export`).

* :mod:`.frames` — up axis, handedness, per-target frames; rotating positions, quaternions and
  spherical-harmonic bands (mirrors included) so that colours seen from a rotated direction match.
* :mod:`.splat`  — antimatter15 ``.splat`` (32 bytes per Gaussian, no SH).
* :mod:`.spz`    — Niantic SPZ, versions 1-4 read, 2-4 written (v4 needs ``zstandard``).
* :mod:`.gltf`   — glTF binary with ``KHR_gaussian_splatting`` (float attributes, SH per coefficient).
* :mod:`.splatv` — antimatter15 ``.splatv`` (motion polynomials + temporal window, splaTV/gsplat.js).
* :mod:`.mesh`   — surface nets on a distance grid, components, decimation; glb/obj/ply mesh files.

PLY lives in :mod:`renderers.ply` / :mod:`renderers.splat_io` (the renderers read it too).

Every codec works on :class:`Splats`: raw float32 numpy arrays in the 3DGS file conventions
(graphdeco's PLY): ``means`` (N,3), ``quats`` (N,4) wxyz, ``log_scales`` (N,3),
``opacity_logits`` (N,), ``sh`` (N,K,3) with ``sh[:, 0]`` the DC term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class FormatError(ValueError):
    """A file that is not, or not entirely, the format it claims to be: names the file and the fault."""


@dataclass
class Splats:
    """N Gaussians in file conventions (see the module docstring); float32 numpy arrays."""

    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(np.sqrt(self.sh.shape[1]))) - 1

    @staticmethod
    def from_gaussians(g) -> "Splats":
        """From activated :class:`renderers.Gaussians` (linear scales, opacity in [0,1])."""
        from renderers.splat_io import SplatData

        d = SplatData.from_gaussians(g)
        return Splats(*(getattr(d, f).cpu().numpy().astype(np.float32)
                        for f in ("means", "quats", "log_scales", "opacity_logits", "sh")))

    def to_gaussians(self):
        import torch

        from renderers.splat_io import SplatData

        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return SplatData(t(self.means), t(self.quats), t(self.log_scales), t(self.opacity_logits),
                         t(self.sh)).to_gaussians()

    def with_sh_degree(self, degree: int) -> "Splats":
        """Drop SH bands above ``degree`` (or pad with zeros up to it)."""
        k = (degree + 1) ** 2
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = np.concatenate([sh, np.zeros((len(self), k - sh.shape[1], 3), np.float32)], 1)
        return Splats(self.means, self.quats, self.log_scales, self.opacity_logits, sh)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))).astype(np.float32)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p)).astype(np.float32)


def normalized_quats(q: np.ndarray) -> np.ndarray:
    """(N,4) unit quaternions; zero-length rows become the identity (1,0,0,0)."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(n > 1e-12, q / np.maximum(n, 1e-30), np.array([1.0, 0, 0, 0]))
    return out

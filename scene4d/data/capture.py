"""Posed, timed captures of a dynamic scene: what reconstruction fits a 4D scene to.

A :class:`Capture` holds train / test (/ val) splits; each :class:`CaptureSplit` is a stack of
images with one :class:`cameras.Cameras` (OpenCV world-to-camera, pixel ``K``, ``times`` in [0, 1]).
:func:`load_capture` reads a folder in one of the formats below and detects which:

* ``"dnerf"``: D-NeRF / Blender ``transforms_{train,test,val}.json`` (:mod:`scene4d.data.dnerf`);
* ``"nerfstudio"``: nerfstudio ``transforms.json`` with a time per frame (:mod:`scene4d.data.nerfstudio`).

Conventions shared by every reader (so a capture means the same thing whatever its format):

* Images with an alpha channel are composited over the capture background,
  ``rgb * a + background * (1 - a)``, and the alpha is kept in :attr:`CaptureSplit.alphas`.
* ``downscale=d`` averages each d x d block of pixels (area averaging, after compositing, so
  colour and alpha stay consistent); when the size is not a multiple of d the last ``H % d`` rows
  and ``W % d`` columns are dropped, which leaves the principal point where it was, so ``K`` is
  exactly divided by d (fx, fy, cx, cy).
* ``max_views=n`` keeps at most n views of each split, evenly spaced through the file's frame
  order (first and last kept), so a monocular clip still spans its whole time range.
* A capture without a test split holds out every 8th train view (views 0, 8, 16, ...) as test;
  they are removed from train.

Every problem with the input raises :class:`CaptureError` naming the file, the frame and the field.
"""

from __future__ import annotations

import contextvars
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from cameras import Cameras
from cameras.conventions import opengl_c2w_to_opencv_w2c

BackgroundSpec = Union[str, Sequence[float], None]

HOLDOUT_EVERY = 8
"""Without a test split, views ``0, 8, 16, ...`` of the train frames become the test split."""


class CaptureError(ValueError):
    """A capture that cannot be loaded; the message names the file and field that is wrong and what to do."""


@dataclass
class CaptureSplit:
    """C posed, timed views sharing one image size.

    Attributes:
        images: (C, H, W, 3) float32 in [0, 1], already composited over the capture background.
        alphas: (C, H, W, 1) float32 in [0, 1] when the images had an alpha channel, else None
            (views without alpha among ones with it count as fully opaque).
        cameras: C cameras (OpenCV world-to-camera, ``K`` for the loaded size, ``times`` (C,) in [0, 1]).
        files: the image file of each view.
    """

    images: Tensor
    alphas: Optional[Tensor]
    cameras: Cameras
    files: list[Path]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def times(self) -> Tensor:
        """(C,) scene time of each view, in [0, 1]."""
        assert self.cameras.times is not None
        return self.cameras.times

    def subset(self, idx: Union[Sequence[int], Tensor, slice]) -> "CaptureSplit":
        """The views ``idx`` (indices, bool mask or slice) as a new split sharing storage where possible."""
        if isinstance(idx, slice):
            files = self.files[idx]
        else:
            idx = torch.as_tensor(idx)
            if idx.dtype == torch.bool:
                idx = torch.nonzero(idx).flatten()
            files = [self.files[int(i)] for i in idx]
        return CaptureSplit(
            images=self.images[idx],
            alphas=None if self.alphas is None else self.alphas[idx],
            cameras=_cameras_subset(self.cameras, idx),
            files=files,
        )


@dataclass
class Capture:
    """A dynamic capture: posed, timed image splits and the background they were composited over.

    Attributes:
        train: the views to fit to.
        test: held-out views to evaluate on; when the capture has none, every 8th train view
            (0, 8, 16, ...) is moved here (see :data:`HOLDOUT_EVERY`).
        val: the capture's validation views, if it has any.
        background: RGB in [0, 1] the images were composited over (render with the same one).
        source: the capture folder.
        format: ``"dnerf"`` or ``"nerfstudio"``.
    """

    train: CaptureSplit
    test: CaptureSplit
    val: Optional[CaptureSplit]
    background: tuple[float, float, float]
    source: Path
    format: str
    notes: list[str] = field(default_factory=list)
    """Things the reader decided that a user may want to know (held-out views, rescaled intrinsics)."""
    points: Optional[Tensor] = None
    """(P, 3) sparse scene points (e.g. from structure-from-motion) to initialise Gaussians, or None."""
    point_colors: Optional[Tensor] = None
    """(P, 3) colours in [0, 1] of :attr:`points`, or None."""

    @property
    def width(self) -> int:
        return self.train.cameras.width

    @property
    def height(self) -> int:
        return self.train.cameras.height

    def warnings(self) -> list:
        """Lines about a capture that loads but will train badly: focal lengths no real camera has
        (a field of view under 0.5 or over 170 degrees), and a scene so far from the origin that
        float32 positions lose its detail (centre more than 10^4 radii away)."""
        out = []
        cams = self.train.cameras
        K = cams.K.detach().double().cpu()
        fov = [2 * math.degrees(math.atan(cams.width / (2 * float(K[:, 0, 0].median())))),
               2 * math.degrees(math.atan(cams.height / (2 * float(K[:, 1, 1].median()))))]
        if min(fov) < 0.5 or max(fov) > 170:
            out.append(f"{self.source}: the cameras' field of view is {fov[0]:.3g} x {fov[1]:.3g} degrees (fx "
                       f"{float(K[:, 0, 0].median()):.4g} px for {cams.width} px); check the intrinsics "
                       "(camera_angle_x is in radians; fl_x in pixels)")
        centre, radius = self.bounds()
        far = float(centre.double().norm())
        if far > 1e4 * radius:
            out.append(f"{self.source}: the scene is {far:.3g} units from the origin and {radius:.3g} across; float32 "
                       "positions there resolve about 1e-7 of that distance, so fine detail is lost. Recentre the "
                       "poses (subtract the scene centre from every camera position)")
        return out

    def bounds(self) -> tuple[Tensor, float]:
        """Centre (3,) and radius of the region all train cameras look at.

        The centre is the least-squares point closest to every train camera's optical axis:
        it minimises ``sum_i |(I - d_i d_i^T)(x - o_i)|^2`` for camera centres ``o_i`` and unit
        viewing directions ``d_i``. The radius is ``median_i |o_i - centre| * sin(fov / 2)``
        with ``fov`` the median over cameras of the narrower field of view: the largest ball
        around the centre that a typical train camera sees whole, i.e. where the scene must be
        for every view to contain it.

        A capture with sparse points (:attr:`points`, at least 16) uses them instead: the centre is
        their per-axis median, the radius the 95th percentile of their distances to it.

        If the optical axes are (nearly) parallel (a forward-facing capture) the closest point is
        undetermined along them; the centre is then only a guess: the mean camera centre moved
        along the mean viewing direction by ``max(camera spread, 1)`` scene units.
        """
        if self.points is not None and self.points.shape[0] >= 16:
            # sparse points (structure from motion) say where the scene is better than the optical axes
            # of a forward-moving handheld camera do
            p = self.points.double()
            centre = p.median(dim=0).values
            radius = float(torch.quantile((p - centre).norm(dim=-1), 0.95))
            return centre.to(torch.float32), max(radius, 1e-3)
        cams = self.train.cameras
        w2c = cams.world_to_camera.detach().double().cpu()
        R = w2c[:, :3, :3]
        o = cams.centers.detach().double().cpu()  # (C, 3)
        d = R[:, 2, :]  # (C, 3) camera +z (forward) in world coordinates
        d = d / d.norm(dim=-1, keepdim=True)
        P = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # (C, 3, 3) projectors
        A = P.sum(0)
        b = (P @ o[:, :, None]).sum(0)[:, 0]
        n = len(cams)
        # smallest eigenvalue / C is ~ the mean squared sine of the angle between axes: 1e-3 is ~2 deg
        if float(torch.linalg.eigvalsh(A)[0]) / n > 1e-3:
            centre = torch.linalg.solve(A, b)
        else:
            step = max(float((o - o.mean(0)).norm(dim=-1).mean()), 1.0)
            mean_dir = d.mean(0)
            centre = o.mean(0) + step * mean_dir / mean_dir.norm().clamp_min(1e-12)
        dist = (o - centre).norm(dim=-1).median()
        fov_x = 2 * torch.atan(0.5 * cams.width / cams.K[:, 0, 0].double().cpu())
        fov_y = 2 * torch.atan(0.5 * cams.height / cams.K[:, 1, 1].double().cpu())
        fov = torch.minimum(fov_x, fov_y).median()
        radius = float(dist * torch.sin(0.5 * fov))
        return centre.to(torch.float32), radius


# ---------------------------------------------------------------------------------------------
_ALLOW_OUTSIDE = contextvars.ContextVar("scene4d_allow_outside", default=False)


def load_capture(
    path: Union[str, Path],
    *,
    background: BackgroundSpec = None,
    downscale: int = 1,
    max_views: Optional[int] = None,
    allow_outside: bool = False,
) -> Capture:
    """Load a dynamic capture folder, detecting its format (see :func:`_load_capture`). Images
    must lie inside the folder of the transforms file: a ``file_path`` that leaves it (``../``, an
    absolute path, a link) is refused unless ``allow_outside``."""
    token = _ALLOW_OUTSIDE.set(bool(allow_outside))
    try:
        return _load_capture(path, background=background, downscale=downscale, max_views=max_views)
    finally:
        _ALLOW_OUTSIDE.reset(token)


def _load_capture(
    path: Union[str, Path],
    *,
    background: BackgroundSpec = None,
    downscale: int = 1,
    max_views: Optional[int] = None,
) -> Capture:
    """Load a dynamic capture folder, detecting its format.

    Args:
        path: the capture folder, or its ``transforms_train.json`` (D-NeRF) / ``transforms.json``
            (nerfstudio). A folder holding both is read as D-NeRF (its splits are explicit).
        background: ``"white"``, ``"black"`` or an RGB triple in [0, 1] to composite alpha over;
            None picks the format's default: white for D-NeRF (what its papers evaluate with),
            black for nerfstudio (real footage, where alpha is rare).
        downscale: integer factor; images and alpha are area-averaged, ``K`` divided by it.
        max_views: keep at most this many views per split, evenly spaced in file order.

    Raises:
        CaptureError: naming the file, frame and field that is wrong.
    """
    from . import dnerf, nerfstudio  # the readers import this module

    p = Path(path).expanduser()
    if not p.exists():
        raise CaptureError(f"{p}: no such file or folder; pass a capture folder holding "
                           "transforms_train.json (D-NeRF) or transforms.json (nerfstudio)")
    if p.is_file():
        if p.name.startswith("transforms_") and p.suffix == ".json":
            return dnerf.load_dnerf(p.parent, background=background, downscale=downscale, max_views=max_views)
        if p.suffix == ".json":
            return nerfstudio.load_nerfstudio(p, background=background, downscale=downscale, max_views=max_views)
        raise CaptureError(f"{p}: not a capture; pass the capture folder or its transforms*.json")
    if (p / "transforms_train.json").is_file():
        return dnerf.load_dnerf(p, background=background, downscale=downscale, max_views=max_views)
    if (p / "transforms.json").is_file():
        return nerfstudio.load_nerfstudio(p / "transforms.json", background=background,
                                          downscale=downscale, max_views=max_views)
    found = sorted(q.name for q in p.glob("*.json"))[:8]
    hint = f" (it holds {', '.join(found)})" if found else ""
    raise CaptureError(
        f"{p}: found no transforms_train.json (D-NeRF) or transforms.json (nerfstudio){hint}; "
        "point at the folder that holds the capture's transforms file. COLMAP output must be "
        "converted first (e.g. nerfstudio's ns-process-data), and a dynamic capture needs a "
        "time per frame."
    )


# --------------------------------------------------------------------------- shared by readers
@dataclass
class FrameSpec:
    """One view as a transforms file describes it, before its image is read.

    Attributes:
        file: the resolved image path (exists).
        c2w: (4, 4) float64 OpenGL camera-to-world, checked rigid.
        time: scene time in [0, 1].
        intrinsics: the ``fl_x, fl_y, cx, cy, w, h, camera_angle_x, camera_angle_y`` values that
            apply to this frame (file-level overridden by frame-level), in the file's pixel units.
        where: ``"<json path>: frames[i]"`` for error messages.
    """

    file: Path
    c2w: np.ndarray
    time: float
    intrinsics: dict[str, float]
    where: str


def parse_background(background: BackgroundSpec, default: str) -> tuple[float, float, float]:
    """``"white"`` / ``"black"`` / (r, g, b) in [0, 1] / None (-> ``default``) -> an RGB triple."""
    if background is None:
        background = default
    if isinstance(background, str):
        named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
        if background.lower() not in named:
            raise CaptureError(f"background={background!r}: use 'white', 'black' or an (r, g, b) triple in [0, 1]")
        return named[background.lower()]
    try:
        rgb = tuple(float(v) for v in background)
    except (TypeError, ValueError):
        raise CaptureError(f"background={background!r}: use 'white', 'black' or an (r, g, b) triple in [0, 1]") from None
    if len(rgb) != 3 or not all(0.0 <= v <= 1.0 for v in rgb):
        raise CaptureError(f"background={background!r}: an (r, g, b) triple needs three values in [0, 1]")
    return rgb  # type: ignore[return-value]


def check_options(downscale: int, max_views: Optional[int]) -> None:
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) or downscale < 1:
        raise CaptureError(f"downscale={downscale!r}: must be an integer >= 1 (2 halves width and height)")
    if max_views is not None and (isinstance(max_views, bool) or not isinstance(max_views, (int, np.integer))
                                  or max_views < 1):
        raise CaptureError(f"max_views={max_views!r}: must be None or an integer >= 1")


def read_json(path: Path) -> dict[str, Any]:
    """Parse a transforms file; syntax errors become :class:`CaptureError` with the line."""
    from cameras.limits import read_json as read_limited

    try:
        data = read_limited(path, "transforms file")
    except ValueError as e:
        raise CaptureError(str(e)) from None
    if not isinstance(data, dict):
        raise CaptureError(f"{path}: expected a JSON object with a 'frames' list, got {type(data).__name__}")
    return data


def get_frames(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The non-empty ``frames`` list of a transforms file."""
    frames = data.get("frames")
    if frames is None:
        raise CaptureError(f"{path}: has no 'frames' list; a transforms file lists one entry per image")
    if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        raise CaptureError(f"{path}: 'frames' must be a list of objects (one per image)")
    if not frames:
        raise CaptureError(f"{path}: 'frames' is empty; the capture has no views to load")
    return frames


def field_name(where: str, name: str) -> str:
    """``"file: frames[3].time"`` for a frame's field, ``"file: fl_x"`` for a file-level one."""
    return f"{where}.{name}" if where.endswith("]") else f"{where}: {name}"


def as_number(value: Any, where: str, name: str) -> float:
    """A finite float from a JSON value, else a :class:`CaptureError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaptureError(f"{field_name(where, name)} = {value!r} is not a number; write it as a JSON number")
    v = float(value)
    if not math.isfinite(v):
        raise CaptureError(f"{field_name(where, name)} = {value!r} is not finite")
    return v


def check_time(t: float, where: str, name: str = "time", hint: str = "") -> float:
    """A time in [0, 1] (float rounding of 1e-6 past the ends is clamped)."""
    if not -1e-6 <= t <= 1 + 1e-6:
        raise CaptureError(
            f"{field_name(where, name)} = {t:g} is outside [0, 1]; times are normalised over the clip "
            f"(D-NeRF: frame index / (frames - 1)){hint}"
        )
    return min(max(t, 0.0), 1.0)


def parse_c2w(value: Any, where: str, atol: float = 1e-3) -> np.ndarray:
    """(4, 4) float64 rigid OpenGL camera-to-world from a 4x4 or 3x4 nested list."""
    name = f"{where}.transform_matrix"
    if value is None:
        raise CaptureError(f"{where} has no 'transform_matrix' (the 4x4 OpenGL camera-to-world pose)")
    try:
        M = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError(f"{name} must be a 4x4 (or 3x4) list of numbers") from None
    if M.shape not in ((4, 4), (3, 4)):
        raise CaptureError(f"{name} has shape {M.shape}; expected 4x4 (or 3x4) camera-to-world")
    if not np.isfinite(M).all():
        raise CaptureError(f"{name} has non-finite values (NaN/inf)")
    if M.shape == (3, 4):
        M = np.vstack([M, [0.0, 0.0, 0.0, 1.0]])
    if np.abs(M[3] - [0.0, 0.0, 0.0, 1.0]).max() > atol:
        raise CaptureError(f"{name} last row is {M[3].tolist()}; a camera pose's last row is [0, 0, 0, 1]")
    R = M[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    det = float(np.linalg.det(R))
    if err > atol or abs(det - 1.0) > atol:
        raise CaptureError(
            f"{name} is not a rigid transform (rotation part has |R^T R - I| = {err:.3g}, det = {det:.4f}); "
            "a camera-to-world pose is a rotation plus a translation: remove any scale, shear or "
            "mirroring (scale the translations instead to rescale the scene)"
        )
    return M


def resolve_image(root: Path, file_path: Any, where: str, exts: Sequence[str] = (".png", ".jpg", ".jpeg")) -> Path:
    """The image a frame's ``file_path`` names: as written, then with each of ``exts`` appended."""
    if not isinstance(file_path, str) or not file_path:
        raise CaptureError(f"{where} has no 'file_path' (the image of this view, relative to the transforms file)")
    base = root / file_path
    allow = _ALLOW_OUTSIDE.get()
    outside = (f"{where}.file_path {file_path!r} leaves the capture folder {root} (images must lie inside it: no "
               "'../', absolute paths or links out); copy the image into the folder, or pass --allow-outside if "
               "you trust this capture")
    if not allow and not _inside(os.path.normpath(os.path.abspath(base)), os.path.abspath(root)):
        raise CaptureError(outside)  # before looking: the message must not tell what exists out there
    tried = [base] + [base.with_name(base.name + e) for e in exts]
    for cand in tried:
        if cand.is_file():
            if not allow and not _inside(os.path.realpath(cand), os.path.realpath(root)):
                raise CaptureError(outside)
            return cand
    raise CaptureError(
        f"{where}.file_path {file_path!r} -> no such image (looked for "
        f"{', '.join(str(c) for c in tried)}); check the path is relative to the transforms file "
        "and the image was copied"
    )


def confined(root: Path, rel: Any, where: str) -> Path:
    """``root / rel``, refused (one line, without looking) when it leaves ``root`` and
    --allow-outside was not given; links are followed when the file exists."""
    p = root / str(rel)
    if not _ALLOW_OUTSIDE.get():
        lexical = _inside(os.path.normpath(os.path.abspath(p)), os.path.abspath(root))
        if not lexical or (p.exists() and not _inside(os.path.realpath(p), os.path.realpath(root))):
            raise CaptureError(f"{where} {str(rel)!r} leaves the capture folder {root}; copy the file into the folder, "
                               "or pass --allow-outside if you trust this capture")
    return p


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def subsample(n: int, max_views: Optional[int]) -> list[int]:
    """At most ``max_views`` indices of ``range(n)``, evenly spaced with the first and last kept."""
    if max_views is None or n <= max_views:
        return list(range(n))
    if max_views == 1:
        return [0]
    return sorted({int(round(i * (n - 1) / (max_views - 1))) for i in range(max_views)})


def holdout(n: int) -> tuple[list[int], list[int]]:
    """(train, test) indices of ``range(n)`` with every :data:`HOLDOUT_EVERY`-th view held out."""
    test = [i for i in range(n) if i % HOLDOUT_EVERY == 0]
    train = [i for i in range(n) if i % HOLDOUT_EVERY != 0]
    if not train:  # a single view: keep it for training too, there is nothing else to fit
        train = test
    return train, test


# --------------------------------------------------------------------------- images
def read_image(path: Path, where: str) -> np.ndarray:
    """(H, W, 3|4) float32 in [0, 1] of one image file (alpha kept when the file has one)."""
    from PIL import Image, UnidentifiedImageError

    from cameras.limits import MAX_IMAGE_PIXELS, guard_images

    guard_images()
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale: PIL cannot convert it to 8-bit RGB without clipping
                arr = np.asarray(im, dtype=np.float32) / (65535.0 if mode.startswith("I;16") else 2**31 - 1)
                return np.repeat(arr[..., None], 3, axis=-1)
            has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            im = im.convert("RGBA" if has_alpha else "RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise CaptureError(f"{where}: {path} claims more than {MAX_IMAGE_PIXELS} pixels ({e}); refusing to decode it "
                           "(a decompression bomb or a damaged header)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CaptureError(
            f"{where}: {path} could not be read as an image ({type(e).__name__}: {e}); the file is "
            "corrupt or truncated: re-export it or drop the frame"
        ) from None
    return arr


def area_downscale(img: np.ndarray, d: int) -> np.ndarray:
    """(H, W, ch) -> (H // d, W // d, ch): mean of each d x d block (trailing rows/columns dropped)."""
    if d == 1:
        return img
    h, w, ch = img.shape
    hh, ww = h // d, w // d
    return img[: hh * d, : ww * d].reshape(hh, d, ww, d, ch).mean(axis=(1, 3), dtype=np.float32)


def intrinsics_K(spec: dict[str, float], width: int, height: int, where: str) -> tuple[np.ndarray, Optional[str]]:
    """(3, 3) float64 pixel ``K`` for an image of ``width`` x ``height`` and a note if it was rescaled.

    ``spec`` holds any of ``fl_x, fl_y, cx, cy, w, h, camera_angle_x, camera_angle_y``. Focal
    lengths come from ``fl_x``/``fl_y`` or else the horizontal (vertical) field of view
    (``fl = size / 2 / tan(angle / 2)``; a missing one copies the other: square pixels). The
    principal point defaults to the image centre. When ``w``/``h`` are given and differ from the
    image's size by one common factor, the intrinsics are scaled to the image (e.g. a transforms
    file written for full-size images next to half-size copies).
    """
    w0 = spec.get("w", width)
    h0 = spec.get("h", height)
    if w0 <= 0 or h0 <= 0:
        raise CaptureError(f"{where}: w, h = {w0:g}, {h0:g} must be positive")
    fx = spec.get("fl_x")
    fy = spec.get("fl_y")
    for key in ("camera_angle_x", "camera_angle_y"):
        if key in spec and not 0 < spec[key] < math.pi:
            raise CaptureError(f"{where}: {key} = {spec[key]:g} must lie in (0, pi): it is a field of view in "
                               "radians (0.69 is about 40 degrees)")
    if fx is None and "camera_angle_x" in spec:
        fx = 0.5 * w0 / math.tan(0.5 * spec["camera_angle_x"])
    if fy is None and "camera_angle_y" in spec:
        fy = 0.5 * h0 / math.tan(0.5 * spec["camera_angle_y"])
    if fx is None and fy is None:
        raise CaptureError(
            f"{where}: no focal length; give 'camera_angle_x' (horizontal field of view in radians) "
            "or 'fl_x'/'fl_y' (pixels) in the file or the frame"
        )
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    if not (fx > 0 and fy > 0):
        raise CaptureError(f"{where}: focal lengths must be positive (fl_x = {fx:g}, fl_y = {fy:g}; "
                           "camera_angle_x must lie in (0, pi))")
    cx = spec.get("cx", 0.5 * w0)
    cy = spec.get("cy", 0.5 * h0)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
    note = None
    if (w0, h0) != (width, height):
        sx, sy = width / w0, height / h0
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise CaptureError(
                f"{where}: the intrinsics are for {w0:g}x{h0:g} but the image is {width}x{height}, "
                "a different aspect ratio; fix 'w'/'h' (and fl_x, fl_y, cx, cy) to match the images"
            )
        K[0] *= sx
        K[1] *= sy
        note = f"intrinsics given for {w0:g}x{h0:g} scaled to the {width}x{height} images"
    return K, note


def build_split(
    frames: list[FrameSpec],
    *,
    background: tuple[float, float, float],
    downscale: int,
    reference: Optional[tuple[int, int, str]] = None,
    notes: Optional[list[str]] = None,
) -> tuple[CaptureSplit, tuple[int, int, str]]:
    """Read, composite and downscale the images of ``frames`` and build their cameras.

    Args:
        frames: the views, in order.
        background: RGB composited under alpha.
        downscale: integer area-averaging factor.
        reference: ``(width, height, file)`` every image must match (the capture's first image);
            None takes the first image of ``frames``.
        notes: a list to append decisions to (rescaled intrinsics).
    Returns:
        the split and the reference ``(width, height, file)`` at full resolution.
    """
    bg = np.asarray(background, dtype=np.float32)

    def load(fr: FrameSpec) -> tuple[np.ndarray, Optional[np.ndarray], tuple[int, int]]:
        img = read_image(fr.file, f"{fr.where}.file_path")
        size = (img.shape[1], img.shape[0])
        alpha = img[..., 3:] if img.shape[-1] == 4 else None
        rgb = img[..., :3]
        if alpha is not None:
            rgb = rgb * alpha + bg * (1.0 - alpha)
            rgb = np.concatenate([rgb, alpha], axis=-1)
        out = area_downscale(rgb, downscale)
        return out[..., :3], (out[..., 3:] if alpha is not None else None), size

    images: Optional[Tensor] = None
    alphas: Optional[Tensor] = None
    Ks = []
    workers = max(1, min(8, os.cpu_count() or 1, len(frames)))

    def decoded() -> Iterator[tuple[np.ndarray, Optional[np.ndarray], tuple[int, int]]]:
        # PIL decodes without the GIL; submitting a few chunks at a time bounds how many decoded
        # images wait in memory ahead of the loop below
        chunk = 4 * workers
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(frames), chunk):
                yield from pool.map(load, frames[start:start + chunk])

    for i, (fr, (rgb, alpha, size)) in enumerate(zip(frames, decoded())):
        if reference is None:
            reference = (size[0], size[1], f"{fr.file.parent.name}/{fr.file.name}")
            if size[0] // downscale < 1 or size[1] // downscale < 1:
                raise CaptureError(f"downscale={downscale} leaves no pixels of the "
                                   f"{size[0]}x{size[1]} images of {fr.where.rsplit(': frames', 1)[0]}")
        if size != reference[:2]:
            raise CaptureError(
                f"{fr.where}.file_path -> {fr.file.name} is {size[0]}x{size[1]} but the first frame "
                f"({reference[2]}) is {reference[0]}x{reference[1]}; every view of a capture must "
                "have the same size: resize the odd images (and their intrinsics) or drop them"
            )
        if images is None:
            images = torch.empty((len(frames),) + rgb.shape, dtype=torch.float32)
        images[i] = torch.from_numpy(rgb)
        if alpha is not None and alphas is None:
            alphas = torch.ones((len(frames),) + rgb.shape[:2] + (1,), dtype=torch.float32)
        if alphas is not None:
            alphas[i] = torch.from_numpy(alpha) if alpha is not None else 1.0
        K, note = intrinsics_K(fr.intrinsics, size[0], size[1], fr.where)
        if note and notes is not None and note not in notes:
            notes.append(note)
        Ks.append(K)
    assert images is not None and reference is not None
    K = torch.from_numpy(np.stack(Ks))
    K[:, :2, :] /= downscale  # fx, fy, cx, cy (see the module docstring for the crop)
    c2w = torch.from_numpy(np.stack([fr.c2w for fr in frames]))
    w2c = opengl_c2w_to_opencv_w2c(c2w)
    times = torch.tensor([fr.time for fr in frames], dtype=torch.float64)
    cams = Cameras(
        K=K.to(torch.float32), world_to_camera=w2c.to(torch.float32),
        width=images.shape[2], height=images.shape[1], times=times.to(torch.float32),
    )
    return CaptureSplit(images, alphas, cams, [fr.file for fr in frames]), reference


def _cameras_subset(cams: Cameras, idx) -> Cameras:
    return Cameras(
        K=cams.K[idx], world_to_camera=cams.world_to_camera[idx], width=cams.width, height=cams.height,
        times=None if cams.times is None else cams.times[idx],
    )


INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")


def intrinsics_fields(obj: dict, where: str) -> dict:
    """The intrinsics keys present (and not null) in a transforms object or frame, as numbers."""
    return {k: as_number(obj[k], where, k) for k in INTRINSIC_KEYS if k in obj and obj[k] is not None}


def read_point_cloud(path: Path, where: str) -> tuple[Tensor, Optional[Tensor]]:
    """A point-cloud PLY (x, y, z and optional red, green, blue) -> (P, 3) points, (P, 3) colours in [0, 1]."""
    from renderers.ply import PlyError, read_ply

    if not path.is_file():
        raise CaptureError(f"{where}: point cloud {path} does not exist; fix ply_file_path or remove it")
    try:
        ply = read_ply(path)
    except PlyError as e:
        raise CaptureError(f"{path}: not a readable point-cloud PLY ({str(e).replace(str(path) + ': ', '')}); "
                           f"referenced by {where}") from None
    if "vertex" not in ply:
        raise CaptureError(f"{path}: no 'vertex' element (found {list(ply.elements)}); referenced by {where}")
    v = ply["vertex"]
    names = set(v.dtype.names)
    if not {"x", "y", "z"} <= names:
        raise CaptureError(f"{path}: the vertex element has no x, y, z properties; referenced by {where}")
    xyz = np.stack([np.asarray(v[k], dtype=np.float32) for k in ("x", "y", "z")], axis=-1)
    rgb = None
    if {"red", "green", "blue"} <= names:
        raw = np.stack([np.asarray(v[k], dtype=np.float32) for k in ("red", "green", "blue")], axis=-1)
        rgb = torch.from_numpy(raw / (255.0 if v["red"].dtype.kind in "ui" else 1.0)).clamp(0, 1)
    if not np.isfinite(xyz).all():
        raise CaptureError(f"{path}: point cloud holds NaN or infinite coordinates; referenced by {where}")
    return torch.from_numpy(xyz), rgb

"""Camera poses of a handheld clip with pycolmap: frames -> SIFT -> sequential matching -> mapping.

    from scene4d.sfm import poses_command
    res = poses_command(Path("clip.mp4"), Path("poses/"))   # writes poses/transforms.json (nerfstudio)

Steps of :func:`estimate_poses` (each timed in ``result.timings``):

1. **decode**: :func:`scene4d.frames.load_frames` picks, deblurs, resizes and times the frames; they
   are written to ``work_dir/images/frame_00000.png, ...`` (user masks to ``work_dir/masks``).
2. **features**: SIFT, one shared camera (``CameraMode.SINGLE``; ``SIMPLE_RADIAL`` by default,
   ``PINHOLE`` for undistorted footage). Frames with too little texture are reported.
3. **matching**: sequential matching with ``overlap`` neighbours (plus quadratic overlap); loop
   detection only with a vocabulary tree file given (nothing is downloaded). A camera that barely
   moves, or only turns on the spot (a pure rotation explains every frame's matches), is an error
   here: there is no parallax to find positions from.
4. **mapping**: incremental mapping. Then, when ``dynamic_pass`` is on, moving objects are found and
   removed: features whose matches break the static-scene geometry (Sampson error of a tight-
   threshold fundamental matrix per pair, epipolar and reprojection residuals under the current
   model) are flagged, along with their tracks, and grown into per-frame dynamic regions
   (``work_dir/dynamic_masks``); their matches are deleted, every pair is geometrically re-verified
   without them and the clip re-mapped (up to ``dynamic_iterations`` rounds). When frames are left
   out or the clip splits into several models: re-match with twice the overlap and map with relaxed
   initialisation, register leftovers into the best model, again under ``reseeds`` other random
   seeds while frames are missing, then try pycolmap's global mapper; the model with the most
   frames wins. Fewer than ``min_registered`` of the frames registered is an
   error saying what went wrong where (cuts, still or textureless stretches) and what to try.
5. **undistort**: distorted models are undistorted to pinhole with ``pycolmap.undistort_images``.

The result is normalised: the sparse points' median is the origin, the cameras' mean up
direction is +z and the points' 95th-percentile distance from the origin is 1. The work folder
(``work_dir``) is scratch: its ``sparse*`` folders are replaced on every run; ``sparse/`` holds
the final (distorted) model, ``undistorted/`` the pinhole images when undistortion was needed.

User masks: a folder with one image per source frame (same file name or stem as the frame for
an image folder; for a video, one per video frame in natural name order); **nonzero = static
(use), zero = moving (ignore)**, COLMAP's convention.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from scene4d.data.capture import CaptureError
from scene4d.frames import Frames, FramesError, list_images, load_frames, natural_key

__all__ = [
    "PosesError", "PosesOptions", "PosesResult", "estimate_poses", "load_colmap_model", "write_nerfstudio",
    "read_points_ply", "write_points_ply", "poses_command", "is_colmap_folder",
]


class PosesError(CaptureError):
    """The camera-pose step failed; the message says what was found, where, and what to try."""


def _pycolmap():
    try:
        import pycolmap
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise PosesError(
            f"camera poses need pycolmap, which is not installed ({e}); install it with "
            "`pip install 'scene4d[sfm]'` (or `pip install pycolmap`)"
        ) from None
    return pycolmap


@contextmanager
def _quiet(pycolmap, verbose: bool):
    prev = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = prev if verbose else max(prev, 2)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = prev


# --------------------------------------------------------------------------- options / result
@dataclass
class PosesOptions:
    """Settings of :func:`estimate_poses` (frame picking options apply to video / folder input).

    Attributes:
        max_frames, fps, size, blur_ratio: frame picking, see :func:`scene4d.frames.load_frames`.
        masks: folder of user masks (nonzero = static, zero = moving/ignore), one per source frame.
        camera_model: ``"SIMPLE_RADIAL"`` (phones: one radial distortion term, undistorted after)
            or ``"PINHOLE"`` / ``"SIMPLE_PINHOLE"`` (already undistorted footage).
        overlap: how many following frames each frame is matched with.
        quadratic_overlap: also match frames 2^k apart.
        loop_detection: also match revisited places; needs ``vocab_tree`` (a local file: nothing is
            downloaded).
        vocab_tree: path of a COLMAP vocabulary tree for loop detection.
        dynamic_pass: find moving objects after a first mapping and re-map without them.
        dynamic_threshold_px: residual (pixels, working size) above which a match is inconsistent
            with the static scene.
        dynamic_iterations: at most this many flag-and-re-map rounds (stops early when nothing moves).
        min_registered: fraction of the kept frames that must be registered in one model.
        recover: on missing frames or splits, retry (relaxed init, larger overlap, leftovers,
            other random seeds, global mapper).
        reseeds: how many other random seeds the recovery tries (each: relaxed mapping + leftovers)
            while frames are still missing; the initial pair and RANSAC's draws are chance, and a
            clip near the limits can split under one seed and register whole under the next.
        min_features: median SIFT features per frame below which the clip is "too little texture".
        max_num_features: SIFT features per frame at most.
        num_threads: CPU threads for pycolmap (-1: all). Results repeat exactly only with 1:
            pycolmap's threaded stages vary with thread timing, and on hard clips (much of the
            frame moving) so do the first model and the moving-object masks.
        seed: random seed for RANSAC and mapping (repeatable results with ``num_threads=1``).
        verbose: let pycolmap log its progress.
    """

    max_frames: Optional[int] = 80
    fps: Optional[float] = None
    size: Optional[int] = 640
    blur_ratio: float = 0.5
    masks: Optional[Path] = None
    camera_model: str = "SIMPLE_RADIAL"
    overlap: int = 10
    quadratic_overlap: bool = True
    loop_detection: bool = False
    vocab_tree: Optional[Path] = None
    dynamic_pass: bool = True
    dynamic_threshold_px: float = 0.8
    dynamic_iterations: int = 2
    min_registered: float = 1.0
    recover: bool = True
    reseeds: int = 2
    min_features: int = 100
    max_num_features: int = 8192
    num_threads: int = -1
    seed: int = 0
    verbose: bool = False


@dataclass
class PosesResult:
    """Registered frames with OpenCV world-to-camera poses, one pinhole camera, sparse points.

    Attributes:
        world_to_camera: (R, 4, 4) float64 OpenCV world-to-camera of each registered frame.
        K: (3, 3) float64 pinhole intrinsics of the (undistorted) images, ``width`` x ``height``.
        width, height: size of the undistorted images.
        frame_indices: (R,) index of each registered frame among the kept frames (ascending).
        times: (R,) scene time in [0, 1] of each registered frame.
        image_paths: the undistorted image of each registered frame.
        n_frames: how many frames were kept from the source (registered or not).
        points_xyz: (P, 3) float64 sparse points (same world as the poses).
        points_rgb: (P, 3) uint8 their colours.
        points_error: (P,) mean reprojection error of each point (pixels).
        reprojection_error: mean reprojection error of the model (pixels).
        timings: seconds per step: decode, features, matching, mapping, dynamic, undistort, total.
        report: what happened, one line per decision or finding.
        camera: the estimated camera before undistortion: ``{"model", "params", "width", "height"}``.
        dynamic: moving-object pass statistics (flagged features, dropped matches, mean area).
        normalization: ``{"scale", "rotation", "translation"}``: ``x = scale * (rotation @ x_colmap +
            translation)`` maps COLMAP's world to this one.
        source: the video, image folder or COLMAP folder.
        work_dir: where the database, models and images are.
        frames: the picked frames (None for an imported COLMAP model).
    """

    world_to_camera: np.ndarray
    K: np.ndarray
    width: int
    height: int
    frame_indices: np.ndarray
    times: np.ndarray
    image_paths: list[Path]
    n_frames: int
    points_xyz: np.ndarray
    points_rgb: np.ndarray
    points_error: np.ndarray
    reprojection_error: float
    timings: dict[str, float]
    report: list[str]
    camera: dict[str, Any]
    dynamic: dict[str, Any]
    normalization: dict[str, Any]
    source: Path
    work_dir: Path
    frames: Optional[Frames] = None

    @property
    def n_registered(self) -> int:
        return int(len(self.frame_indices))

    @property
    def centers(self) -> np.ndarray:
        """(R, 3) camera centres."""
        R = self.world_to_camera[:, :3, :3]
        return -np.einsum("nji,nj->ni", R, self.world_to_camera[:, :3, 3])

    def to_cameras(self):
        """The registered frames as :class:`cameras.Cameras` (float32, with times)."""
        import torch

        from cameras import Cameras

        n = self.n_registered
        return Cameras(K=torch.from_numpy(np.repeat(self.K[None], n, 0)).float(),
                       world_to_camera=torch.from_numpy(self.world_to_camera).float(),
                       width=self.width, height=self.height, times=torch.from_numpy(self.times).float())


# --------------------------------------------------------------------------- small helpers
def _ranges(idx: Sequence[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> "1-3, 7, 9-10"."""
    idx = sorted(int(i) for i in idx)
    if not idx:
        return "none"
    out, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(out)


def _runs(idx: Sequence[int]) -> list[tuple[int, int]]:
    idx = sorted(int(i) for i in idx)
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


class _Clip:
    """Frame bookkeeping shared by the steps: names, image ids, timestamps for messages."""

    def __init__(self, frames: Frames, work: Path):
        self.frames = frames
        self.n = len(frames)
        self.names = [f"frame_{i:05d}.png" for i in range(self.n)]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.work = work
        self.image_dir = work / "images"
        self.db_path = work / "database.db"
        self.id_of: dict[int, int] = {}
        self.idx_of: dict[int, int] = {}

    def when(self, i: int) -> str:
        return f"{self.frames.timestamps_s[i]:.1f} s"

    def span(self, a: int, b: int) -> str:
        return f"frames {a}-{b} ({self.when(a)}-{self.when(b)})" if a != b else f"frame {a} ({self.when(a)})"


def _write_inputs(clip: _Clip, masks: Optional[Path], report: list[str]) -> Optional[Path]:
    from PIL import Image

    for p in (clip.image_dir, clip.work / "masks"):
        if p.exists():
            shutil.rmtree(p)
    clip.image_dir.mkdir(parents=True)
    for name, img in zip(clip.names, clip.frames.images):
        Image.fromarray(img).save(clip.image_dir / name)  # lossless; the work folder is scratch
    if masks is None:
        return None
    masks = Path(masks).expanduser()
    if not masks.is_dir():
        raise PosesError(f"masks={masks}: not a folder; give a folder with one mask image per frame "
                         "(nonzero = static, zero = moving / ignore)")
    files = list_images(masks)
    if not files:
        raise PosesError(f"masks={masks}: holds no PNG/JPEG mask images")
    fr = clip.frames
    if fr.source.is_dir():
        by_stem = {}
        for f in files:
            by_stem.setdefault(Path(f.name).stem, f)
            by_stem.setdefault(f.name, f)
            if f.name.endswith(".png"):
                by_stem.setdefault(f.name[:-4], f)  # COLMAP style: frame.jpg.png
        chosen = []
        for name in fr.names:
            f = by_stem.get(name) or by_stem.get(Path(name).stem)
            if f is None:
                raise PosesError(f"masks={masks}: no mask for frame {name} (looked for {Path(name).stem}.png, "
                                 f"{name}.png); give every frame a mask with the same name")
            chosen.append(f)
    else:
        if len(files) != fr.n_source:
            raise PosesError(
                f"masks={masks}: {len(files)} mask images but the video has {fr.n_source} frames; give one mask "
                "per video frame, named so that they sort in frame order (mask_0001.png, ...)"
            )
        chosen = [files[i] for i in fr.source_indices]
    out = clip.work / "masks"
    out.mkdir(parents=True)
    covered = []
    for name, f in zip(clip.names, chosen):
        with Image.open(f) as im:
            m = np.asarray(im.convert("L").resize((fr.width, fr.height), Image.NEAREST))
        m = np.where(m > 0, 255, 0).astype(np.uint8)
        covered.append(float((m == 0).mean()))
        Image.fromarray(m).save(out / (name + ".png"))
    report.append(f"user masks: {len(chosen)} frames, {np.mean(covered):.0%} of the frame masked out on average")
    return out


# --------------------------------------------------------------------------- database access
def _open_db(pycolmap, clip: _Clip):
    db = pycolmap.Database.open(clip.db_path)
    if not clip.id_of:
        for im in db.read_all_images():
            i = clip.index[im.name]
            clip.id_of[i] = im.image_id
            clip.idx_of[im.image_id] = i
    return db


def _keypoints(pycolmap, clip: _Clip) -> dict[int, np.ndarray]:
    db = _open_db(pycolmap, clip)
    try:
        return {i: np.asarray(db.read_keypoints(clip.id_of[i]))[:, :2].astype(np.float64) for i in range(clip.n)}
    finally:
        db.close()


def _geometries(pycolmap, clip: _Clip) -> dict[tuple[int, int], Any]:
    """{(i, j) kept-frame indices, i < j: TwoViewGeometry} of verified pairs (ids ordered like the db)."""
    db = _open_db(pycolmap, clip)
    try:
        pids, geoms = db.read_two_view_geometries()
    finally:
        db.close()
    out = {}
    for pid, g in zip(pids, geoms):
        a, b = pycolmap.pair_id_to_image_pair(pid)
        out[(clip.idx_of[a], clip.idx_of[b])] = g
    return out


def _pair_inliers(pycolmap, clip: _Clip) -> dict[tuple[int, int], np.ndarray]:
    """{(i, j): (m, 2) keypoint indices (in i, in j)} of the verified matches."""
    out = {}
    for (i, j), g in _geometries(pycolmap, clip).items():
        m = np.asarray(g.inlier_matches, dtype=np.int64).reshape(-1, 2)
        if i > j:
            i, j, m = j, i, m[:, ::-1]
        out[(i, j)] = m
    return out


# --------------------------------------------------------------------------- diagnosis
def _texture_check(clip: _Clip, counts: np.ndarray, opts: PosesOptions, report: list[str]) -> None:
    med = float(np.median(counts))
    low = np.flatnonzero(counts < max(opts.min_features // 2, 20))
    report.append(f"features: median {med:.0f} SIFT features per frame (min {counts.min()}, max {counts.max()})")
    if med < opts.min_features:
        where = "; ".join(clip.span(a, b) for a, b in _runs(low)[:6]) if len(low) else "every frame"
        raise PosesError(
            f"too little texture: a median of {med:.0f} SIFT features per frame (the pose step needs about "
            f"{opts.min_features}; fewest in {where}). Film surfaces with visible detail in good light "
            "(not blank walls, sky, water or a dark room), keep the camera in focus, or use a larger working "
            f"size (size={opts.size})"
        )
    if len(low):
        report.append(f"little texture (< {max(opts.min_features // 2, 20)} features) in "
                      + "; ".join(clip.span(a, b) for a, b in _runs(low)[:6]))


def _rotation_residuals(x1: np.ndarray, x2: np.ndarray, f: float, c: np.ndarray) -> np.ndarray:
    """Pixel residuals of the best pure rotation (camera focal ``f``, principal point ``c``) taking x1 to x2."""
    b1 = np.c_[(x1 - c) / f, np.ones(len(x1))]
    b2 = np.c_[(x2 - c) / f, np.ones(len(x2))]
    b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    keep = np.ones(len(b1), dtype=bool)
    e = np.zeros(len(b1))
    for _ in range(2):  # Kabsch, then again without the gross outliers (moving objects)
        U, _, Vt = np.linalg.svd(b2[keep].T @ b1[keep])
        R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
        p = b1 @ R.T
        p = p[:, :2] / np.maximum(p[:, 2:3], 1e-9) * f + c
        e = np.linalg.norm(p - x2, axis=1)
        keep = e < max(3.0, 3.0 * float(np.median(e)))
    return e


def _motion(pycolmap, clip: _Clip, kps: dict[int, np.ndarray], inl: dict[tuple[int, int], np.ndarray]) -> dict:
    """Per-frame camera motion seen in the verified matches.

    ``disp[i]``: the largest median feature displacement (px) between frame i and a frame it matched.
    ``rotation[i]``: median residual (px) of the best pure rotation explaining the matches of frame i
    and its farthest matched frame, with the focal length that best explains every frame that way:
    ~0 when the camera only turns (or stands still): no parallax. ``link[i]``: most verified matches
    between any frame <= i and any frame > i (0: nothing joins the two sides).
    """
    n = clip.n
    disp = np.zeros(n)
    link = np.zeros(max(n - 1, 0), dtype=np.int64)
    far: dict[int, tuple[int, tuple[int, int]]] = {}
    for (i, j), m in inl.items():
        if len(m) >= 15:
            link[i:j] = np.maximum(link[i:j], len(m))
        if len(m) < 30:
            continue
        d = float(np.median(np.linalg.norm(kps[j][m[:, 1]] - kps[i][m[:, 0]], axis=1)))
        for k in (i, j):
            disp[k] = max(disp[k], d)
            if k not in far or j - i > far[k][0]:
                far[k] = (j - i, (i, j))
    rotation = np.full(n, np.inf)
    pairs = sorted({p for _, p in far.values()})
    if pairs:
        W, H = clip.frames.width, clip.frames.height
        c = np.array([W / 2.0, H / 2.0])
        probe = [pairs[k] for k in np.unique(np.linspace(0, len(pairs) - 1, min(len(pairs), 40)).astype(int))]

        def score(f: float) -> float:
            return float(np.median([np.median(_rotation_residuals(kps[i][inl[(i, j)][:, 0]], kps[j][inl[(i, j)][:, 1]], f, c))
                                    for i, j in probe]))

        fs = np.geomspace(0.3, 4.0, 40) * max(W, H)
        f_best = float(fs[int(np.argmin([score(f) for f in fs]))])
        res = {(i, j): float(np.median(_rotation_residuals(kps[i][inl[(i, j)][:, 0]], kps[j][inl[(i, j)][:, 1]],
                                                           f_best, c))) for i, j in pairs}
        for k, (_, p) in far.items():
            rotation[k] = res[p]
    return {"disp": disp, "rotation": rotation, "link": link}


def _still_ranges(clip: _Clip, motion: dict, thr: float) -> list[tuple[int, int]]:
    still = np.flatnonzero((motion["rotation"] < thr) | (motion["disp"] < thr))
    return [r for r in _runs(still) if r[1] - r[0] >= 2]


def _parallax_check(clip: _Clip, motion: dict, thr: float, report: list[str]) -> None:
    rot = motion["rotation"][np.isfinite(motion["rotation"])]
    report.append(f"motion: median feature displacement {np.median(motion['disp']):.1f} px; a pure rotation "
                  f"leaves {np.median(rot) if len(rot) else float('nan'):.2f} px (parallax)")
    if np.all(motion["disp"] < thr):
        raise PosesError(
            f"the camera barely moves: features move less than {thr:.1f} px between any two of the {clip.n} frames "
            f"({clip.when(0)}-{clip.when(clip.n - 1)}), so there is no parallax to estimate poses from. Move the "
            "camera through the scene while filming: walk sideways or around the subject (a tripod shot "
            "cannot be reconstructed)"
        )
    if len(rot) and np.percentile(rot, 90) < thr:
        raise PosesError(
            f"no parallax: the camera only turns on the spot; over {clip.span(0, clip.n - 1)} a pure rotation explains "
            f"the feature motion to {np.median(rot):.2f} px, so the camera's position cannot be recovered. Move "
            "the camera sideways or around the subject while filming instead of panning from one place"
        )


def _baseline_check(clip: _Clip, rec, report: list[str]) -> None:
    """A model whose cameras hardly move relative to the scene distance (pure rotation) is no model."""
    ims = [im for im in rec.images.values() if im.has_pose]
    c = np.array([np.asarray(im.projection_center()) for im in ims])
    xyz = np.array([p.xyz for p in rec.points3D.values()]).reshape(-1, 3)
    if len(c) < 2 or len(xyz) == 0:
        return
    spread = 2.0 * math.sqrt(max(float(np.linalg.eigvalsh(np.cov(c.T))[-1]), 0.0))
    depth = float(np.median(np.linalg.norm(xyz[:, None, :] - c[None, :: max(1, len(c) // 8)], axis=-1)))
    ratio = spread / max(depth, 1e-12)
    report.append(f"camera path spans {ratio:.1%} of the distance to the scene")
    if ratio < 0.01:
        raise PosesError(
            f"no parallax: the camera turns but barely moves (its path spans {ratio:.2%} of the distance to the "
            f"scene) over {clip.span(0, clip.n - 1)}; poses from a camera that only pans are unreliable. Move the "
            "camera sideways or around the subject instead of turning on the spot"
        )

# --------------------------------------------------------------------------- pycolmap steps
def _extract(pycolmap, clip: _Clip, opts: PosesOptions, mask_dir: Optional[Path]) -> None:
    if clip.db_path.exists():
        clip.db_path.unlink()
    ro = pycolmap.ImageReaderOptions()
    ro.camera_model = opts.camera_model
    if mask_dir is not None:
        ro.mask_path = str(mask_dir)
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = opts.num_threads
    eo.sift.max_num_features = opts.max_num_features
    pycolmap.extract_features(clip.db_path, clip.image_dir, image_names=clip.names,
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=ro,
                              extraction_options=eo, device=pycolmap.Device.cpu)
    clip.id_of.clear()
    clip.idx_of.clear()


def _match(pycolmap, clip: _Clip, opts: PosesOptions, overlap: int) -> None:
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = opts.num_threads
    po = pycolmap.SequentialPairingOptions()
    po.overlap = overlap
    po.quadratic_overlap = opts.quadratic_overlap
    if opts.loop_detection:
        po.loop_detection = True
        po.vocab_tree_path = str(opts.vocab_tree)
    vo = pycolmap.TwoViewGeometryOptions()
    vo.ransac.random_seed = opts.seed
    pycolmap.match_sequential(clip.db_path, matching_options=mo, pairing_options=po, verification_options=vo,
                              device=pycolmap.Device.cpu)


def _fresh_dir(path: Path) -> None:
    """An empty folder at ``path`` (pycolmap writes its models there; old ones would be read back)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _incremental(pycolmap, clip: _Clip, out: Path, opts: PosesOptions, relaxed: bool,
                 input_path: Optional[Path] = None) -> list:
    _fresh_dir(out)
    o = pycolmap.IncrementalPipelineOptions()
    o.num_threads = opts.num_threads
    o.random_seed = opts.seed
    o.min_model_size = 3
    m = o.mapper
    if relaxed:
        m.init_min_num_inliers = 40
        m.init_min_tri_angle = 6.0
        m.init_max_reg_trials = 4
        m.abs_pose_min_num_inliers = 15
        m.abs_pose_min_inlier_ratio = 0.15
        m.max_reg_trials = 6
        o.init_num_trials = 400
        o.min_num_matches = 10
    kw = {} if input_path is None else {"input_path": input_path}
    recs = pycolmap.incremental_mapping(clip.db_path, clip.image_dir, out, o, **kw)
    return [r for r in recs.values() if r.num_reg_images() > 0 and r.num_points3D() > 0]


def _global(pycolmap, clip: _Clip, out: Path, opts: PosesOptions) -> list:
    _fresh_dir(out)
    o = pycolmap.GlobalPipelineOptions()
    o.num_threads = opts.num_threads
    o.random_seed = opts.seed
    o.mapper.global_positioning.use_gpu = False
    o.mapper.bundle_adjustment.ceres.use_gpu = False
    recs = pycolmap.global_mapping(clip.db_path, clip.image_dir, out, o)
    return [r for r in recs.values() if r.num_reg_images() > 0 and r.num_points3D() > 0]


def _registered(clip: _Clip, rec) -> list[int]:
    return sorted(clip.index[im.name] for im in rec.images.values() if im.has_pose)


def _better(clip: _Clip, a, b) -> bool:
    """Is model ``a`` better than ``b`` (more frames; then lower reprojection error)?"""
    if b is None:
        return True
    na, nb = len(_registered(clip, a)), len(_registered(clip, b))
    if na != nb:
        return na > nb
    return a.compute_mean_reprojection_error() < b.compute_mean_reprojection_error()


def _map_once(pycolmap, clip: _Clip, opts: PosesOptions, tag: str):
    """Plain incremental mapping: (best model or None, every model)."""
    recs = _incremental(pycolmap, clip, clip.work / f"sparse_{tag}", opts, relaxed=False)
    best = None
    for r in recs:
        best = r if _better(clip, r, best) else best
    return best, recs


def _recover(pycolmap, clip: _Clip, opts: PosesOptions, best, models: list, report: list[str], on_rematch=None):
    """Frames missing or a split: retry (see the module docstring). Returns (best model, models of the winning try)."""
    tag = "recover"
    n_best = len(_registered(clip, best)) if best is not None else 0
    report.append(f"mapping: {n_best} of {clip.n} frames in the largest of {len(models)} model(s); recovering")
    # 1. larger overlap
    _match(pycolmap, clip, opts, overlap=2 * opts.overlap)
    if on_rematch is not None:
        on_rematch()
    # 2. relaxed mapping, then the leftovers registered into its best model; again with other random
    # seeds while frames are missing (the initial pair and RANSAC's draws are chance: a clip near the
    # limits can split under one seed and register whole under the next)
    for k in range(1 + opts.reseeds):
        o = opts if k == 0 else replace(opts, seed=opts.seed + k)
        if k:
            pycolmap.set_random_seed(o.seed)
        recs = _incremental(pycolmap, clip, clip.work / f"sparse_{tag}_relaxed{k}", o, relaxed=True)
        if recs and k == 0:
            models = recs
        for r in recs:
            if _better(clip, r, best):
                best, models = r, recs
        n_new = len(_registered(clip, best)) if best is not None else 0
        report.append(f"  relaxed mapping with overlap {2 * opts.overlap}" + (f", seed {o.seed}" if k else "")
                      + f": {n_new} frames in the best model")
        if best is not None and n_new < clip.n:
            seed_dir = clip.work / f"sparse_{tag}_seed"
            if seed_dir.exists():
                shutil.rmtree(seed_dir)
            seed_dir.mkdir(parents=True)
            best.write(seed_dir)
            recs = _incremental(pycolmap, clip, clip.work / f"sparse_{tag}_leftovers{k}", o, relaxed=True,
                                input_path=seed_dir)
            for r in recs:
                best = r if _better(clip, r, best) else best
            n_new = len(_registered(clip, best))
            report.append(f"  registering leftovers into it: {n_new} frames")
        if n_new == clip.n:
            break
    if opts.reseeds:
        pycolmap.set_random_seed(opts.seed)
    # 3. the global mapper
    if best is None or len(_registered(clip, best)) < clip.n:
        try:
            recs = _global(pycolmap, clip, clip.work / f"sparse_{tag}_global", opts)
        except Exception as e:  # a failing fallback must not hide the real problem
            report.append(f"  global mapper failed ({type(e).__name__}: {e})")
            recs = []
        if recs:
            g = max(recs, key=lambda r: len(_registered(clip, r)))
            report.append(f"  global mapper: {len(_registered(clip, g))} frames in the largest of {len(recs)} model(s)")
            if _better(clip, g, best):
                best, models = g, recs
    return best, models


# --------------------------------------------------------------------------- moving objects
def _sampson(x1: np.ndarray, x2: np.ndarray, F: np.ndarray) -> np.ndarray:
    a = np.c_[x1, np.ones(len(x1))]
    b = np.c_[x2, np.ones(len(x2))]
    Fa = a @ F.T
    Fb = b @ F
    num = (b * Fa).sum(1) ** 2
    den = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Fb[:, 0] ** 2 + Fb[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-18))


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    a = np.apply_along_axis(lambda v: np.convolve(np.pad(v, r, mode="edge"), k, mode="valid"), 0, a)
    return np.apply_along_axis(lambda v: np.convolve(np.pad(v, r, mode="edge"), k, mode="valid"), 1, a)


def _robust_threshold(residuals: np.ndarray, floor: float) -> float:
    """``floor``, or 3 robust sigmas of the residuals when they are noisier (real footage)."""
    if len(residuals) == 0:
        return floor
    return max(floor, 3.0 * 1.4826 * float(np.median(residuals)))


def _dynamic_flags(pycolmap, clip: _Clip, rec, kps: dict[int, np.ndarray], inl: dict, opts: PosesOptions):
    """Per-frame boolean flags of keypoints on moving objects, and per-frame dynamic region masks.

    Evidence per keypoint (counts of consistent / inconsistent matches):

    * per verified pair: Sampson error under a fundamental matrix re-estimated with a tight
      threshold (the static background is the dominant motion);
    * under the model ``rec`` (when given): Sampson error of every verified match between two
      registered frames with the model's relative pose, and the reprojection error of every
      triangulated observation.

    A residual is inconsistent above ``dynamic_threshold_px`` or 3 robust sigmas of its set,
    whichever is larger (real footage is noisier than the floor). A keypoint with at least a third
    of its evidence inconsistent is flagged, and so is one whose match partners are at least a
    third flagged (a track moves as a whole). Flagged keypoints that cluster (their smoothed
    density beats that of consistent ones) make a frame's dynamic region; every keypoint inside
    it counts as moving.
    """
    thr = opts.dynamic_threshold_px
    bad = {i: np.zeros(len(k)) for i, k in kps.items()}
    good = {i: np.zeros(len(k)) for i, k in kps.items()}
    ro = pycolmap.RANSACOptions()
    ro.max_error = thr
    ro.random_seed = opts.seed
    for (i, j), m in inl.items():
        if len(m) < 30:
            continue
        x1, x2 = kps[i][m[:, 0]], kps[j][m[:, 1]]
        res = pycolmap.estimate_fundamental_matrix(x1, x2, ro)
        if res is None:
            continue
        e = _sampson(x1, x2, np.asarray(res["F"]))
        out = e > _robust_threshold(e, thr)
        np.add.at(bad[i], m[out, 0], 1)
        np.add.at(bad[j], m[out, 1], 1)
        np.add.at(good[i], m[~out, 0], 1)
        np.add.at(good[j], m[~out, 1], 1)
    if rec is not None:
        cams = {}
        poses = {}
        for im in rec.images.values():
            if not im.has_pose:
                continue
            k = clip.index[im.name]
            cams[k] = rec.cameras[im.camera_id]
            poses[k] = np.asarray(im.cam_from_world().matrix())
            # reprojection residuals of the triangulated observations
            pts = [(p2i, p.point3D_id) for p2i, p in enumerate(im.points2D) if p.has_point3D()]
            if pts:
                idx = np.array([a for a, _ in pts])
                X = np.array([rec.points3D[b].xyz for _, b in pts])
                Xc = X @ poses[k][:, :3].T + poses[k][:, 3]
                ok = Xc[:, 2] > 1e-9
                proj = np.asarray(cams[k].img_from_cam(Xc[ok], check_cheirality=False))
                err = np.linalg.norm(proj - kps[k][idx[ok]], axis=1)
                out = err > _robust_threshold(err, thr)
                np.add.at(bad[k], idx[ok][out], 1)
                np.add.at(good[k], idx[ok][~out], 1)
        for (i, j), m in inl.items():
            if i not in poses or j not in poses or len(m) == 0:
                continue
            Pi, Pj = poses[i], poses[j]
            R = Pj[:, :3] @ Pi[:, :3].T
            t = Pj[:, 3] - R @ Pi[:, 3]
            E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ R
            n1 = np.asarray(cams[i].cam_from_img(kps[i][m[:, 0]]))
            n2 = np.asarray(cams[j].cam_from_img(kps[j][m[:, 1]]))
            f = 0.5 * (cams[i].mean_focal_length() + cams[j].mean_focal_length())
            e = _sampson(n1, n2, E) * f
            out = e > _robust_threshold(e, thr)
            np.add.at(bad[i], m[out, 0], 1)
            np.add.at(bad[j], m[out, 1], 1)
            np.add.at(good[i], m[~out, 0], 1)
            np.add.at(good[j], m[~out, 1], 1)
    W, H = clip.frames.width, clip.frames.height
    cell = max(4, int(round(max(W, H) / 80)))
    gw, gh = math.ceil(W / cell), math.ceil(H / cell)
    own = {i: (bad[i] > 0) & (bad[i] >= (bad[i] + good[i]) / 3) for i in kps}
    # a track moves as a whole: a keypoint whose match partners are mostly flagged is flagged too
    hits = {i: np.zeros(len(k)) for i, k in kps.items()}
    seen = {i: np.zeros(len(k)) for i, k in kps.items()}
    for (i, j), m in inl.items():
        np.add.at(hits[i], m[:, 0], own[j][m[:, 1]])
        np.add.at(hits[j], m[:, 1], own[i][m[:, 0]])
        np.add.at(seen[i], m[:, 0], 1)
        np.add.at(seen[j], m[:, 1], 1)
    flags, regions = {}, {}
    for i, k in kps.items():
        f = own[i] | ((hits[i] > 0) & (hits[i] >= seen[i] / 3))
        c = ((bad[i] + good[i]) > 0) & ~f
        cx = np.clip((k[:, 0] / cell).astype(int), 0, gw - 1)
        cy = np.clip((k[:, 1] / cell).astype(int), 0, gh - 1)
        df = np.zeros((gh, gw))
        dc = np.zeros((gh, gw))
        np.add.at(df, (cy[f], cx[f]), 1)
        np.add.at(dc, (cy[c], cx[c]), 1)
        sig = 2.0
        df, dc = _blur(df, sig), _blur(dc, sig)
        per_blob = 1.0 / (2 * math.pi * sig * sig)  # density of one isolated keypoint at its cell
        reg = (df > dc) & (df > 2.5 * per_blob)
        regions[i] = reg
        flags[i] = f | reg[cy, cx]
    return flags, regions, cell


def _drop_dynamic(pycolmap, clip: _Clip, flags: dict[int, np.ndarray], opts: PosesOptions) -> tuple[int, int]:
    """Remove matches touching flagged keypoints and re-verify every pair without them.

    The raw matches lose the flagged keypoints, then the two-view geometries are estimated again,
    so each pair's model (and its inlier set) is that of the static scene alone. Returns the
    (dropped, kept) verified-match counts.
    """
    db = _open_db(pycolmap, clip)
    try:
        before = db.num_inlier_matches()
        ids, mats = db.read_all_matches()
        for pid, m in zip(ids, mats):
            a, b = pycolmap.pair_id_to_image_pair(pid)
            m = np.asarray(m, dtype=np.int64).reshape(-1, 2)
            keep = ~(flags[clip.idx_of[a]][m[:, 0]] | flags[clip.idx_of[b]][m[:, 1]])
            if not keep.all():
                db.delete_matches(a, b)
                db.write_matches(a, b, np.ascontiguousarray(m[keep].astype(np.uint32)))
        db.clear_two_view_geometries()
    finally:
        db.close()
    vo = pycolmap.GeometricVerifierOptions()
    vo.num_threads = opts.num_threads
    to = pycolmap.TwoViewGeometryOptions()
    to.ransac.random_seed = opts.seed
    pycolmap.geometric_verification(clip.db_path, verifier_options=vo, two_view_geometry_options=to)
    db = _open_db(pycolmap, clip)
    try:
        after = db.num_inlier_matches()
    finally:
        db.close()
    return max(before - after, 0), after


def _save_regions(clip: _Clip, regions: dict, cell: int) -> Path:
    from PIL import Image

    out = clip.work / "dynamic_masks"
    out.mkdir(parents=True, exist_ok=True)
    for i, reg in regions.items():
        m = np.kron(reg.astype(np.uint8), np.ones((cell, cell), dtype=np.uint8))[: clip.frames.height, : clip.frames.width]
        Image.fromarray(np.where(m > 0, 0, 255).astype(np.uint8)).save(out / (clip.names[i] + ".png"))
    return out


# --------------------------------------------------------------------------- failure explanation
def _distinct_parts(best: list[int], others: list[list[int]]) -> list[list[int]]:
    """The other models worth naming beside ``best``: largest first, each adding frames that no
    model named before it covers. The models come from several attempts (first mapping, relaxed
    retries, global mapper), so a later attempt's piece of an already named part is not a new part."""
    covered = set(best)
    named = []
    for frames in sorted(others, key=len, reverse=True):
        if set(frames) - covered:
            named.append(sorted(frames))
            covered |= set(frames)
    return named


def _explain(clip: _Clip, best, models: list, counts: np.ndarray, motion: dict, opts: PosesOptions,
             thr_motion: float) -> str:
    reg = _registered(clip, best) if best is not None else []
    missing = sorted(set(range(clip.n)) - set(reg))
    parts = [f"registered {len(reg)} of {clip.n} frames in one model"]
    if missing:
        parts.append(f"frames {_ranges(missing)} missing")
    others = _distinct_parts(reg, [_registered(clip, m) for m in models if m is not best])
    if others:
        segs = [_ranges(reg)] + [_ranges(o) for o in others[:4]]
        parts.append(f"the clip splits into {len(others) + 1} parts that could not be joined (frames "
                     + "; ".join(segs) + ")")
    msg = "; ".join(parts)
    why = []
    cuts = [k for k in range(clip.n - 1) if motion["link"][k] == 0]
    if cuts:
        why.append("no feature matches join " + ", ".join(f"frames {k} and {k + 1} ({clip.when(k + 1)})" for k in cuts[:5])
                   + ": a cut, a jump or a very fast move")
    for a, b in _still_ranges(clip, motion, thr_motion):
        if set(range(a, b + 1)) & set(missing) or not reg:
            why.append(f"the camera barely moves (no parallax) between frames {a}-{b} ({clip.when(a)}-{clip.when(b)})")
    low = [i for i in missing if counts[i] < max(opts.min_features // 2, 20)]
    if low:
        why.append(f"frames {_ranges(low)} have too little texture (< {max(opts.min_features // 2, 20)} features)")
    weak = [k for k in range(clip.n - 1) if 0 < motion["link"][k] < 30 and (k in missing or k + 1 in missing)]
    if weak and not cuts:
        why.append("few matches join " + ", ".join(f"frames {k}-{k + 1}" for k in weak[:5]) + " (motion blur or a fast turn)")
    tips = []
    if cuts:
        tips.append("cut the clip at the break and reconstruct each part (or film without cuts)")
    tips += [f"more overlap (overlap={2 * opts.overlap})", "more frames (max_frames / fps)",
             "masks on moving objects", "a slower, steadier camera"]
    text = msg + (f". Found: {'; '.join(why)}" if why else "")
    return (f"{text}. Retrying with relaxed settings, a larger overlap and the global mapper did not repair it. "
            f"Try: {'; '.join(tips)}; or accept a partial model with min_registered < {opts.min_registered:g}")


# --------------------------------------------------------------------------- result
def _normalization(xyz: np.ndarray, w2c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) with x' = s (R x + t): points' median -> 0, mean up -> +z, p95 radius -> 1."""
    up = -w2c[:, 1, :3].mean(0)  # OpenCV camera -y in world coordinates
    up = up / max(np.linalg.norm(up), 1e-12)
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(up, z)
    c = float(up @ z)
    if np.linalg.norm(v) < 1e-9:
        R = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        R = np.eye(3) + vx + vx @ vx / (1 + c)
    centre = np.median(xyz, axis=0) if len(xyz) else np.zeros(3)
    r = np.percentile(np.linalg.norm(xyz - centre, axis=1), 95) if len(xyz) else 1.0
    s = 1.0 / max(float(r), 1e-9)
    return s, R, -R @ centre


def _result_from_model(pycolmap, rec, image_dir: Path, names_to_index: dict[str, int], times_of: dict[int, float],
                       n_frames: int, camera_before: dict) -> dict:
    """Poses, K, points of an undistorted (pinhole) model, normalised."""
    cams = list(rec.cameras.values())
    ims = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: names_to_index[im.name])
    cam_ids = {im.camera_id for im in ims}
    Ks = {}
    for cid in cam_ids:
        cam = rec.cameras[cid]
        Ks[cid] = (np.asarray(cam.calibration_matrix(), dtype=np.float64), int(cam.width), int(cam.height))
    first = Ks[ims[0].camera_id]
    for cid, (K, w, h) in Ks.items():
        if (w, h) != first[1:] or np.abs(K - first[0]).max() > 1e-3 * max(w, h):
            raise PosesError(
                f"the model has {len(cams)} cameras with different intrinsics ({first[1]}x{first[2]} f={first[0][0, 0]:.1f} "
                f"vs {w}x{h} f={K[0, 0]:.1f}); scene4d expects one shared camera: re-run the pose step "
                "(it shares one camera) or give a model with a single camera"
            )
    w2c = np.stack([np.vstack([np.asarray(im.cam_from_world().matrix()), [0, 0, 0, 1]]) for im in ims])
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
    err = np.array([p.error for p in pts], dtype=np.float64)
    s, R, t = _normalization(xyz, w2c)
    xyz_n = s * (xyz @ R.T + t)
    w2c_n = w2c.copy()
    Rc, tc = w2c[:, :3, :3], w2c[:, :3, 3]
    # x_cam = Rc x + tc, x = R^T (x'/s - t)  ->  s x_cam = Rc R^T x' + s (tc - Rc R^T t)
    RcRt = Rc @ R.T
    w2c_n[:, :3, :3] = RcRt
    w2c_n[:, :3, 3] = s * (tc - np.einsum("nij,j->ni", RcRt, t))
    idx = np.array([names_to_index[im.name] for im in ims], dtype=np.int64)
    return dict(
        world_to_camera=w2c_n, K=first[0], width=first[1], height=first[2], frame_indices=idx,
        times=np.array([times_of[i] for i in idx], dtype=np.float64),
        image_paths=[image_dir / im.name for im in ims], n_frames=n_frames, points_xyz=xyz_n, points_rgb=rgb,
        points_error=err, reprojection_error=float(rec.compute_mean_reprojection_error()), camera=camera_before,
        normalization={"scale": s, "rotation": R.tolist(), "translation": t.tolist()},
    )


def _camera_info(rec) -> dict:
    cam = next(iter(rec.cameras.values()))
    return {"model": cam.model_name, "params": [float(v) for v in cam.params], "width": int(cam.width),
            "height": int(cam.height), "params_info": cam.params_info}


def _undistort(pycolmap, rec, image_dir: Path, out: Path):
    """(pinhole model, image folder): the model as is when already pinhole, else undistorted images."""
    cams = list(rec.cameras.values())
    distortion = [float(v) for c in cams for v in np.asarray(c.params)[list(c.extra_params_idxs())]]
    if all(c.model_name in ("PINHOLE", "SIMPLE_PINHOLE") for c in cams) or not any(distortion):
        return rec, image_dir, False
    _fresh_dir(out)
    src = out / "_distorted_model"
    src.mkdir()
    rec.write(src)
    names = [im.name for im in rec.images.values() if im.has_pose]
    pycolmap.undistort_images(out, src, image_dir, image_names=names, output_type="COLMAP")
    shutil.rmtree(src)
    und = pycolmap.Reconstruction(out / "sparse")
    return und, out / "images", True


# --------------------------------------------------------------------------- public API
def estimate_poses(
    frames_or_path: Union[Frames, str, Path],
    work_dir: Union[str, Path],
    options: Optional[PosesOptions] = None,
    **overrides: Any,
) -> PosesResult:
    """Camera poses of a clip (video file, image folder or :class:`Frames`) with pycolmap.

    ``overrides`` replace fields of ``options`` (e.g. ``overlap=20``). The work folder keeps the
    database, every model tried (``sparse_*``), the frames, masks and undistorted images.

    Raises:
        PosesError / FramesError: with what was found and what to try (see the module docstring).
    """
    opts = replace(options or PosesOptions(), **overrides)
    if not 0.0 < opts.min_registered <= 1.0:
        raise PosesError(f"min_registered={opts.min_registered}: a fraction in (0, 1]")
    if opts.overlap < 1:
        raise PosesError(f"overlap={opts.overlap}: match each frame with at least 1 following frame")
    if opts.loop_detection and (opts.vocab_tree is None or not Path(opts.vocab_tree).is_file()):
        raise PosesError(
            f"loop_detection needs a local vocabulary tree file (vocab_tree={opts.vocab_tree}); scene4d downloads "
            "nothing: fetch one from https://demuc.de/colmap/ on a machine with network access and pass its path"
        )
    pycolmap = _pycolmap()
    work = Path(work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    for stale in [*work.glob("sparse*"), work / "undistorted", work / "dynamic_masks"]:
        if stale.is_dir():
            shutil.rmtree(stale)  # models of an earlier run must not be mistaken for this one's
    timings: dict[str, float] = {}
    report: list[str] = []
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    if isinstance(frames_or_path, Frames):
        frames = frames_or_path
        if len(frames) < 8:
            raise FramesError(f"only {len(frames)} frames; the pose step needs at least 8")
    else:
        frames = load_frames(frames_or_path, max_frames=opts.max_frames, fps=opts.fps, size=opts.size,
                             blur_ratio=opts.blur_ratio)
    report.append(f"frames: {len(frames)} of {frames.n_source} from {frames.source.name} at "
                  f"{frames.width}x{frames.height}")
    report += [f"  {n}" for n in frames.notes]
    clip = _Clip(frames, work)
    mask_dir = _write_inputs(clip, opts.masks, report)
    timings["decode"] = time.perf_counter() - t0
    pycolmap.set_random_seed(opts.seed)
    thr_motion = max(1.0, 0.004 * max(frames.width, frames.height))

    with _quiet(pycolmap, opts.verbose):
        t0 = time.perf_counter()
        _extract(pycolmap, clip, opts, mask_dir)
        kps = _keypoints(pycolmap, clip)
        counts = np.array([len(kps[i]) for i in range(clip.n)])
        timings["features"] = time.perf_counter() - t0
        _texture_check(clip, counts, opts, report)

        t0 = time.perf_counter()
        _match(pycolmap, clip, opts, opts.overlap)
        timings["matching"] = time.perf_counter() - t0
        inl = _pair_inliers(pycolmap, clip)
        motion = _motion(pycolmap, clip, kps, inl)
        _parallax_check(clip, motion, thr_motion, report)

        t_map = 0.0
        t0 = time.perf_counter()
        best, models = _map_once(pycolmap, clip, opts, "first")
        t_map += time.perf_counter() - t0
        n_best = len(_registered(clip, best)) if best is not None else 0
        report.append(f"first mapping: {n_best} of {clip.n} frames in the largest of {len(models)} model(s)"
                      + (f", reprojection error {best.compute_mean_reprojection_error():.2f} px" if best else ""))

        dyn: dict[str, Any] = {"flagged_features": 0, "dropped_matches": 0, "mean_area": 0.0, "frames_with_motion": 0}
        timings["dynamic"] = 0.0
        all_flags = {i: np.zeros(len(k), dtype=bool) for i, k in kps.items()}
        if opts.dynamic_pass:
            all_regions: dict[int, np.ndarray] = {}
            total_dropped = 0
            cell = 1
            for it in range(opts.dynamic_iterations):
                t0 = time.perf_counter()
                inl = _pair_inliers(pycolmap, clip)
                flags, regions, cell = _dynamic_flags(pycolmap, clip, best, kps, inl, opts)
                for i in flags:
                    all_flags[i] |= flags[i]
                    all_regions[i] = all_regions[i] | regions[i] if i in all_regions else regions[i]
                dropped, kept = _drop_dynamic(pycolmap, clip, all_flags, opts)
                total_dropped += dropped
                timings["dynamic"] += time.perf_counter() - t0
                report.append(f"moving objects, pass {it + 1}: flagged {int(sum(f.sum() for f in flags.values()))} "
                              f"features; dropped {dropped} of {dropped + kept} verified matches")
                moving_frames = sum(bool(r.mean() > 0.005) for r in regions.values())
                if dropped < max(20, 0.005 * (dropped + kept)) or (moving_frames == 0 and dropped < 0.05 * (dropped + kept)):
                    break  # nothing (more) moves: scattered outliers alone do not need a new model
                t0 = time.perf_counter()
                best2, models2 = _map_once(pycolmap, clip, opts, f"static{it + 1}")
                t_map += time.perf_counter() - t0
                n2 = len(_registered(clip, best2)) if best2 is not None else 0
                report.append(f"re-mapped without moving objects: {n2} of {clip.n} frames in the largest of "
                              f"{len(models2)} model(s)" + (f", reprojection error "
                              f"{best2.compute_mean_reprojection_error():.2f} px" if best2 else ""))
                if best2 is None or n2 < n_best:
                    report.append("  fewer frames than before: kept the previous model")
                    break
                best, models, n_best = best2, models2, n2
            if all_regions:
                area = np.array([r.mean() for r in all_regions.values()])
                _save_regions(clip, all_regions, cell)
                dyn = {"flagged_features": int(sum(f.sum() for f in all_flags.values())),
                       "dropped_matches": total_dropped, "mean_area": float(area.mean()),
                       "frames_with_motion": int((area > 0.005).sum())}
                report.append(
                    f"moving objects: dynamic regions in {dyn['frames_with_motion']} of {clip.n} frames (covering "
                    f"{dyn['mean_area']:.1%} of a frame on average; masks in {clip.work / 'dynamic_masks'}); "
                    f"{dyn['flagged_features']} of {int(counts.sum())} features flagged; {total_dropped} matches dropped"
                )
        if n_best < clip.n and opts.recover:
            t0 = time.perf_counter()
            best, models = _recover(pycolmap, clip, opts, best, models, report,
                                    on_rematch=lambda: _drop_dynamic(pycolmap, clip, all_flags, opts))
            t_map += time.perf_counter() - t0
        timings["mapping"] = t_map

        reg = _registered(clip, best) if best is not None else []
        need = math.ceil(opts.min_registered * clip.n - 1e-9)
        if len(reg) < need:
            raise PosesError(_explain(clip, best, models, counts, motion, opts, thr_motion))
        _baseline_check(clip, best, report)
        missing = sorted(set(range(clip.n)) - set(reg))
        report.append(f"registered {len(reg)} of {clip.n} frames" + (f"; frames {_ranges(missing)} missing" if missing else ""))

        t0 = time.perf_counter()
        camera_before = _camera_info(best)
        model_dir = work / "sparse"
        if model_dir.exists():
            shutil.rmtree(model_dir)
        model_dir.mkdir()
        best.write(model_dir)
        und, und_images, did = _undistort(pycolmap, best, clip.image_dir, work / "undistorted")
        timings["undistort"] = time.perf_counter() - t0
        if did:
            report.append(f"undistorted {camera_before['model']} (params {np.round(camera_before['params'], 4).tolist()}) "
                          "to pinhole")
    fields = _result_from_model(pycolmap, und, und_images, {n: i for i, n in enumerate(clip.names)},
                                {i: float(t) for i, t in enumerate(frames.times)}, clip.n, camera_before)
    timings["total"] = time.perf_counter() - t_all
    return PosesResult(**fields, timings=timings, report=report, dynamic=dyn, source=frames.source,
                       work_dir=work, frames=frames)


def load_colmap_model(folder: Union[str, Path], work_dir: Optional[Union[str, Path]] = None) -> PosesResult:
    """An existing COLMAP reconstruction (``folder/sparse/0`` or ``folder/sparse`` + ``folder/images``).

    Times follow the registered images' names in natural order (first 0, last 1). A distorted
    camera is undistorted into ``work_dir`` (default ``folder/scene4d_undistorted``).
    """
    pycolmap = _pycolmap()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise PosesError(f"{folder}: no such COLMAP folder (expected sparse/0 and images/ inside)")
    cands = [folder / "sparse" / "0", folder / "sparse", folder]
    model = next((c for c in cands if (c / "cameras.bin").is_file() or (c / "cameras.txt").is_file()), None)
    if model is None:
        raise PosesError(f"{folder}: no COLMAP model (looked for cameras.bin/.txt in sparse/0, sparse and the "
                         "folder itself); run the pose step on the video instead")
    images = folder / "images"
    if not images.is_dir():
        raise PosesError(f"{folder}: has a model in {model.relative_to(folder) if model != folder else '.'} but no "
                         "images/ folder beside it")
    t0 = time.perf_counter()
    try:
        rec = pycolmap.Reconstruction(model)
    except Exception as e:
        raise PosesError(f"{model}: cannot read the COLMAP model ({e})") from None
    ims = [im for im in rec.images.values() if im.has_pose]
    if len(ims) < 2:
        raise PosesError(f"{model}: only {len(ims)} registered images")
    names = sorted((im.name for im in ims), key=natural_key)
    missing = [n for n in names if not (images / n).is_file()]
    if missing:
        raise PosesError(f"{images}: {len(missing)} images of the model are missing (e.g. {missing[0]})")
    work = Path(work_dir) if work_dir is not None else folder / "scene4d_undistorted"
    camera_before = _camera_info(rec)
    with _quiet(pycolmap, False):
        und, und_images, did = _undistort(pycolmap, rec, images, work)
    n = len(names)
    times = {i: (i / (n - 1) if n > 1 else 0.0) for i in range(n)}
    fields = _result_from_model(pycolmap, und, und_images, {nm: i for i, nm in enumerate(names)}, times, n,
                                camera_before)
    report = [f"COLMAP model {model}: {n} registered images, {len(fields['points_xyz'])} points",
              "times from the image names' order"]
    if did:
        report.append(f"undistorted {camera_before['model']} to pinhole in {work}")
    return PosesResult(**fields, timings={"total": time.perf_counter() - t0}, report=report,
                       dynamic={}, source=folder, work_dir=work, frames=None)


# --------------------------------------------------------------------------- output
def write_points_ply(path: Union[str, Path], xyz: np.ndarray, rgb: np.ndarray) -> Path:
    """Binary little-endian PLY with float x, y, z and uchar red, green, blue; written atomically."""
    from renderers.ply import write_ply

    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb).reshape(-1, 3)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    v = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                  ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v["x"], v["y"], v["z"] = xyz.T
    v["red"], v["green"], v["blue"] = rgb.T
    return write_ply(Path(path), {"vertex": v}, comments=["scene4d sparse points"])


def read_points_ply(path: Union[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    """(xyz float32 (N, 3), rgb float32 (N, 3) in [0, 1]) of a point-cloud PLY (any PLY format).

    Points without colour are grey (0.5). The capture readers' :func:`read_point_cloud` does the reading.
    """
    from scene4d.data.capture import read_point_cloud

    path = Path(path)
    xyz, rgb = read_point_cloud(path, str(path))
    xyz = xyz.numpy()
    return xyz, (np.full_like(xyz, 0.5) if rgb is None else rgb.numpy().astype(np.float32))


def write_nerfstudio(result: PosesResult, out_dir: Union[str, Path]) -> Path:
    """Write ``out_dir/transforms.json`` (nerfstudio, PINHOLE, with "time"), ``images/``, ``sparse_points.ply``.

    ``transforms.json`` is written last (atomically), so its presence means the folder is complete;
    ``poses.json`` beside it holds the report, timings and statistics. Returns the transforms path.
    """
    import torch

    from cameras.conventions import opencv_w2c_to_nerfstudio_c2w
    from scene4d.io import atomic_write_json

    out = Path(out_dir).expanduser()
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    c2w = opencv_w2c_to_nerfstudio_c2w(torch.from_numpy(result.world_to_camera)).numpy()
    frames = []
    for k, (src, i, t) in enumerate(zip(result.image_paths, result.frame_indices, result.times)):
        name = f"frame_{int(i):05d}{src.suffix.lower() or '.png'}"
        dst = img_dir / name
        if src.resolve() != dst.resolve():
            tmp = dst.with_name("." + dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w[k].tolist(), "time": float(t)})
    write_points_ply(out / "sparse_points.ply", result.points_xyz, result.points_rgb)
    K = result.K
    atomic_write_json(out / "poses.json", {
        "source": str(result.source), "n_frames": result.n_frames, "registered": result.frame_indices.tolist(),
        "reprojection_error": result.reprojection_error, "timings": result.timings, "report": result.report,
        "camera": result.camera, "dynamic": result.dynamic, "normalization": result.normalization,
        "work_dir": str(result.work_dir),
    })
    transforms = {
        "camera_model": "PINHOLE",
        "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
        "w": int(result.width), "h": int(result.height),
        "ply_file_path": "sparse_points.ply",
        "frames": frames,
    }
    path = out / "transforms.json"
    atomic_write_json(path, transforms)
    return path


def is_colmap_folder(path: Union[str, Path]) -> bool:
    """Does ``path`` hold a COLMAP model (``sparse/0`` or ``sparse``) that :func:`load_colmap_model` reads?"""
    p = Path(path)
    return p.is_dir() and any((c / "cameras.bin").is_file() or (c / "cameras.txt").is_file()
                              for c in (p / "sparse" / "0", p / "sparse"))


_is_colmap_folder = is_colmap_folder


def poses_command(
    video: Path,
    out: Path,
    max_frames: int = 80,
    fps: Optional[float] = None,
    size: int = 640,
    masks: Optional[Path] = None,
    overlap: int = 10,
    camera_model: str = "SIMPLE_RADIAL",
    dynamic_pass: bool = True,
    min_registered: float = 1.0,
    loop_detection: bool = False,
    vocab_tree: Optional[Path] = None,
    work_dir: Optional[Path] = None,
    num_threads: int = -1,
    seed: int = 0,
    verbose: bool = False,
    quiet: bool = False,
) -> PosesResult:
    """``scene4d poses``: camera poses of a video (or image folder, or COLMAP folder) -> nerfstudio folder.

    Writes ``out/transforms.json`` (+ ``images/``, ``sparse_points.ply``, ``poses.json``); the
    pycolmap work files go to ``work_dir`` (default ``out/colmap``). Prints a summary unless ``quiet``.
    """
    video, out = Path(video).expanduser(), Path(out).expanduser()
    if is_colmap_folder(video):
        res = load_colmap_model(video, work_dir=work_dir or out / "colmap")
    else:
        opts = PosesOptions(max_frames=max_frames, fps=fps, size=size, masks=masks, overlap=overlap,
                            camera_model=camera_model, dynamic_pass=dynamic_pass, min_registered=min_registered,
                            loop_detection=loop_detection, vocab_tree=vocab_tree, num_threads=num_threads,
                            seed=seed, verbose=verbose)
        res = estimate_poses(video, work_dir or out / "colmap", opts)
    t0 = time.perf_counter()
    path = write_nerfstudio(res, out)
    res.timings["write"] = time.perf_counter() - t0
    if not quiet:
        missing = sorted(set(range(res.n_frames)) - set(res.frame_indices.tolist()))
        print(f"poses: registered {res.n_registered} of {res.n_frames} frames"
              + (f" (missing {_ranges(missing)})" if missing else "")
              + f", reprojection error {res.reprojection_error:.2f} px, {len(res.points_xyz)} sparse points")
        print(f"  camera: {res.width}x{res.height} pinhole f={res.K[0, 0]:.1f} (estimated {res.camera['model']})")
        if res.dynamic.get("flagged_features"):
            print(f"  moving objects: {res.dynamic['flagged_features']} features flagged, "
                  f"{res.dynamic['dropped_matches']} matches dropped")
        print("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()))
        if verbose:
            print("\n".join("  " + line for line in res.report))
        print(f"  wrote {path} (+ images/, sparse_points.ply, poses.json)")
    return res

"""Frames of a handheld clip for the camera-pose step: decode, pick, skip blur, resize, time.

    from scene4d.frames import load_frames
    fr = load_frames("clip.mp4", max_frames=60, size=640)
    fr.images   (N, H, W, 3) uint8 at the working size
    fr.times    (N,) scene time in [0, 1] (the kept frames' timestamps, normalised)

* A source is a video file (anything FFmpeg/PyAV decodes; phone rotation metadata is applied) or
  a folder of PNG/JPEG images, sorted naturally (``frame2`` before ``frame10``).
* Frames are picked on a grid of target timestamps: ``fps`` frames per second, or ``max_frames``
  evenly spaced over the clip (both: the fps grid, thinned to at most ``max_frames``). Each target
  takes the sharpest frame within a small window around it (at most 2 frames either side, never
  reaching into the next target's window), so a blurred frame is usually replaced by a sharp
  neighbour rather than dropped.
* Sharpness is the variance of the Laplacian of the grey working-size image. A picked frame is
  dropped only when it is still much blurrier than its neighbours (below ``blur_ratio`` times the
  median over the 3 picked frames either side); never the first or last frame and never two
  neighbours, so sequential matching always has a frame on each side of a gap.
* Images are area-averaged to the working size (long side ``size``; never enlarged).
* Times: video frames use the container's presentation timestamps (seconds); image folders have
  none, so frame ``k`` gets ``k / folder_fps``. Scene times are the kept timestamps mapped to [0, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from scene4d.data.capture import CaptureError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MIN_FRAMES = 8


class FramesError(CaptureError):
    """A clip that cannot give frames for the pose step; says what was found and what to do."""


@dataclass
class Frames:
    """Frames picked from a clip, at the working size.

    Attributes:
        images: (N, H, W, 3) uint8 RGB.
        times: (N,) float64 scene times in [0, 1] (first 0, last 1).
        source_indices: (N,) index of each frame in the source (decode order / sorted files).
        timestamps_s: (N,) seconds since the start of the source.
        sharpness: (N,) variance of the Laplacian (grey, working size, 0-255 scale).
        names: a name per frame: the image file name, or ``frame_<source index>`` for a video.
        source: the video file or image folder.
        n_source: how many frames the source has.
        source_size: (width, height) of the source frames.
        notes: decisions a user may want to know about (skipped blurred frames, resizing).
    """

    images: np.ndarray
    times: np.ndarray
    source_indices: np.ndarray
    timestamps_s: np.ndarray
    sharpness: np.ndarray
    names: list[str]
    source: Path
    n_source: int
    source_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])


def natural_key(name: str):
    """Sort key that orders embedded numbers numerically (``img2`` < ``img10``)."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """PNG/JPEG files directly in ``folder``, naturally sorted."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                  key=lambda p: natural_key(p.name))


def sharpness(img: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of an (H, W, 3) uint8 image's grey level."""
    g = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def working_size(width: int, height: int, size: Optional[int]) -> tuple[int, int]:
    """(w, h) with the long side ``size`` (aspect kept, never enlarged); None keeps the size."""
    if size is None or max(width, height) <= size:
        return width, height
    s = size / max(width, height)
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


def resize_area(img: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """Area-averaging resize of an (H, W, C) uint8 image to ``wh`` = (w, h)."""
    if (img.shape[1], img.shape[0]) == tuple(wh):
        return img
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(tuple(wh), Image.BOX))


# --------------------------------------------------------------------------- selection
def _targets(ts: np.ndarray, max_frames: Optional[int], fps: Optional[float]) -> np.ndarray:
    """Indices (into ``ts``, sorted seconds) of the frames nearest a grid of target times."""
    n = len(ts)
    if fps is not None:
        if not fps > 0:
            raise FramesError(f"fps={fps}: must be a positive number of frames per second")
        grid = ts[0] + np.arange(0.0, ts[-1] - ts[0] + 1e-9, 1.0 / fps)
        if len(grid) < 2:
            grid = np.array([ts[0], ts[-1]])
    else:
        k = n if max_frames is None else min(n, max_frames)
        grid = np.linspace(ts[0], ts[-1], max(k, 1))
    hi = np.clip(np.searchsorted(ts, grid), 0, n - 1)
    lo = np.clip(hi - 1, 0, n - 1)
    idx = np.unique(np.where(np.abs(ts[lo] - grid) <= np.abs(ts[hi] - grid), lo, hi))
    if fps is not None and max_frames is not None and len(idx) > max_frames:
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, max_frames).round().astype(int))]
    return idx


def _windows(targets: np.ndarray, n: int) -> list[np.ndarray]:
    """Candidate source frames around each target: up to 2 either side, not overlapping neighbours."""
    out = []
    for k, c in enumerate(targets):
        lo_gap = c - targets[k - 1] if k > 0 else 0
        hi_gap = targets[k + 1] - c if k + 1 < len(targets) else 0
        r_lo = min(2, (lo_gap - 1) // 2) if k > 0 else 0  # the first and last frames stay put
        r_hi = min(2, (hi_gap - 1) // 2) if k + 1 < len(targets) else 0
        out.append(np.arange(max(0, c - max(r_lo, 0)), min(n, c + max(r_hi, 0) + 1)))
    return out


def _drop_blurred(sharp: np.ndarray, ratio: float) -> np.ndarray:
    """Boolean keep-mask: drop frames below ``ratio`` x the local median, never ends or neighbours."""
    n = len(sharp)
    keep = np.ones(n, dtype=bool)
    if ratio <= 0 or n < 3:
        return keep
    for i in np.argsort(sharp):  # the blurriest first
        if i == 0 or i == n - 1 or not keep[i - 1] or not keep[i + 1]:
            continue
        lo, hi = max(0, i - 3), min(n, i + 4)
        nb = np.concatenate([sharp[lo:i], sharp[i + 1:hi]])
        if sharp[i] < ratio * float(np.median(nb)):
            keep[i] = False
    return keep


# --------------------------------------------------------------------------- sources
def _av_error_text(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return re.sub(r"\s*:\s*'[^']*'$", "", str(msg)).strip() or type(e).__name__


def _convert_hint(path: Path) -> str:
    return f"is it a video? convert it with `ffmpeg -i {path} -c:v libx264 -pix_fmt yuv420p out.mp4`"


def _video_index(path: Path) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Presentation timestamps (seconds, sorted) of every frame, the nominal fps, and the frame size."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise FramesError(f"could not decode {path}: {_av_error_text(e)}; {_convert_hint(path)}") from None
    with container:
        if not container.streams.video:
            raise FramesError(f"{path} has no video stream (audio only?); {_convert_hint(path)}")
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else None
        rate = float(stream.average_rate) if stream.average_rate else 30.0
        pts = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet
                pts.append(packet.pts)
        except av.error.FFmpegError as e:
            if not pts:
                raise FramesError(f"could not decode {path}: {_av_error_text(e)}; {_convert_hint(path)}") from None
        size = (stream.codec_context.width, stream.codec_context.height)
    if not pts:
        raise FramesError(f"could not decode {path}: the video stream has no frames; {_convert_hint(path)}")
    if tb is None or any(p is None for p in pts):
        ts = np.arange(len(pts)) / rate
    else:
        ts = np.sort(np.asarray(pts, dtype=np.float64)) * tb
        ts = ts - ts[0]
    return ts, rate, size


def _decode_frames(path: Path, wanted: set[int], wh_out: Optional[int]) -> Iterator[tuple[int, np.ndarray, float, tuple]]:
    """(source index, working-size image, timestamp seconds or nan, displayed full size) of the wanted frames."""
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise FramesError(f"could not decode {path}: {_av_error_text(e)}; {_convert_hint(path)}") from None
    last = max(wanted)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = -1
        t0 = None
        tail = None  # the latest decoded frame, in case the stream ends before the frames it lists

        def convert(frame, idx):
            img = frame.to_ndarray(format="rgb24")
            rot = int(getattr(frame, "rotation", 0) or 0) % 360
            if rot:
                # the display matrix rotates counter-clockwise by `rotation` degrees
                img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
            w, h = working_size(img.shape[1], img.shape[0], wh_out)
            ts = float(frame.time - t0) if (frame.time is not None and t0 is not None) else float("nan")
            return idx, resize_area(img, (w, h)), ts, (img.shape[1], img.shape[0])

        try:
            for frame in container.decode(stream):
                i += 1
                if frame.pts is not None and frame.time is not None:
                    t0 = frame.time if t0 is None else t0
                if i in wanted:
                    yield convert(frame, i)
                    tail = None
                else:
                    tail = frame
                if i >= last:
                    break
            if i < last and tail is not None:
                yield convert(tail, i)  # fewer frames decode than the container lists: end on the last one
        except av.error.FFmpegError as e:
            raise FramesError(
                f"could not decode {path}: decoding failed after {i + 1} frames ({_av_error_text(e)}); "
                f"the file may be truncated or damaged; {_convert_hint(path)}"
            ) from None


def load_frames(
    source: Union[str, Path],
    *,
    max_frames: Optional[int] = 80,
    fps: Optional[float] = None,
    size: Optional[int] = 640,
    blur_ratio: float = 0.5,
    min_frames: int = MIN_FRAMES,
    folder_fps: float = 30.0,
) -> Frames:
    """Pick, deblur-select, resize and time the frames of a video file or an image folder.

    Args:
        source: a video file or a folder of PNG/JPEG frames.
        max_frames: at most this many frames, evenly spaced in time (None: all, or the fps grid).
        fps: pick this many frames per second instead (capped by ``max_frames``).
        size: working size, the long side in pixels (None keeps the source size).
        blur_ratio: drop a picked frame whose sharpness is below this fraction of its neighbours'
            median (0 disables).
        min_frames: fewer usable frames than this is an error.
        folder_fps: the frame rate assumed for an image folder's timestamps.

    Raises:
        FramesError: a missing or undecodable source, or too few frames, with what to do.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise FramesError(f"{src}: no such video file or image folder")
    if max_frames is not None and max_frames < 2:
        raise FramesError(f"max_frames={max_frames}: need at least 2 (and {min_frames} to estimate poses)")
    notes: list[str] = []
    if src.is_dir():
        files = list_images(src)
        if not files:
            raise FramesError(f"{src}: a folder without PNG/JPEG images; pass a video file or a folder of frames")
        ts_all = np.arange(len(files)) / float(folder_fps)
        n_src = len(files)
        from PIL import Image

        with Image.open(files[0]) as im:
            src_size = im.size
    else:
        ts_all, rate, src_size = _video_index(src)
        n_src = len(ts_all)
    if n_src < min_frames:
        raise FramesError(
            f"{src}: only {n_src} frame{'s' if n_src != 1 else ''}; the pose step needs at least {min_frames} "
            "frames of a moving camera (film a few seconds, moving sideways around the scene)"
        )
    targets = _targets(ts_all, max_frames, fps)
    slots = list(zip((int(t) for t in targets), _windows(targets, n_src)))  # (target, candidate window)
    wanted = sorted({int(i) for _, w in slots for i in w})
    wh = working_size(src_size[0], src_size[1], size)

    imgs: dict[int, np.ndarray] = {}
    stamps: dict[int, float] = {}
    if src.is_dir():
        from PIL import Image

        for i in wanted:
            try:
                with Image.open(files[i]) as im:
                    arr = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise FramesError(f"{files[i]}: cannot be read as an image ({e})") from None
            if (arr.shape[1], arr.shape[0]) != tuple(src_size):
                raise FramesError(
                    f"{files[i]} is {arr.shape[1]}x{arr.shape[0]} but {files[0].name} is {src_size[0]}x{src_size[1]}; "
                    "every frame of a clip must have the same size (one camera)"
                )
            imgs[i] = resize_area(arr, wh)
            stamps[i] = float(ts_all[i])
        names_all = [p.name for p in files]
    else:
        for i, img, t, full in _decode_frames(src, set(wanted), size):
            imgs[i] = img
            src_size = full  # as displayed (rotation metadata applied)
            wh = (img.shape[1], img.shape[0])
            stamps[i] = t if np.isfinite(t) else float(ts_all[min(i, n_src - 1)])
        names_all = None
        if not imgs:
            raise FramesError(f"could not decode {src}: no frame decoded; {_convert_hint(src)}")
        end = max(imgs)
        if end < wanted[-1]:
            # the container lists frames that do not decode (edit lists, a truncated tail)
            notes.append(f"the video lists {n_src} frames but {end + 1} decode; used those")
            n_src = end + 1
            slots = [(min(t, end), np.array([i for i in np.unique(np.minimum(w, end)) if i in imgs])) for t, w in slots]
    sharp_all = {i: sharpness(im) for i, im in imgs.items()}

    picked = []
    replaced = 0
    for centre, w in slots:
        best = max(w, key=lambda i: sharp_all[int(i)])
        # move off the target only for a clearly sharper frame
        choice = int(best) if sharp_all[int(best)] > 1.25 * sharp_all[centre] else centre
        replaced += choice != centre
        picked.append(choice)
    picked = sorted(set(picked))
    sharp = np.array([sharp_all[i] for i in picked])
    keep = _drop_blurred(sharp, blur_ratio)
    dropped = [picked[j] for j in np.flatnonzero(~keep)]
    picked = [p for p, kp in zip(picked, keep) if kp]
    sharp = sharp[keep]
    if replaced:
        notes.append(f"{replaced} blurred frame{'s' if replaced > 1 else ''} replaced by a sharper neighbour")
    if dropped:
        notes.append(f"skipped {len(dropped)} blurred frame{'s' if len(dropped) > 1 else ''} "
                     f"(source frames {', '.join(map(str, dropped[:10]))}{', ...' if len(dropped) > 10 else ''})")
    if len(picked) < min_frames:
        raise FramesError(
            f"{src}: only {len(picked)} usable frames (of {n_src} in the source, max_frames={max_frames}, "
            f"fps={fps}); the pose step needs at least {min_frames}: raise max_frames/fps or film longer"
        )
    if wh != tuple(src_size):
        notes.append(f"frames resized from {src_size[0]}x{src_size[1]} to {wh[0]}x{wh[1]} (long side {size})")
    ts = np.array([stamps[i] for i in picked], dtype=np.float64)
    span = ts[-1] - ts[0]
    times = (ts - ts[0]) / span if span > 0 else np.linspace(0.0, 1.0, len(ts))
    images = np.stack([imgs[i] for i in picked])
    names = [names_all[i] for i in picked] if names_all is not None else [f"frame_{i:06d}" for i in picked]
    return Frames(images=images, times=times, source_indices=np.array(picked, dtype=np.int64),
                  timestamps_s=ts, sharpness=sharp, names=names, source=src, n_source=n_src,
                  source_size=(int(src_size[0]), int(src_size[1])), notes=notes)


def frames_from_arrays(images: np.ndarray, times: Optional[np.ndarray] = None, *, name: str = "arrays") -> Frames:
    """Wrap in-memory (N, H, W, 3) uint8 frames (already picked and sized) as :class:`Frames`."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise FramesError(f"frames: expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    n = len(images)
    if n < MIN_FRAMES:
        raise FramesError(f"only {n} frames; the pose step needs at least {MIN_FRAMES}")
    t = np.linspace(0.0, 1.0, n) if times is None else np.asarray(times, dtype=np.float64)
    return Frames(images=images, times=t, source_indices=np.arange(n), timestamps_s=t.copy(),
                  sharpness=np.array([sharpness(im) for im in images]), names=[f"frame_{i:06d}" for i in range(n)],
                  source=Path(name), n_source=n, source_size=(images.shape[2], images.shape[1]))

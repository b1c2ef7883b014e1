"""Pictures and videos people can open: mp4 (H.264 via PyAV), PNG frames, side-by-side grids.

Writes are atomic: a video is encoded to a temporary file beside the target and renamed when
complete, so an interrupted render never leaves a truncated file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Union

import numpy as np
import torch


def to_uint8(img) -> np.ndarray:
    """(..., H, W, 3|1) float in [0, 1] (tensor or array) -> uint8 array (RGB; grey repeated)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().numpy()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img


def colorize_depth(depth: torch.Tensor, alpha: torch.Tensor | None = None, near=None, far=None) -> torch.Tensor:
    """(..., H, W, 1) depth -> (..., H, W, 3) in [0, 1]: near bright, far dark, empty pixels black."""
    d = depth[..., 0]
    mask = (alpha[..., 0] > 0.5) if alpha is not None else torch.isfinite(d) & (d > 0)
    vals = d[mask]
    if vals.numel() == 0:
        return torch.zeros(d.shape + (3,), dtype=depth.dtype, device=depth.device)
    lo = float(torch.quantile(vals.float(), 0.01)) if near is None else near
    hi = float(torch.quantile(vals.float(), 0.99)) if far is None else far
    x = ((hi - d) / max(hi - lo, 1e-8)).clamp(0, 1)
    # a simple perceptual ramp (dark blue -> yellow)
    rgb = torch.stack([x ** 0.8, x ** 1.2 * 0.9 + 0.05, (1 - x) * 0.6 + 0.2 * x], dim=-1)
    return torch.where(mask[..., None], rgb, torch.zeros_like(rgb))


def _tmp_beside(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return tmp


class VideoWriter:
    """An H.264 mp4 written frame by frame (one frame in memory at a time), to a temporary file
    beside ``path`` that replaces ``path`` only on :meth:`close`; :meth:`abort` (or leaving a
    ``with`` block by an exception) deletes it. Opening fails at once where ``path`` cannot be
    written, before any frame is made."""

    def __init__(self, path: Union[str, Path], fps: float = 30.0, *, crf: int = 18):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.crf = fps, crf
        self.tmp = _tmp_beside(self.path)
        try:
            self.container = av.open(self.tmp, mode="w",
                                     format="mp4" if self.path.suffix.lower() in (".mp4", ".m4v") else None)
        except BaseException:
            os.unlink(self.tmp)
            raise
        self.stream = None
        self.frames = 0

    def write(self, frame) -> None:
        import av

        arr = to_uint8(frame)
        h, w = arr.shape[:2]
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=_fraction(self.fps))
            # yuv420p needs even sizes; pad by one pixel where needed
            self.stream.width, self.stream.height = w + (w % 2), h + (h % 2)
            self.stream.pix_fmt = "yuv420p"
            # x264's pipeline holds about rc-lookahead + 10 frames (lookahead 40 at preset medium: +220
            # MB at 1080p, reached after ~60 frames; 10: +160 MB, after ~20). 5 fills it within the first
            # 10 frames, so a render's peak is the same for 10 frames or 1000 (bench/render_memory.py);
            # a shorter mb-tree horizon changes the bit allocation a little (size within ~10 %)
            self.stream.options = {"crf": str(self.crf), "preset": "medium", "rc-lookahead": "5"}
        if arr.shape[0] != self.stream.height or arr.shape[1] != self.stream.width:
            arr = np.pad(arr, ((0, self.stream.height - h), (0, self.stream.width - w), (0, 0)), mode="edge")
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        try:
            if self.stream is None:
                raise ValueError(f"{self.path}: no frames to write")
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            from cameras.io import publish_mode

            publish_mode(self.tmp, self.path)
            os.replace(self.tmp, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already closed, or broken by the error that brought us here
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_video(path: Union[str, Path], frames: Iterable, fps: float = 30.0, *, crf: int = 18) -> Path:
    """Encode frames ((H, W, 3) floats in [0, 1] or uint8) as an H.264 mp4 that browsers play; the
    frames are consumed one at a time (pass a generator to keep memory flat)."""
    with VideoWriter(path, fps, crf=crf) as w:
        for frame in frames:
            w.write(frame)
        return w.close()


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def read_video(path: Union[str, Path]) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a video file."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def write_image(path: Union[str, Path], img) -> Path:
    """Write one (H, W, 3|1) image (float [0, 1] or uint8) as PNG/JPEG, atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        Image.fromarray(to_uint8(img)).save(tmp, format="PNG" if path.suffix.lower() == ".png" else None)
        from cameras.io import publish_mode

        publish_mode(tmp, path)  # mkstemp makes 0600; a picture is for sharing like the other outputs
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

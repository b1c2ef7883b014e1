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


def write_video(path: Union[str, Path], frames: Iterable, fps: float = 30.0, *, crf: int = 18) -> Path:
    """Encode frames ((H, W, 3) floats in [0, 1] or uint8) as an H.264 mp4 that browsers play."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        container = av.open(tmp, mode="w", format="mp4" if path.suffix.lower() in (".mp4", ".m4v") else None)
        stream = None
        for frame in frames:
            arr = to_uint8(frame)
            h, w = arr.shape[:2]
            if stream is None:
                stream = container.add_stream("libx264", rate=_fraction(fps))
                # yuv420p needs even sizes; pad by one pixel where needed
                stream.width, stream.height = w + (w % 2), h + (h % 2)
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "medium"}
            if arr.shape[0] != stream.height or arr.shape[1] != stream.width:
                arr = np.pad(arr, ((0, stream.height - h), (0, stream.width - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
        container.close()
        from cameras.io import publish_mode

        publish_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

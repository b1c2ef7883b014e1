"""Limits on what a file or flag may ask for, checked before anything is allocated.

A 1 KB JSON file can ask for a 10^6 x 10^6 image or 10^9 frames; a deeply nested one can exhaust
the parser's stack; a 140 KB PNG can decode to 27 GB. Every reader of user files goes through
:func:`read_json` and checks sizes against these limits first, so bad input ends in one line
naming the file and the value instead of a MemoryError deep inside numpy or torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

MAX_JSON_BYTES = 64 << 20
"""Largest JSON file read (a 100k-frame camera path is ~40 MB)."""
MAX_IMAGE_SIDE = 16384
"""Largest width or height of an image, a render or a camera path."""
MAX_IMAGE_PIXELS = 16384 * 16384 // 2
"""Largest image decoded (PIL's decompression-bomb guard is set to this)."""
MAX_FRAMES = 100_000
"""Most frames a path or a render may have (an hour at 30 fps is 108k)."""


class LimitError(ValueError):
    """A file or flag asks for more than scene4d will allocate; the message names it."""


def read_json(path: Union[str, Path], what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON of ``path``; ValueError (one line, naming the file) for a file too large,
    not UTF-8, not JSON (line and column), nested too deeply, or using NaN/Infinity constants."""
    path = Path(path)
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise LimitError(f"{path}: {size / 1e6:.0f} MB is too large for a {what} (at most {max_bytes / 1e6:.0f} MB)")
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from None
    return parse_json_bytes(raw, str(path), what, max_bytes)


def parse_json_bytes(raw: bytes, name: str, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """:func:`read_json` for bytes that did not come from a file (an upload); ``name`` names them."""
    if len(raw) > max_bytes:
        raise LimitError(f"{name}: {len(raw) / 1e6:.0f} MB is too large for a {what} (at most {max_bytes / 1e6:.0f} MB)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 text (byte {e.start}); a {what} is UTF-8 JSON") from None

    def no_constants(c: str):
        raise ValueError(f"{name}: {c} is not a JSON number; write a finite number")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ValueError(f"{name}: JSON nested too deeply to be a {what}") from None


def check_side(value: float, name: str, where: str = "") -> int:
    """A width or height: a positive integer up to :data:`MAX_IMAGE_SIDE`."""
    if not (value == value) or value != int(value) or not 1 <= value <= MAX_IMAGE_SIDE:
        raise LimitError(f"{where}{name} must be an integer in 1..{MAX_IMAGE_SIDE}, got {value!r}")
    return int(value)


def check_frames(n: float, name: str = "frames", where: str = "") -> int:
    if not (n == n) or not 1 <= n <= MAX_FRAMES:
        raise LimitError(f"{where}{name} must be in 1..{MAX_FRAMES}, got {n!r}")
    return int(n)


def check_fps(fps: float, name: str = "--fps") -> float:
    """A frame rate: finite, in (0, 1000]."""
    if not (isinstance(fps, (int, float)) and fps == fps and 0 < fps <= 1000):
        raise LimitError(f"{name} must be a frame rate in (0, 1000], got {fps!r}")
    return float(fps)


def guard_images() -> None:
    """PIL refuses (raises) images over :data:`MAX_IMAGE_PIXELS` instead of only warning."""
    import warnings

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)

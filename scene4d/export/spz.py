"""Unit: Niantic SPZ (version 2 by default: the one aras-p's Unity importer reads; 3 and 4 on request).

SPZ's on-disk frame is RUB by its spec; readers that convert to the PLY convention (Niantic's
tools, splat-transform) flip y and z back. So the data is written in ``diag(1, -1, -1)`` times the
target frame, and a reader asking for "RDF"/PLY space gets the target frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from renderers.ply import write_atomic

from ..formats import FormatError, Splats
from ..formats import spz as codec
from .errors import attribute_errors

NAME, SUFFIX, LOSSY = "spz", ".spz", True
FILE_FRAME = "generic"
RDF_TO_RUB = np.diag([1.0, -1.0, -1.0])


def disk_frame(F: np.ndarray) -> np.ndarray:
    return RDF_TO_RUB @ F


def write(s: Splats, out: Path, opts) -> dict:
    data = codec.encode(s, version=opts.spz_version)
    write_atomic(out, [data])
    return {"format_version": f"spz v{opts.spz_version}", "sh_degree_written": s.sh_degree,
            "stored_frame": "RUB (SPZ spec): the target frame with y and z negated",
            "errors": attribute_errors(s, codec.decode(data, str(out)))}


def read(path: Path) -> Splats:
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    return codec.decode(path.read_bytes(), str(path))

"""PLY files (the Stanford polygon format) as numpy structured arrays: scene4d's own reader/writer.

A PLY file is a text header followed by *elements* (``vertex``, ``face``, ``chunk`` ...), each a
table of typed *properties*. Here an element is one numpy structured array with one field per
property, in file order:

* scalar properties -> plain fields (``<f4``, ``u1`` ...);
* list properties of one length throughout (triangle ``vertex_indices``) -> subarray fields
  (``("vertex_indices", "<i4", (3,))``), written back as ``property list uchar int``;
* list properties of varying length (read only) -> object fields holding one array per row.

All three encodings are read (``ascii``, ``binary_little_endian``, ``binary_big_endian``); all
three are written, binary little-endian by default. Writes are atomic (temporary file + rename).
The layout of a written header is the one plyfile writes (``ply``, ``format``, ``comment`` lines,
``element``/``property`` lines, ``end_header``), so files it wrote before come out byte-identical.

This module replaces the ``plyfile`` package (GPL-3.0) in scene4d's runtime; the tests keep
plyfile only as an independent reader to check these files against.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from cameras.io import publish_mode

__all__ = ["PlyError", "PlyData", "read_ply", "write_ply", "write_atomic"]

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
          "f4": "float", "f8": "double"}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20


class PlyError(ValueError):
    """A PLY file that cannot be read or data that cannot be written as PLY; says which and why."""


@dataclass
class PlyData:
    """A whole PLY file: ``elements`` maps element name -> structured array, in file order."""

    elements: Dict[str, np.ndarray]
    format: str = "binary_little_endian"
    comments: List[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.elements[name]

    def __contains__(self, name: str) -> bool:
        return name in self.elements


@dataclass
class _Prop:
    name: str
    dtype: str  # numpy kind+size, no byte order ("f4")
    count_dtype: Optional[str] = None  # list properties: the type of the length prefix


# --------------------------------------------------------------------------- reading
def _parse_header(raw: bytes, where: str):
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        what = "no 'ply' magic" if not raw.startswith(b"ply") else "no end_header in the first MiB"
        raise PlyError(f"{where}: not a PLY file ({what})")
    nl = raw.find(b"\n", end)
    if nl < 0:
        raise PlyError(f"{where}: header ends without a newline; the file is truncated")
    try:
        lines = raw[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise PlyError(f"{where}: the header is not ASCII text; not a PLY file") from None
    fmt, comments, elements = None, [], []  # elements: [name, count, [props]]
    for no, line in enumerate(lines[1:], 2):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "format":
            if len(parts) < 2 or parts[1] not in _FORMATS:
                raise PlyError(f"{where}: header line {no}: unknown format {line!r}")
            fmt = parts[1]
        elif key in ("comment", "obj_info"):
            comments.append(line[len(key) + 1:] if key == "comment" else line)
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise PlyError(f"{where}: header line {no}: malformed {line!r}")
            elements.append([parts[1], int(parts[2]), []])
        elif key == "property":
            if not elements:
                raise PlyError(f"{where}: header line {no}: property before any element")
            if len(parts) == 3 and parts[1] in _TYPES:
                elements[-1][2].append(_Prop(parts[2], _TYPES[parts[1]]))
            elif len(parts) == 5 and parts[1] == "list" and parts[2] in _TYPES and parts[3] in _TYPES:
                elements[-1][2].append(_Prop(parts[4], _TYPES[parts[3]], _TYPES[parts[2]]))
            else:
                raise PlyError(f"{where}: header line {no}: unsupported property {line!r}")
        else:
            raise PlyError(f"{where}: header line {no}: unknown keyword {key!r}")
    if fmt is None:
        raise PlyError(f"{where}: header has no format line")
    return fmt, comments, elements, nl + 1


def _truncated(where: str, name: str, need: int, have: int) -> PlyError:
    return PlyError(f"{where}: element {name!r} needs {need} more bytes than the file holds ({have} left); "
                    "the file is truncated (an interrupted download or copy)")


def _read_binary(buf: memoryview, off: int, name: str, n: int, props: List[_Prop], bo: str, where: str):
    if all(p.count_dtype is None for p in props):
        dt = np.dtype([(p.name, bo + p.dtype) for p in props])
        if off + n * dt.itemsize > len(buf):
            raise _truncated(where, name, off + n * dt.itemsize - len(buf), len(buf) - off)
        arr = np.frombuffer(buf, dtype=dt, count=n, offset=off)
        return arr, off + n * dt.itemsize
    # list properties: try "every list has the length of the first row's" (triangles), vectorised
    if n == 0:
        return np.zeros(0, dtype=[(p.name, bo + p.dtype) for p in props]), off
    lens, o = [], off
    for p in props:
        if p.count_dtype is None:
            o += np.dtype(p.dtype).itemsize
            continue
        csz = np.dtype(p.count_dtype).itemsize
        if o + csz > len(buf):
            raise _truncated(where, name, o + csz - len(buf), len(buf) - o)
        k = int(np.frombuffer(buf, dtype=bo + p.count_dtype, count=1, offset=o)[0])
        lens.append(k)
        o += csz + k * np.dtype(p.dtype).itemsize
    fields, li = [], 0
    for p in props:
        if p.count_dtype is None:
            fields.append((p.name, bo + p.dtype))
        else:
            fields.append(("_n_" + p.name, bo + p.count_dtype))
            fields.append((p.name, bo + p.dtype, (lens[li],)))
            li += 1
    dt = np.dtype(fields)
    if off + n * dt.itemsize <= len(buf):
        arr = np.frombuffer(buf, dtype=dt, count=n, offset=off)
        if all((arr["_n_" + p.name] == k).all() for p, k in zip([p for p in props if p.count_dtype], lens)):
            out = np.empty(n, dtype=[f for f in fields if not f[0].startswith("_n_")])
            for f in out.dtype.names:
                out[f] = arr[f]
            return out, off + n * dt.itemsize
    # varying lengths: row by row (slow; meshes from other tools with mixed polygons)
    out = np.empty(n, dtype=[(p.name, bo + p.dtype if p.count_dtype is None else object) for p in props])
    o = off
    for i in range(n):
        for p in props:
            if p.count_dtype is None:
                sz = np.dtype(p.dtype).itemsize
                if o + sz > len(buf):
                    raise _truncated(where, name, o + sz - len(buf), len(buf) - o)
                out[p.name][i] = np.frombuffer(buf, dtype=bo + p.dtype, count=1, offset=o)[0]
                o += sz
            else:
                csz = np.dtype(p.count_dtype).itemsize
                if o + csz > len(buf):
                    raise _truncated(where, name, o + csz - len(buf), len(buf) - o)
                k = int(np.frombuffer(buf, dtype=bo + p.count_dtype, count=1, offset=o)[0])
                o += csz
                sz = k * np.dtype(p.dtype).itemsize
                if o + sz > len(buf):
                    raise _truncated(where, name, o + sz - len(buf), len(buf) - o)
                out[p.name][i] = np.frombuffer(buf, dtype=bo + p.dtype, count=k, offset=o).copy()
                o += sz
    return out, o


def _read_ascii(tokens: List[bytes], pos: int, name: str, n: int, props: List[_Prop], where: str):
    def values(a: int, b: int) -> np.ndarray:
        if b > len(tokens):
            raise PlyError(f"{where}: element {name!r} ends early ({len(tokens) - a} values left, {b - a} needed); "
                           "the file is truncated")
        try:
            return np.array(tokens[a:b], dtype=np.float64)
        except ValueError:
            raise PlyError(f"{where}: element {name!r} holds a value that is not a number") from None

    if all(p.count_dtype is None for p in props):
        m = len(props)
        vals = values(pos, pos + n * m).reshape(n, m)
        arr = np.empty(n, dtype=[(p.name, p.dtype) for p in props])
        for j, p in enumerate(props):
            arr[p.name] = vals[:, j]
        return arr, pos + n * m
    out = np.empty(n, dtype=[(p.name, p.dtype if p.count_dtype is None else object) for p in props])
    for i in range(n):
        for p in props:
            if p.count_dtype is None:
                out[p.name][i] = values(pos, pos + 1)[0]
                pos += 1
            else:
                k = int(values(pos, pos + 1)[0])
                out[p.name][i] = values(pos + 1, pos + 1 + k).astype(p.dtype)
                pos += 1 + k
    return out, pos


def read_ply(path: Union[str, Path]) -> PlyData:
    """Read any PLY file; raises :class:`PlyError` naming the file and what is wrong.

    Binary scalar-only elements are zero-copy views of the file's bytes (read-only arrays).
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise PlyError(f"{where}: no such file")
    raw = path.read_bytes()
    fmt, comments, elements, off = _parse_header(raw[:_MAX_HEADER], where)
    out: Dict[str, np.ndarray] = {}
    if _FORMATS[fmt] is None:
        tokens = raw[off:].split()
        pos = 0
        for name, n, props in elements:
            out[name], pos = _read_ascii(tokens, pos, name, n, props, where)
    else:
        buf = memoryview(raw)
        for name, n, props in elements:
            out[name], off = _read_binary(buf, off, name, n, props, _FORMATS[fmt], where)
    return PlyData(out, fmt, comments)


# --------------------------------------------------------------------------- writing
def _header_lines(name: str, arr: np.ndarray) -> List[str]:
    if arr.dtype.names is None:
        raise PlyError(f"element {name!r}: expected a numpy structured array (one field per property)")
    lines = [f"element {name} {len(arr)}"]
    for f in arr.dtype.names:
        dt = arr.dtype.fields[f][0]
        base, shape = (dt.subdtype if dt.subdtype else (dt, ()))
        key = base.kind + str(base.itemsize)
        if key not in _NAMES or len(shape) > 1:
            raise PlyError(f"element {name!r}: property {f!r} has type {dt} that PLY cannot store")
        if shape:
            if shape[0] > 255:
                raise PlyError(f"element {name!r}: list property {f!r} is longer than 255")
            lines.append(f"property list uchar {_NAMES[key]} {f}")
        else:
            lines.append(f"property {_NAMES[key]} {f}")
    return lines


def _binary(arr: np.ndarray, bo: str) -> bytes:
    fields = []
    for f in arr.dtype.names:
        dt = arr.dtype.fields[f][0]
        base, shape = (dt.subdtype if dt.subdtype else (dt, ()))
        if shape:
            fields.append(("_n_" + f, "u1"))
            fields.append((f, bo + base.kind + str(base.itemsize), shape))
        else:
            fields.append((f, bo + base.kind + str(base.itemsize)))
    dt = np.dtype(fields)
    if dt == arr.dtype:
        return np.ascontiguousarray(arr).tobytes()
    out = np.empty(len(arr), dtype=dt)
    for f in arr.dtype.names:
        out[f] = arr[f]
        if "_n_" + f in dt.names:
            out["_n_" + f] = dt.fields[f][0].shape[0]
    return out.tobytes()


def _ascii(arr: np.ndarray) -> bytes:
    cols = []
    for f in arr.dtype.names:
        dt = arr.dtype.fields[f][0]
        base, shape = (dt.subdtype if dt.subdtype else (dt, ()))
        v = np.asarray(arr[f]).reshape(len(arr), -1)
        fmt = "%.9g" if base.kind == "f" and base.itemsize == 4 else ("%.17g" if base.kind == "f" else "%d")
        if shape:
            cols.append([str(shape[0])] * len(arr))
        cols.append([" ".join(fmt % x for x in row) for row in v.tolist()])
    return "".join(" ".join(c[i] for c in cols) + "\n" for i in range(len(arr))).encode("ascii")


def write_atomic(path: Union[str, Path], parts: Iterable[bytes]) -> Path:
    """Write ``parts`` to ``path`` through a temporary file beside it and a rename: readers never
    see a half-written file and an interrupted write leaves the old one intact."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for p in parts:
                f.write(p)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        publish_mode(tmp, path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_ply(path: Union[str, Path], elements: Union[Dict[str, np.ndarray], Sequence[Tuple[str, np.ndarray]]],
              *, format: str = "binary_little_endian", comments: Sequence[str] = ()) -> Path:
    """Write elements (name -> structured array, in order) as a PLY file, atomically.

    Fixed-length subarray fields become ``property list uchar TYPE name``.
    """
    if format not in _FORMATS:
        raise PlyError(f"unknown PLY format {format!r}; one of {', '.join(_FORMATS)}")
    items = list(elements.items()) if isinstance(elements, dict) else list(elements)
    head = ["ply", f"format {format} 1.0"] + [f"comment {c}" for c in comments]
    for name, arr in items:
        head += _header_lines(name, arr)
    head.append("end_header")
    bo = _FORMATS[format]
    body = [_ascii(a) if bo is None else _binary(a, bo) for _, a in items]
    return write_atomic(path, [("\n".join(head) + "\n").encode("ascii"), *body])

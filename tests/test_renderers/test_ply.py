"""renderers.ply, scene4d's own PLY reader/writer, held against plyfile (an independent reader/writer)."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from renderers.ply import PlyError, read_ply, write_ply


def _table(n=7, seed=0):
    r = np.random.default_rng(seed)
    a = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("d", "<f8"), ("red", "u1"), ("i", "<i4"), ("s", "<i2")])
    a["x"], a["y"], a["d"] = r.normal(size=n), r.normal(size=n), r.normal(size=n)
    a["red"], a["i"], a["s"] = r.integers(0, 255, n), r.integers(-10**6, 10**6, n), r.integers(-300, 300, n)
    return a


def test_header_and_bytes_match_plyfile(tmp_path):
    a = _table()
    ours = write_ply(tmp_path / "ours.ply", {"vertex": a}, comments=["made here"])
    PlyData([PlyElement.describe(a, "vertex")], text=False, byte_order="<",
            comments=["made here"]).write(str(tmp_path / "theirs.ply"))
    assert ours.read_bytes() == (tmp_path / "theirs.ply").read_bytes()


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_plyfile_reads_ours(tmp_path, fmt):
    a = _table()
    faces = np.empty(3, dtype=[("vertex_indices", "<i4", (3,))])
    faces["vertex_indices"] = [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    p = write_ply(tmp_path / "t.ply", {"vertex": a, "face": faces}, format=fmt)
    ply = PlyData.read(str(p))
    for f in a.dtype.names:
        np.testing.assert_array_equal(ply["vertex"][f], a[f])  # %.9g / %.17g text round-trips exactly
    assert [list(v) for v in ply["face"]["vertex_indices"]] == faces["vertex_indices"].tolist()


@pytest.mark.parametrize("text,byte_order", [(False, "<"), (False, ">"), (True, "=")])
def test_we_read_plyfile(tmp_path, text, byte_order):
    a = _table(seed=1)
    faces = np.empty(3, dtype=[("vertex_indices", object)])
    faces["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([2, 3, 4, 5], "i4"), np.array([1, 6, 0], "i4")]
    PlyData([PlyElement.describe(a, "vertex"), PlyElement.describe(faces, "face")], text=text,
            byte_order=byte_order).write(str(tmp_path / "t.ply"))
    got = read_ply(tmp_path / "t.ply")
    assert list(got.elements) == ["vertex", "face"]
    for f in a.dtype.names:
        np.testing.assert_array_equal(got["vertex"][f], a[f])
    assert [list(v) for v in got["face"]["vertex_indices"]] == [[0, 1, 2], [2, 3, 4, 5], [1, 6, 0]]


def test_fixed_length_lists_read_as_subarrays(tmp_path):
    faces = np.empty(2, dtype=[("vertex_indices", object)])
    faces["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([2, 1, 0], "i4")]
    PlyData([PlyElement.describe(faces, "face")]).write(str(tmp_path / "f.ply"))
    got = read_ply(tmp_path / "f.ply")["face"]
    assert got.dtype["vertex_indices"].shape == (3,)
    assert got["vertex_indices"].tolist() == [[0, 1, 2], [2, 1, 0]]


def test_bad_files_say_why(tmp_path):
    p = write_ply(tmp_path / "full.ply", {"vertex": _table(100)})
    cut = tmp_path / "cut.ply"
    cut.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(PlyError, match=r"cut\.ply: element 'vertex'.*truncated"):
        read_ply(cut)
    png = tmp_path / "png.ply"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(PlyError, match=r"png\.ply: not a PLY file"):
        read_ply(png)
    odd = tmp_path / "odd.ply"
    odd.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty quaternion q\nend_header\n")
    with pytest.raises(PlyError, match="unsupported property"):
        read_ply(odd)
    with pytest.raises(PlyError, match="no such file"):
        read_ply(tmp_path / "none.ply")


def test_write_is_atomic_and_keeps_old_file_on_error(tmp_path):
    p = write_ply(tmp_path / "a.ply", {"vertex": _table(3)})
    before = p.read_bytes()
    with pytest.raises(PlyError, match="cannot store"):
        write_ply(p, {"vertex": np.zeros(2, dtype=[("c", "c16")])})
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["a.ply"]  # no temporary files left behind

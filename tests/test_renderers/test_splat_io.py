"""3DGS .ply files: the standard layout, bit-exact round trips, foreign files, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from renderers import rasterize
from renderers.splat_io import SplatData, SplatFileError, load_gaussians, read_ply, write_ply
from scenes import random_gaussians, ring_cameras

STANDARD = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(45)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)


def test_written_file_is_the_standard_layout(tmp_path):
    g = random_gaussians(50, seed=0, sh_degree=3, dtype=torch.float32)
    path = write_ply(tmp_path / "s.ply", g)
    ply = PlyData.read(str(path))
    v = ply["vertex"]
    assert [p.name for p in v.properties] == STANDARD
    assert all(p.val_dtype in ("f4", "float32", "<f4") for p in v.properties)
    assert not ply.text and ply.byte_order == "<"
    # values are stored activated-inverse: logit opacity, log scale, wxyz rotation
    np.testing.assert_allclose(v["opacity"], torch.logit(g.opacities).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v["scale_1"], torch.log(g.scales[:, 1]).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(v["rot_0"], g.quats[:, 0].numpy())
    # f_rest is channel-major: f_rest_{c*15 + k} = sh[:, k+1, c]
    np.testing.assert_array_equal(v["f_rest_16"], g.sh[:, 2, 1].numpy())
    np.testing.assert_array_equal(v["f_dc_2"], g.sh[:, 0, 2].numpy())


def test_round_trip_is_bit_exact(tmp_path):
    g = random_gaussians(64, seed=1, sh_degree=2, dtype=torch.float32)
    a = write_ply(tmp_path / "a.ply", g)
    data = read_ply(a)
    b = write_ply(tmp_path / "b.ply", data)
    assert a.read_bytes() == b.read_bytes()
    again = read_ply(b)
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(data, f), getattr(again, f)), f
    # and the activated Gaussians come back to float32 precision
    back = data.to_gaussians()
    torch.testing.assert_close(back.scales, g.scales, rtol=1e-6, atol=0)
    torch.testing.assert_close(back.opacities, g.opacities, rtol=1e-5, atol=1e-7)
    assert torch.equal(back.sh, g.sh) and torch.equal(back.means, g.means)


def _foreign_ply(path, g, *, text=False, double=False, shuffle=True, normals=False):
    """A 3DGS file as another tool might write it: other property order, maybe ASCII/double."""
    raw = SplatData.from_gaussians(g)
    n, k = raw.sh.shape[:2]
    cols = {"x": raw.means[:, 0], "y": raw.means[:, 1], "z": raw.means[:, 2], "opacity": raw.opacity_logits}
    for i in range(3):
        cols[f"f_dc_{i}"] = raw.sh[:, 0, i]
        cols[f"scale_{i}"] = raw.log_scales[:, i]
    for i in range(4):
        cols[f"rot_{i}"] = raw.quats[:, i]
    rest = raw.sh[:, 1:].transpose(1, 2).reshape(n, -1)
    for i in range(rest.shape[1]):
        cols[f"f_rest_{i}"] = rest[:, i]
    if normals:
        for nm in ("nx", "ny", "nz"):
            cols[nm] = torch.zeros(n)
    names = list(cols)
    if shuffle:
        names = names[::-1]
    dt = "<f8" if double else "<f4"
    arr = np.empty(n, dtype=[(nm, dt) for nm in names])
    for nm in names:
        arr[nm] = cols[nm].numpy()
    PlyData([PlyElement.describe(arr, "vertex")], text=text).write(str(path))
    return path


@pytest.mark.parametrize("text,double,shuffle", [(False, False, True), (True, False, False), (False, True, True)])
def test_foreign_file_renders_identically(tmp_path, text, double, shuffle):
    g = random_gaussians(40, seed=2, sh_degree=1, dtype=torch.float32)
    ours = write_ply(tmp_path / "ours.ply", g)
    theirs = _foreign_ply(tmp_path / "theirs.ply", g, text=text, double=double, shuffle=shuffle)
    cams = ring_cameras(2, width=32, height=24, dtype=torch.float32)
    a = rasterize(load_gaussians(ours), cams, background=1.0)
    b = rasterize(load_gaussians(theirs), cams, background=1.0)
    # ASCII stores decimal text: allow its rounding; binary float/double are exact
    tol = 1e-5 if text else 0.0
    torch.testing.assert_close(a.rgb, b.rgb, atol=tol, rtol=0)
    assert a.alpha.mean() > 0.05


def test_truncated_file_is_a_clear_error(tmp_path):
    g = random_gaussians(100, seed=0, dtype=torch.float32)
    path = write_ply(tmp_path / "full.ply", g)
    cut = tmp_path / "cut.ply"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(SplatFileError, match=r"cut\.ply.*truncated"):
        read_ply(cut)


def test_point_cloud_ply_is_rejected_with_reason(tmp_path):
    arr = np.zeros(10, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    p = tmp_path / "cloud.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(p))
    with pytest.raises(SplatFileError, match=r"cloud\.ply: missing 3DGS properties.*point cloud"):
        read_ply(p)


def test_not_a_ply_and_missing_file(tmp_path):
    p = tmp_path / "image.ply"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SplatFileError, match=r"image\.ply: not a readable PLY"):
        read_ply(p)
    with pytest.raises(SplatFileError, match="no such file"):
        read_ply(tmp_path / "nope.ply")


def test_compressed_supersplat_is_named(tmp_path):
    chunk = np.zeros(2, dtype=[("min_x", "f4"), ("max_x", "f4")])
    vert = np.zeros(4, dtype=[("packed_position", "u4")])
    p = tmp_path / "scene.compressed.ply"
    PlyData([PlyElement.describe(chunk, "chunk"), PlyElement.describe(vert, "vertex")]).write(str(p))
    with pytest.raises(SplatFileError, match="compressed splat"):
        read_ply(p)

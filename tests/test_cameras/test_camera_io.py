"""camera_path.json read / write (nerfstudio format)."""

import json
import math
import os

import pytest
import torch

from cameras import (
    Cameras,
    intrinsics_from_fov,
    intrinsics_to_K,
    look_at,
    opencv_w2c_to_opengl_c2w,
    orbit,
    read_camera_path,
    write_camera_path,
)

F64 = torch.float64
W, H = 64, 48
K64 = intrinsics_from_fov(math.radians(50), W, H, dtype=F64)
UP = torch.tensor([0.0, 0.0, 1.0], dtype=F64)


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def base(**extra):
    return {"camera_type": "perspective", "render_height": H, "render_width": W, "fps": 10.0, "seconds": 1.0, **extra}


def entry(c2w=None, fov=50.0, **extra):
    c2w = torch.eye(4, dtype=F64) if c2w is None else c2w
    return {"camera_to_world": [float(x) for x in c2w.reshape(-1)], "fov": fov, "aspect": W / H, **extra}


# ----------------------------------------------------------------------------- round trip
def test_write_then_read_round_trips(tmp_path):
    cams = orbit((0.5, -1.0, 0.2), 3.0, 20.0, 12, K=K64, width=W, height=H, time="bullet:0.4")
    p = tmp_path / "out" / "camera_path.json"
    write_camera_path(p, cams, fps=24)
    back = read_camera_path(p, dtype=F64)
    assert (back.width, back.height) == (W, H)
    torch.testing.assert_close(back.world_to_camera, cams.world_to_camera, atol=1e-6, rtol=0)
    torch.testing.assert_close(back.K, cams.K, atol=1e-6, rtol=0)
    torch.testing.assert_close(back.times, cams.times, atol=1e-6, rtol=0)
    # float32 default read
    back32 = read_camera_path(p)
    assert back32.dtype == torch.float32
    torch.testing.assert_close(back32.world_to_camera, cams.world_to_camera.float(), atol=1e-5, rtol=0)
    # Nothing left over from the atomic write.
    assert sorted(os.listdir(p.parent)) == ["camera_path.json"]


def test_written_json_is_nerfstudio_layout(tmp_path):
    eye = torch.tensor([0.0, -5.0, 0.0], dtype=F64)
    w2c = look_at(eye, torch.zeros(3, dtype=F64), UP)
    cams = Cameras(K=K64, world_to_camera=w2c, width=W, height=H, times=[0.3])
    p = tmp_path / "camera_path.json"
    write_camera_path(p, cams, fps=30)
    data = json.loads(p.read_text())
    assert data["camera_type"] == "perspective"
    assert (data["render_width"], data["render_height"], data["fps"]) == (W, H, 30.0)
    assert data["seconds"] == pytest.approx(1 / 30)
    (frame,) = data["camera_path"]
    m = frame["camera_to_world"]
    assert len(m) == 16
    # Row-major: translation in elements 3, 7, 11; OpenGL camera looks along its -z, so
    # column 2 is minus the viewing direction (+y here).
    assert [m[3], m[7], m[11]] == pytest.approx([0.0, -5.0, 0.0])
    assert [m[2], m[6], m[10]] == pytest.approx([0.0, -1.0, 0.0])
    assert [m[1], m[5], m[9]] == pytest.approx([0.0, 0.0, 1.0])  # camera up = world up
    assert m[12:] == [0.0, 0.0, 0.0, 1.0]
    assert frame["fov"] == pytest.approx(50.0)
    assert frame["aspect"] == pytest.approx(W / H)
    assert frame["render_time"] == pytest.approx(0.3)
    assert "intrinsics" not in frame
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)


def test_non_standard_intrinsics_and_no_times(tmp_path):
    K = intrinsics_to_K(70.0, 72.0, 30.0, 25.0).to(F64)
    w2c = look_at(torch.tensor([2.0, -3.0, 1.0], dtype=F64), torch.zeros(3, dtype=F64), UP)
    cams = Cameras(K=K, world_to_camera=w2c, width=W, height=H)
    p = tmp_path / "camera_path.json"
    write_camera_path(p, cams)
    data = json.loads(p.read_text())
    assert data["camera_path"][0]["intrinsics"] == [70.0, 72.0, 30.0, 25.0]
    assert "render_time" not in data["camera_path"][0]
    back = read_camera_path(p, dtype=F64)
    torch.testing.assert_close(back.K[0], K)
    assert back.times is None
    # Overwrite in place (atomic replace of an existing file).
    write_camera_path(p, cams[0], fps=12)
    assert json.loads(p.read_text())["fps"] == 12.0


def test_write_validation(tmp_path):
    cams = orbit((0, 0, 0), 1.0, 10.0, 2, K=K64, width=W, height=H)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        write_camera_path(tmp_path / "x.json", cams, fps=0)
    with pytest.raises(ValueError, match="expected Cameras"):
        write_camera_path(tmp_path / "x.json", [1, 2])


# ----------------------------------------------------------------------------- keyframes
def keyframes_data(layout: str, n: int = 3, times=True):
    eyes = torch.tensor([[4.0, 0.0, 1.0], [0.0, 3.0, 2.0], [-3.0, 0.5, 0.5]], dtype=F64)[:n]
    w2c = look_at(eyes, torch.zeros(3, dtype=F64).expand(n, 3), UP.expand(n, 3))
    c2w = opencv_w2c_to_opengl_c2w(w2c)
    fovs = [40.0, 55.0, 35.0][:n]
    kts = [0.0, 0.3, 1.0][:n]
    keys = []
    for i in range(n):
        m = c2w[i].T if layout == "column" else c2w[i]  # column-major = transposed flatten
        k = {"matrix": [float(x) for x in m.reshape(-1)], "fov": fovs[i], "aspect": W / H}
        if times:
            k["render_time"] = kts[i]
        keys.append(k)
    data = base(fps=10.0, seconds=0.9, keyframes=keys)  # 9 frames: keyframes at 0, 4, 8
    return data, w2c, fovs, kts


@pytest.mark.parametrize("layout", ["column", "row"])
def test_keyframes_only_file_is_interpolated(tmp_path, layout):
    data, w2c, fovs, kts = keyframes_data(layout)
    p = write_json(tmp_path / "camera_path.json", data)
    cams = read_camera_path(p, dtype=F64)
    assert len(cams) == 9
    torch.testing.assert_close(cams.world_to_camera[0:9:4], w2c, atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.rad2deg(cams.fov_y[0:9:4]), torch.tensor(fovs, dtype=F64), atol=1e-9, rtol=0)
    torch.testing.assert_close(cams.times[0:9:4], torch.tensor(kts, dtype=F64), atol=1e-12, rtol=0)
    assert cams.times[2].item() == pytest.approx(0.15)


def test_keyframe_layout_can_be_forced(tmp_path):
    data, w2c, _, _ = keyframes_data("row")
    p = write_json(tmp_path / "camera_path.json", data)
    cams = read_camera_path(p, dtype=F64, keyframe_layout="row")
    torch.testing.assert_close(cams.world_to_camera[0:9:4], w2c, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match=r"keyframes\[0\]\.matrix"):
        read_camera_path(p, keyframe_layout="column")  # transposed: translation in the last row


def test_one_keyframe_names_the_file(tmp_path):
    data, _, _, _ = keyframes_data("column", n=1)
    p = write_json(tmp_path / "one_key.json", data)
    with pytest.raises(ValueError, match=r"one_key\.json: a camera path needs at least 2 keyframes, got 1"):
        read_camera_path(p)


# ----------------------------------------------------------------------------- malformed
@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: d["camera_path"][1].update(camera_to_world=[0.0] * 12),
         r"camera_path\[1\]\.camera_to_world has 12 numbers, expected 16"),
        (lambda d: d["camera_path"][0].pop("fov"), r"camera_path\[0\]\.fov is missing"),
        (lambda d: d["camera_path"][1].update(fov="wide"), r'camera_path\[1\]\.fov must be a finite number, got "wide"'),
        (lambda d: d["camera_path"][1].update(fov=0), r"camera_path\[1\]\.fov must be a vertical field of view"),
        (lambda d: d["camera_path"][0]["camera_to_world"].__setitem__(0, 2.0),
         r"camera_path\[0\]\.camera_to_world is not a rigid camera-to-world"),
        (lambda d: d["camera_path"][1]["camera_to_world"].__setitem__(5, None),
         r"camera_path\[1\]\.camera_to_world\[5\] must be a finite number"),
        (lambda d: d.pop("render_height"), "render_height is missing"),
        (lambda d: d.update(render_width=-3), "render_width must be a positive integer"),
        (lambda d: d["camera_path"][0].update(render_time=0.5), r"camera_path\[1\]\.render_time is missing"),
        (lambda d: d.update(camera_path=[]), "camera_path must be a non-empty list"),
        (lambda d: d.pop("camera_path"), "has neither camera_path nor keyframes"),
        (lambda d: d.update(camera_type="fisheye"), "camera_type 'fisheye' is not supported"),
    ],
)
def test_malformed_files_name_file_and_field(tmp_path, mutate, msg):
    data = base(camera_path=[entry(), entry()])
    mutate(data)
    p = write_json(tmp_path / "bad_path.json", data)
    with pytest.raises(ValueError, match=r"bad_path\.json: " + msg):
        read_camera_path(p)


def test_not_json_and_not_an_object(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{ not json")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        read_camera_path(p)
    write_json(p, [1, 2, 3])
    with pytest.raises(ValueError, match=r"broken\.json: expected a JSON object at the top level, got list"):
        read_camera_path(p)

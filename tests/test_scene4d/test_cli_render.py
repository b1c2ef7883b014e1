"""`scene4d render` end to end on the shipped splat scene, as README runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scene4d.cli import main
from scene4d.media import read_video

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo_splat.ply"


def test_render_orbit_writes_a_playable_video(tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    rc = main(["render", str(DEMO), "--path", "orbit", "--frames", "8", "--size", "96x64", "--out", str(out),
               "--depth", "--alpha"])
    assert rc == 0
    frames = read_video(out)
    assert frames.shape == (8, 64, 96, 3)
    # white background at the corners, the scene in the middle, and the view changes along the orbit
    assert frames[:, :3, :3].mean() > 240
    assert frames[:, 24:40, 40:56].mean() < 200
    assert np.abs(frames[0].astype(float) - frames[4].astype(float)).mean() > 3
    assert (tmp_path / "orbit_depth.mp4").is_file() and (tmp_path / "orbit_alpha.mp4").is_file()
    assert "wrote" in capsys.readouterr().out


def test_orbit_video_matches_the_renderer(tmp_path):
    """The video's first frame is the rasterizer's image of the first orbit camera (up to H.264)."""
    from renderers import rasterize
    from renderers.splat_io import load_gaussians
    from scene4d.render import StaticScene, make_path

    out = tmp_path / "o.mp4"
    assert main(["render", str(DEMO), "--frames", "4", "--size", "96x64", "--out", str(out)]) == 0
    scene = StaticScene(load_gaussians(DEMO))
    cams = make_path("orbit", scene, frames=4, size=(96, 64))
    ref = rasterize(scene.gaussians, cams[0], background=1.0).rgb[0].numpy() * 255
    got = read_video(out)[0].astype(np.float32)
    assert np.abs(got - ref).mean() < 4.0  # lossy codec, but the same picture


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--size", "big"], "--size must look like WIDTHxHEIGHT"),
        (["--time", "freeze:abc"], "bad time schedule"),
        (["--path", "zigzag"], "--path must be orbit, spiral"),
        (["--path", "nope.json"], "no such camera path file"),
        (["--background", "purple"], "--background must be"),
        (["--size", "0x90"], "--size needs a width and a height of at least 1 pixel"),
        (["--out", "x.gif"], "--out x.gif: scene4d writes H.264 video; give a file ending in .mp4"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, msg):
    rc = main(["render", str(DEMO), "--frames", "2", "--size", "32x32", "--out", str(tmp_path / "x.mp4")] + args)
    assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_bad_scene_file(tmp_path, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(DEMO.read_bytes()[:5000])
    assert main(["render", str(bad), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "broken.ply" in capsys.readouterr().err


def test_console_script_is_installed():
    r = subprocess.run([sys.executable, "-m", "scene4d.cli", "render", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "camera_path.json" in r.stdout


FLYBY = ROOT / "assets" / "demo_flyby_camera_path.json"


def test_shipped_camera_path_is_the_documented_flyby():
    """assets/demo_flyby_camera_path.json is what scene4d.procedural writes, and its first frame is
    its first keyframe's camera."""
    import json

    import torch

    from cameras import look_at, read_camera_path
    from scene4d.procedural import DEMO_FLYBY, demo_camera_path

    assert json.loads(FLYBY.read_text()) == json.loads(json.dumps(demo_camera_path()))
    cams = read_camera_path(FLYBY)
    assert len(cams) == 120 and (cams.width, cams.height) == (480, 270)
    eye, target = DEMO_FLYBY[0]
    want = look_at(torch.tensor(eye), torch.tensor(target), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(cams.world_to_camera[0], want, atol=1e-5, rtol=0)


def test_camera_path_file_sets_size_and_fps(tmp_path):
    """Without --size / --fps a camera path renders at the file's size and frame rate; another aspect
    ratio keeps the vertical field of view and square pixels (no stretching)."""
    import json

    import av
    import torch

    from cameras import read_camera_path
    from renderers import rasterize
    from renderers.splat_io import load_gaussians
    from scene4d.render import fit_size

    short = json.loads(FLYBY.read_text())
    short.update(render_width=64, render_height=36, fps=12.0, seconds=0.5)  # 6 frames
    f = tmp_path / "short_path.json"
    f.write_text(json.dumps(short))
    out = tmp_path / "short.mp4"
    assert main(["render", str(DEMO), "--path", str(f), "--out", str(out)]) == 0
    frames = read_video(out)
    assert frames.shape == (6, 36, 64, 3)
    with av.open(str(out)) as c:
        assert float(c.streams.video[0].average_rate) == 12.0
    ref = rasterize(load_gaussians(DEMO), read_camera_path(f)[0], background=1.0).rgb[0].numpy() * 255
    assert np.abs(frames[0].astype(np.float32) - ref).mean() < 6.0

    # a square render of the 16:9 path: same vertical view, narrower horizontally, centred
    cams = read_camera_path(f)
    sq = fit_size(cams, 36, 36)
    assert torch.allclose(sq.K[:, 0, 0], sq.K[:, 1, 1]) and torch.allclose(sq.K[:, 1, 1], cams.K[:, 1, 1])
    assert torch.allclose(sq.K[:, 0, 2], torch.full((6,), 18.0))
    wide = rasterize(load_gaussians(DEMO), cams[0], background=1.0).rgb[0]
    square = rasterize(load_gaussians(DEMO), sq[0], background=1.0).rgb[0]
    torch.testing.assert_close(square, wide[:, 14:50], atol=2e-3, rtol=0)  # the middle 36 columns
    assert main(["render", str(DEMO), "--path", str(f), "--size", "36x36", "--fps", "24",
                 "--out", str(tmp_path / "sq.mp4")]) == 0
    # a keyframed path at another frame rate keeps its duration (0.5 s: 12 frames at 24 fps)
    assert read_video(tmp_path / "sq.mp4").shape == (12, 36, 36, 3)


def test_odd_sizes_are_padded_and_said_so(tmp_path, capsys):
    out = tmp_path / "odd.mp4"
    assert main(["render", str(DEMO), "--frames", "3", "--fps", "12", "--size", "33x21", "--out", str(out),
                 "--threads", "1"]) == 0
    assert read_video(out).shape == (3, 22, 34, 3)
    said = capsys.readouterr().out
    assert "3 frames, 34x22: 33x21 padded to even for H.264, 0.2 s at 12 fps; rendered in" in said, said


def test_help_is_quick_and_flows():
    """The CLI does not import roma (it loads torch._dynamo, ~2.5 s) before a command needs it, and
    each option's help is one paragraph (tyro kept the docstring's line breaks)."""
    import subprocess

    code = "import sys, scene4d.cli; sys.exit('roma' in sys.modules or 'torch._dynamo' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from scene4d.cli import _flow_args

    doc = "Do it.\n\n    Args:\n        out: the folder\n            to write.\n        n: steps.\n\n    Returns nothing.\n"
    assert _flow_args(doc) == "Do it.\n\n    Args:\n        out: the folder to write.\n        n: steps.\n\n    Returns nothing."


def test_pictures_are_readable_by_others_like_every_output(tmp_path):
    """write_image goes through a temporary file (mkstemp makes 0600): the PNG gets the mode a plain
    open would give, as the videos and scene files do."""
    import os

    from scene4d.media import write_image

    p = write_image(tmp_path / "a.png", np.zeros((4, 4, 3), dtype=np.uint8))
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask

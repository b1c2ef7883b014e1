"""`scene4d render`'s camera paths from the scene's input cameras: the default by capture kind,
spiral / arc / smooth, --extrapolate, --write-path, and one-line errors. Tiny procedural scene
folders with known geometry: a textured wall 3 units in front of a sideways walk (a phone clip),
or a ball seen from all round (D-NeRF, the demo)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cameras import Cameras, capture_rig, input_spiral, intrinsics_from_fov, look_at, orbit
from scene4d.cli import load_scene, main
from scene4d.field import Scene4D, init_params
from scene4d.io import save_scene
from scene4d.render import make_path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo_splat.ply"
W, H = 32, 24
ZUP = torch.tensor([0.0, 0.0, 1.0])
WALL_DEPTH = 3.0


def walk_cameras(n: int = 16) -> Cameras:
    """A sideways walk x in [-0.5, 0.5] with a little bob, looking along +y at the wall's middle."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    eye = torch.stack([-0.5 + t, 0.05 * torch.sin(2 * math.pi * t), 0.04 * torch.cos(2 * math.pi * t)], -1)
    w2c = look_at(eye, torch.tensor([0.0, WALL_DEPTH, 0.0], dtype=torch.float64).expand(n, 3),
                  ZUP.double().expand(n, 3))
    K = intrinsics_from_fov(math.radians(50), W, H).expand(n, 3, 3).clone()
    return Cameras(K, w2c.float(), W, H, times=t.float())


def wall() -> Scene4D:
    """A static checkered wall in the plane y = 3, wide enough to fill every view of the walk."""
    xs, zs = torch.meshgrid(torch.linspace(-3.5, 3.5, 64), torch.linspace(-2.0, 2.0, 36), indexing="ij")
    pts = torch.stack([xs.reshape(-1), torch.full((xs.numel(),), WALL_DEPTH), zs.reshape(-1)], -1)
    check = ((xs * 2).floor() + (zs * 2).floor()).reshape(-1) % 2
    cols = torch.stack([0.2 + 0.6 * check, 0.5 * torch.ones_like(check), 0.8 - 0.6 * check], -1)
    return Scene4D(init_params(pts, cols, 0, opacity=0.95))


def ball() -> Scene4D:
    g = torch.Generator().manual_seed(0)
    p = torch.randn(400, 3, generator=g)
    p = 0.8 * p / p.norm(dim=-1, keepdim=True)
    return Scene4D(init_params(p, torch.rand(400, 3, generator=g), 0, opacity=0.9))


@pytest.fixture(scope="module")
def handheld(tmp_path_factory) -> Path:
    cams = walk_cameras()
    test = torch.arange(len(cams)) % 8 == 0
    folder = tmp_path_factory.mktemp("paths") / "handheld"
    save_scene(folder, wall(), train_cameras=cams[~test], test_cameras=cams[test], background=(0.0, 0.0, 0.0))
    return folder


@pytest.fixture(scope="module")
def dnerf(tmp_path_factory) -> Path:
    """The demo's capture layout: random cameras on the upper hemisphere, 4 units out, z up."""
    from scene4d.data.synthetic import _random_cameras

    cams = _random_cameras(40, torch.Generator().manual_seed(1), W).to(dtype=torch.float32)
    cams = cams.with_times(torch.linspace(0, 1, 40))
    folder = tmp_path_factory.mktemp("paths") / "dnerf"
    save_scene(folder, ball(), train_cameras=cams[:32], test_cameras=cams[32:])
    return folder


def path_of(folder: Path, path, **kw) -> Cameras:
    scene, train, test = load_scene(folder)
    return make_path(path, scene, train_cameras=train, test_cameras=test, **kw)


def same(a: Cameras, b: Cameras, atol: float = 1e-5) -> bool:
    return ((a.width, a.height) == (b.width, b.height) and len(a) == len(b)
            and torch.allclose(a.world_to_camera.float(), b.world_to_camera.float(), atol=atol)
            and torch.allclose(a.K.float(), b.K.float(), atol=atol * 100)
            and torch.allclose(a.times.float(), b.times.float(), atol=atol))


# --------------------------------------------------------------------------- the default path
def test_forward_facing_scene_defaults_to_a_spiral_that_follows_the_input_camera(handheld, capsys):
    from cameras import read_camera_path, tracking_spiral

    assert main(["render", str(handheld), "--frames", "3", "--threads", "1",
                 "--write-path", str(handheld / "default.json"), "--out", str(handheld / "d.mp4")]) == 0
    said = capsys.readouterr()
    assert "path: track, the default for a forward-facing capture (16 input cameras; the viewing directions" in said.out
    assert "a spiral that follows the input camera" in said.out
    assert "LLFF focus from the scene's depth along the mean view" in said.out
    assert "warning" not in said.err
    from scene4d.media import read_video

    assert read_video(handheld / "d.mp4").shape == (3, H, W, 3)  # the input cameras' size
    cams = read_camera_path(handheld / "default.json")
    assert same(cams, path_of(handheld, "track", frames=3))
    # the focus is the wall: LLFF's rule on the rendered depth along the mean view (3 +- the tilt)
    scene, train, test = load_scene(handheld)
    from scene4d.paths import input_cameras, scene_rig

    rig, how = scene_rig(scene, input_cameras(train, test))
    assert rig.focus_depth == pytest.approx(WALL_DEPTH, rel=0.03) and "depth along the mean view" in how
    ref = tracking_spiral(capture_rig(input_cameras(train, test), focus_depth=rig.focus_depth), 3)
    assert same(cams, ref)
    # --path spiral is LLFF's around the mean input camera
    ref = input_spiral(capture_rig(input_cameras(train, test), focus_depth=rig.focus_depth), 3)
    assert same(path_of(handheld, "spiral", frames=3), ref)


def test_360_capture_keeps_its_orbit(dnerf, capsys):
    """D-NeRF / the demo: the default stays the orbit `render` always made (same centre, distance,
    elevation, field of view, size and up)."""
    scene, _, _ = load_scene(dnerf)
    got = path_of(dnerf, None, frames=8)
    c, r = scene.bounds()
    K = intrinsics_from_fov(math.radians(45.0), 640, 480)
    old = orbit(c, r / math.sin(math.radians(22.5)), 20.0, 8, K=K, width=640, height=480, up=(0.0, 0.0, 1.0))
    assert same(got, old, atol=1e-6)
    assert same(path_of(dnerf, "orbit", frames=8), old, atol=1e-6)
    assert main(["render", str(dnerf), "--frames", "2", "--size", "32x24", "--threads", "1",
                 "--write-path", str(dnerf / "p.json")]) == 0
    said = capsys.readouterr()
    assert "path: orbit, the default for a 360 capture (40 input cameras; the viewing directions cover" in said.out
    assert "warning" not in said.err  # the orbit stays where the hemisphere of inputs was


def test_ply_without_cameras_keeps_orbit():
    from renderers.splat_io import load_gaussians
    from scene4d.render import StaticScene

    scene = StaticScene(load_gaussians(DEMO))
    assert same(make_path(None, scene, frames=4, size=(96, 64)), make_path("orbit", scene, frames=4, size=(96, 64)))


# --------------------------------------------------------------------------- paths from the inputs
def test_smooth_has_the_input_timing(handheld):
    cams = path_of(handheld, "smooth")
    _, train, test = load_scene(handheld)
    assert len(cams) == len(train) + len(test) == 16
    assert torch.allclose(cams.times, torch.sort(torch.cat([train.times, test.times])).values)
    assert len(path_of(handheld, "smooth", frames=7)) == 7


def test_track_circles_each_moments_input_camera(handheld, capsys):
    from cameras import tracking_spiral
    from scene4d.paths import input_cameras, scene_rig

    scene, train, test = load_scene(handheld)
    rig, _ = scene_rig(scene, input_cameras(train, test))
    assert same(path_of(handheld, "track", frames=9), tracking_spiral(rig, 9))
    assert same(path_of(handheld, "track", frames=9, extrapolate=2.0), tracking_spiral(rig, 9, extrapolate=2.0))
    assert main(["render", str(handheld), "--path", "track", "--frames", "2", "--threads", "1",
                 "--out", str(handheld / "track.mp4")]) == 0
    assert "track: a spiral around the stabilised input trajectory at each frame's time" in capsys.readouterr().out


def test_arc_freezes_time_unless_told(handheld):
    assert torch.equal(path_of(handheld, "arc", frames=5).times, torch.full((5,), 0.5))
    assert torch.allclose(path_of(handheld, "arc", frames=5, time="play").times, torch.linspace(0, 1, 5))
    assert torch.equal(path_of(handheld, "arc", frames=5, time="freeze:0.2").times, torch.full((5,), 0.2))


def test_write_path_round_trips_through_path_file(handheld, capsys):
    for name in ("spiral", "track", "arc", "smooth", "orbit"):
        p = handheld / f"{name}.json"
        assert main(["render", str(handheld), "--path", name, "--frames", "6", "--write-path", str(p)]) == 0
        out = capsys.readouterr().out
        assert f"wrote {p}" in out and f"--path {p}" in out
        assert not (handheld / "renders" / f"{name}.mp4").exists()  # no --out: only the path is written
        assert same(path_of(handheld, str(p)), path_of(handheld, name, frames=6)), name


def test_extrapolate_scales_the_path_and_warns_beyond_the_inputs(handheld, capsys):
    p1, p3 = handheld / "x1.json", handheld / "x3.json"
    assert main(["render", str(handheld), "--path", "spiral", "--frames", "40", "--write-path", str(p1)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["render", str(handheld), "--path", "spiral", "--frames", "40", "--extrapolate", "3",
                 "--write-path", str(p3)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "leave the region the input cameras saw" in err and "--extrapolate 3" in err
    x1, x3 = (path_of(handheld, str(p)).centers[:, 0] for p in (p1, p3))
    assert float(x3.max() - x3.min()) == pytest.approx(3 * float(x1.max() - x1.min()), rel=0.01)


def test_orbit_of_a_forward_facing_scene_warns(handheld, capsys):
    assert main(["render", str(handheld), "--path", "orbit", "--frames", "12",
                 "--write-path", str(handheld / "o.json")]) == 0
    said = capsys.readouterr()
    assert "orbit around the scene's bounds, up +z (the input cameras')" in said.out
    assert "warning:" in said.err and "for this forward-facing capture try --path track, spiral, arc or smooth" in said.err


# --------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize(
    "scene,args,msg",
    [
        ("ply", ["--path", "arc"], "--path arc is built from the capture's input cameras, and this scene has none"),
        ("ply", ["--path", "smooth"], "render a scene folder made by scene4d reconstruct"),
        ("ply", ["--extrapolate", "2"], "--extrapolate scales paths built from the input cameras, and this scene has none"),
        ("handheld", ["--extrapolate", "0"], "--extrapolate must be a number in (0, 10]"),
        ("handheld", ["--extrapolate", "nan"], "--extrapolate must be a number in (0, 10]"),
        ("handheld", ["--path", "orbit", "--extrapolate", "2"], "it does not apply to orbit"),
        ("handheld", ["--path", "smooth", "--extrapolate", "2"], "it does not apply to smooth"),
        ("dnerf", ["--extrapolate", "2"], "it does not apply to the default orbit of this 360 capture"),
        ("handheld", ["--write-path", "p.txt"], "--write-path p.txt: a camera path is a .json file"),
        ("handheld", ["--path", "spiral.txt"], "--path must be orbit, spiral, track, dolly, arc, smooth, train, test"),
        ("ply", ["--path", "track"], "--path track is built from the capture's input cameras, and this scene has none"),
        ("handheld", ["--up", "sideways"], "--up must be one of"),
    ],
)
def test_bad_input_is_one_line(handheld, dnerf, tmp_path, capsys, scene, args, msg):
    folder = {"ply": DEMO, "handheld": handheld, "dnerf": dnerf}[scene]
    rc = main(["render", str(folder), "--frames", "2", "--out", str(tmp_path / "x.mp4")] + args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_scene_without_cameras_orbits_about_its_recorded_up(tmp_path, capsys):
    """A generated scene keeps no cameras: its orbit stays, about the up axis scene.json records."""
    save_scene(tmp_path / "g", ball(), up="-y")
    cams = path_of(tmp_path / "g", None, frames=6, scene_up="-y")
    cam_up = -cams.world_to_camera[:, 1, :3]
    assert torch.allclose(cam_up @ torch.tensor([0.0, -1.0, 0.0]), torch.full((6,), math.cos(math.radians(20))),
                          atol=1e-5)
    assert main(["render", str(tmp_path / "g"), "--frames", "2", "--write-path", str(tmp_path / "g.json")]) == 0
    assert "path: orbit (the default: the scene has no input cameras" in capsys.readouterr().out
    assert same(path_of(tmp_path / "g", str(tmp_path / "g.json")), path_of(tmp_path / "g", None, frames=2, scene_up="-y"))


def test_generated_clip_truth_renders_any_camera_as_the_clip_did():
    """bench/paths.py's ground truth: at the clip's own cameras and times it gives the clip's frames."""
    import numpy as np

    from scene4d.data.handheld import handheld_truth_renderer, render_handheld

    kw = dict(size=(48, 36), n_frames=4, dynamic_fraction=0.1, seed=2)
    frames, truth = render_handheld(**kw)
    render, w2c = handheld_truth_renderer(**kw)
    assert np.array_equal(w2c, truth.world_to_camera)
    for i in (0, 3):
        img = render(w2c[i], truth.K, 48, 36, float(truth.times[i]))
        assert np.abs(img * 255 - frames[i]).max() <= 0.5 + 1e-3  # the clip's frames are these, rounded
    moved = w2c[1].copy()
    moved[:3, 3] += moved[:3, :3] @ np.array([-0.2, 0.0, 0.0])  # the camera 0.2 to the right
    assert np.abs(render(moved, truth.K, 48, 36, float(truth.times[1])) * 255 - frames[1]).mean() > 5

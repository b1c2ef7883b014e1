"""Capture readers (D-NeRF, nerfstudio) and the procedural dynamic capture with known motion."""

from __future__ import annotations

import json
import shutil
import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from renderers import rasterize
from scene4d.data import CaptureError, load_capture
from scene4d.data.synthetic import (
    OBJECT_NAMES,
    SCENE_RADIUS,
    make_dnerf_capture,
    object_labels,
    object_poses,
    scene_at,
)

REAL = Path("/work/shared/data/dnerf_400/bouncingballs")
SIZE = 64
N_TRAIN, N_TEST, N_VAL = 24, 6, 4


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-20))


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    return make_dnerf_capture(tmp_path_factory.mktemp("syn") / "capture", n_train=N_TRAIN, n_test=N_TEST,
                              n_val=N_VAL, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def cap(syn):
    return load_capture(syn)


def _relink(src: Path, dst_dir: Path, name: str = "transforms_train.json") -> dict:
    """The transforms file ``src`` in ``dst_dir``, with the images it names copied beside it (a
    capture's images must lie inside its folder)."""
    import shutil

    doc = json.loads(src.read_text())
    dst_dir.mkdir(parents=True, exist_ok=True)
    for fr in doc["frames"]:
        for cand in (src.parent / fr["file_path"], src.parent / (fr["file_path"] + ".png")):
            if cand.is_file():
                target = dst_dir / os.path.relpath(cand, src.parent)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cand, target)
    (dst_dir / name).write_text(json.dumps(doc))
    return doc


# --------------------------------------------------------------------------- the synthetic scene
def test_scene_is_compact_and_moves_as_documented():
    labels = object_labels()
    for t in (0.0, 0.3, 0.77, 1.0):
        g = scene_at(t)
        assert float(g.means.norm(dim=-1).max()) < SCENE_RADIUS
        assert float(g.opacities.min()) > 0.9
        for i, (R, T) in enumerate(object_poses(t)):
            # object centres follow the analytic trajectories (surfaces are symmetric about them)
            assert torch.allclose(g.means[labels == i].mean(0), T, atol=1e-3), (OBJECT_NAMES[i], t)
    a = 2 * math.pi * 0.25
    assert torch.allclose(object_poses(0.25)[0][1], torch.tensor([0.65 * math.cos(a), 0.65 * math.sin(a), 0.15]))
    assert abs(float(object_poses(0.25)[1][1][2]) - 0.65) < 1e-6  # bobber at its peak
    # the orbiter keeps its orientation unless asked to spin; spinning moves nothing but the orbiter
    assert torch.equal(object_poses(0.7)[0][0], torch.eye(3))
    spun, still = scene_at(0.25, orbiter_turns=1.5), scene_at(0.25)
    c, s = math.cos(1.5 * 2 * math.pi * 0.25), math.sin(1.5 * 2 * math.pi * 0.25)
    Rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = object_poses(0.25)[0][1]
    m = labels == 0
    assert torch.allclose(spun.means[m] - T, (still.means[m] - T) @ Rz.T, atol=1e-5)
    assert torch.equal(spun.means[~m], still.means[~m])
    # the same Gaussian is the same material point: rigid distances within an object are preserved
    g0, g1 = scene_at(0.0), scene_at(0.6)
    m = labels == 2
    d0 = (g0.means[m][:50, None] - g0.means[m][None, :50]).norm(dim=-1)
    d1 = (g1.means[m][:50, None] - g1.means[m][None, :50]).norm(dim=-1)
    assert torch.allclose(d0, d1, atol=1e-5)


# --------------------------------------------------------------------------- D-NeRF round trip
def test_motion_errors_measure_how_well_motion_is_followed():
    """The truth follows itself exactly; a fit that froze every object at t = 0 misses the orbiter's
    spin (when it spins) and every object's travel by the documented amounts."""
    from scene4d.data.synthetic import motion_errors, scene_at

    class Scene:
        def __init__(self, frozen, turns=0.0):
            self.frozen, self.turns = frozen, turns

        def at(self, t):
            return scene_at(0.0 if self.frozen else t, orbiter_turns=self.turns)

    times = (0.25, 0.5)
    truth = motion_errors(Scene(False), times)
    assert all(e["rotation_deg"] < 0.1 and e["centre_error"] < 1e-4 for e in truth.values())
    frozen = motion_errors(Scene(True), times)
    assert frozen["orbiter"]["rotation_deg"] < 0.1  # it does not spin; it travels
    assert frozen["orbiter"]["centre_error_by_time"][0.5] == pytest.approx(1.3, abs=1e-3)  # across the circle
    spun = motion_errors(Scene(False, 1.5), times, orbiter_turns=1.5)
    assert spun["orbiter"]["rotation_deg"] < 0.1 and spun["orbiter"]["centre_error"] < 1e-4
    # spinning 1.5 turns: 135 and 270 (= 90) degrees at t = 0.25 and 0.5, missed by a frozen fit;
    # the cube turns 45 and 90; the bobber never turns
    frozen_spun = motion_errors(Scene(True, 1.5), times, orbiter_turns=1.5)
    assert frozen_spun["orbiter"]["rotation_deg"] == pytest.approx(112.5, abs=0.5)
    by_t = frozen_spun["orbiter"]["rotation_deg_by_time"]
    assert list(by_t) == [0.25, 0.5] and by_t[0.25] == pytest.approx(135, abs=0.5) and by_t[0.5] == pytest.approx(90, abs=0.5)
    # measured against the wrong truth, the real motion shows up as the error
    assert motion_errors(Scene(False, 1.5), times)["orbiter"]["rotation_deg"] == pytest.approx(112.5, abs=0.5)
    assert frozen["bobber"]["centre_error_by_time"][0.25] == pytest.approx(0.35, abs=1e-3)
    assert frozen["cube"]["rotation_deg"] == pytest.approx(67.5, abs=0.5)
    assert frozen["bobber"]["rotation_deg"] < 0.1
    assert frozen["bobber"]["centre_error"] == pytest.approx(0.35 / 2, abs=1e-3)  # sin 90 deg and sin 180 deg
    # a fit with no Gaussians on the cube's lower part (never seen from below) but the true motion:
    # its centroid is off the cube's origin, and that is no motion error
    keep = scene_at(0.0).means[:, 2] > -0.45

    class TopOnly:
        def at(self, t):
            from types import SimpleNamespace

            return SimpleNamespace(means=scene_at(t).means[keep])

    trimmed = motion_errors(TopOnly(), times)
    assert trimmed["cube"]["gaussians"] < truth["cube"]["gaussians"]
    assert trimmed["cube"]["rotation_deg"] < 0.1 and trimmed["cube"]["centre_error"] < 1e-4


def test_roundtrip_counts_sizes_times(cap, syn):
    assert cap.format == "dnerf" and cap.source == syn and cap.background == (1.0, 1.0, 1.0)
    assert len(cap.train) == N_TRAIN and len(cap.test) == N_TEST and cap.val is not None and len(cap.val) == N_VAL
    assert cap.train.images.shape == (N_TRAIN, SIZE, SIZE, 3) and cap.train.images.dtype == torch.float32
    assert cap.train.alphas is not None and cap.train.alphas.shape == (N_TRAIN, SIZE, SIZE, 1)
    assert cap.train.cameras.width == SIZE and cap.train.cameras.height == SIZE
    assert torch.allclose(cap.train.times, torch.arange(N_TRAIN) / (N_TRAIN - 1))
    doc = json.loads((syn / "transforms_test.json").read_text())
    assert torch.allclose(cap.test.times, torch.tensor([f["time"] for f in doc["frames"]]))
    assert [p.name for p in cap.train.files[:2]] == ["r_000.png", "r_001.png"]
    fx = 0.5 * SIZE / math.tan(math.radians(20))
    assert torch.allclose(cap.train.cameras.K[0], torch.tensor([[fx, 0, SIZE / 2], [0, fx, SIZE / 2], [0, 0, 1.0]]))
    # cameras at distance 4 looking at the origin
    assert torch.allclose(cap.train.cameras.centers.norm(dim=-1), torch.tensor(4.0), atol=1e-4)
    assert 0 <= float(cap.train.images.min()) and float(cap.train.images.max()) <= 1


@pytest.mark.parametrize("split", ["train", "test", "val"])
def test_loaded_cameras_reproduce_the_stored_images(cap, split):
    s = getattr(cap, split)
    for i in range(0, len(s), max(1, len(s) // 4)):
        cam = s.cameras[i]
        out = rasterize(scene_at(float(cam.times[0])), cam, background=cap.background, backend="torch")
        assert psnr(out.rgb[0], s.images[i]) > 40, (split, i)
        assert psnr(out.alpha[0], s.alphas[i]) > 40, (split, i)


def test_background_choice(syn, cap):
    black = load_capture(syn, background="black", max_views=3)
    white = cap.train.subset([0, 12, 23])
    assert black.background == (0.0, 0.0, 0.0)
    assert torch.allclose(black.train.images, white.images - (1 - white.alphas), atol=1e-5)
    grey = load_capture(syn, background=(0.5, 0.5, 0.5), max_views=3)
    assert torch.allclose(grey.train.images, white.images - 0.5 * (1 - white.alphas), atol=1e-5)
    with pytest.raises(CaptureError, match="background"):
        load_capture(syn, background="purple")


def test_bounds_cover_the_scene(cap):
    centre, radius = cap.bounds()
    assert centre.shape == (3,)
    assert float(centre.norm()) < 0.05  # every camera looks at the origin
    # the scene fits in the radius-1.2 ball; a camera at distance 4 with a 40 deg fov sees 4 sin 20 deg
    assert SCENE_RADIUS < radius < 4 * math.sin(math.radians(20)) + 1e-3


def test_downscale_area_averages_and_scales_K(syn, cap):
    d2 = load_capture(syn, downscale=2)
    assert d2.train.images.shape == (N_TRAIN, SIZE // 2, SIZE // 2, 3)
    pooled = torch.nn.functional.avg_pool2d(cap.train.images.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert torch.allclose(d2.train.images, pooled, atol=1e-6)
    pooled_a = torch.nn.functional.avg_pool2d(cap.train.alphas.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert torch.allclose(d2.train.alphas, pooled_a, atol=1e-6)
    K = cap.train.cameras.K.clone()
    K[:, :2] /= 2
    assert torch.allclose(d2.train.cameras.K, K)
    assert torch.equal(d2.train.cameras.world_to_camera, cap.train.cameras.world_to_camera)
    # a factor that does not divide the size drops the trailing rows/columns; K is still divided exactly
    d3 = load_capture(syn, downscale=3, max_views=2)
    assert d3.train.images.shape[1:3] == (SIZE // 3, SIZE // 3)
    assert torch.allclose(d3.train.cameras.K[:, 0, 2], torch.tensor(SIZE / 2 / 3))
    # the ground truth rendered with the downscaled cameras sits where the averaged pixels do: the
    # alpha centroids agree on average (a pixel-centre slip in scaling K would shift them by 0.25 px;
    # single views differ by up to ~0.15 px because the rasterizer's 0.3 px^2 low-pass fattens
    # splats at low resolution, which is also why pixel values are not compared here)
    offsets = []
    for i in range(0, N_TRAIN, 4):
        cam = d2.train.cameras[i]
        out = rasterize(scene_at(float(cam.times[0])), cam, background=1.0, backend="torch")
        offsets.append(_centroid(out.alpha[0]) - _centroid(d2.train.alphas[i]))
    assert float(torch.stack(offsets).mean(0).abs().max()) < 0.15
    for bad in (0, 1.5, -2):
        with pytest.raises(CaptureError, match="downscale"):
            load_capture(syn, downscale=bad)


def _centroid(alpha: torch.Tensor) -> torch.Tensor:
    """(x, y) alpha-weighted centroid in pixel coordinates (centres at +0.5) of an (H, W, 1) image."""
    a = alpha[..., 0].double()
    x = torch.arange(a.shape[1], dtype=a.dtype) + 0.5
    y = torch.arange(a.shape[0], dtype=a.dtype) + 0.5
    return torch.stack([(a.sum(0) * x).sum(), (a.sum(1) * y).sum()]) / a.sum()


def test_max_views_spans_the_clip(syn):
    c = load_capture(syn, max_views=5)
    assert len(c.train) == 5 and len(c.test) == 5 and len(c.val) == N_VAL
    assert float(c.train.times[0]) == 0.0 and float(c.train.times[-1]) == 1.0


def test_missing_test_split_holds_out_every_8th_view(syn, cap, tmp_path):
    _relink(syn / "transforms_train.json", tmp_path)
    c = load_capture(tmp_path / "transforms_train.json")  # the file itself is accepted too
    held = list(range(0, N_TRAIN, 8))
    assert len(c.test) == len(held) and len(c.train) == N_TRAIN - len(held) and c.val is None
    assert torch.allclose(c.test.times, cap.train.times[held])
    assert torch.equal(c.test.images, cap.train.images[held])
    assert any("every 8th" in n for n in c.notes)


def test_spinning_orbiter_capture(tmp_path):
    c = load_capture(make_dnerf_capture(tmp_path / "spin", n_train=3, n_test=1, n_val=0, size=24, orbiter_turns=1.5))
    for i in (1, 2):
        cam = c.train.cameras[i]
        t = float(cam.times[0])
        assert psnr(rasterize(scene_at(t, orbiter_turns=1.5), cam, background=c.background, backend="torch").rgb[0],
                    c.train.images[i]) > 40


def test_spinning_scenes_spin_rigidly_and_differ_by_seed():
    """Each seed draws its own objects; each object moves rigidly, spins 0.2-0.5 turns about its own
    axis (its centre stays on its drift path), never meets another object and stays in the scene ball."""
    from scene4d.data.synthetic import SCENE_RADIUS, SpinningScene, motion_errors

    a, b = SpinningScene(0), SpinningScene(1)
    assert a.describe() != b.describe() and SpinningScene(0).describe() == a.describe()
    assert a.names == ("sphere0", "sphere1", "sphere2", "box")
    g0, labels = a.canonical()
    for t in (0.0, 0.37, 1.0):
        g = a.at(t)
        assert float(g.means.norm(dim=-1).max()) < SCENE_RADIUS
        for k, (R, T) in enumerate(a.poses(t)):
            m = labels == k
            assert torch.allclose(g.means[m], g0.means[m] @ R.T + T, atol=1e-5)
            for j, (_, T2) in enumerate(a.poses(t)):
                if j > k:  # never touching: centres further apart than both extents
                    assert float((T - T2).norm()) > a.extents[k] + a.extents[j] - 0.06
    for o in a.objects:
        assert 0.2 <= abs(o["turns"]) <= 0.5
    # the spin shows in the truth's own motion measure: the truth follows itself; a fit frozen at t = 0
    # misses each object's turn at t = 1 by exactly its spin (in degrees, as the shorter way round)

    class Frozen:
        def at(self, t):
            return a.at(0.0)

    exact = motion_errors(a, (0.5, 1.0), truth=a)
    assert all(e["rotation_deg"] < 0.1 and e["centre_error"] < 1e-4 for e in exact.values())
    frozen = motion_errors(Frozen(), (1.0,), truth=a)
    for o in a.objects:
        assert frozen[o["name"]]["rotation_deg"] == pytest.approx(360 * abs(o["turns"]), abs=0.5)


def test_spinning_capture_is_its_scene(tmp_path):
    from scene4d.data.synthetic import SpinningScene, make_spinning_capture, spinning_scene_of

    p = make_spinning_capture(tmp_path / "s", seed=3, n_train=3, n_test=1, size=24, radius=(0.3, 0.4), cells=(6, 10))
    truth = spinning_scene_of(p)
    assert truth.describe() == SpinningScene(3, radius=(0.3, 0.4), cells=(6, 10)).describe() != SpinningScene(3).describe()
    assert all(0.3 <= o["size"] <= 0.4 for o in truth.objects if o["shape"] == "sphere")
    assert spinning_scene_of(tmp_path) is None
    c = load_capture(p)
    for i in (1, 2):
        cam = c.train.cameras[i]
        img = rasterize(truth.at(float(cam.times[0])), cam, background=c.background, backend="torch").rgb[0]
        assert psnr(img, c.train.images[i]) > 40
        # and not the scene a moment earlier: the spin and drift change the picture
        before = rasterize(truth.at(float(cam.times[0]) - 0.3), cam, background=c.background, backend="torch").rgb[0]
        assert psnr(before, c.train.images[i]) < 35


def test_rgb_images_without_alpha(tmp_path):
    p = make_dnerf_capture(tmp_path / "rgb", n_train=3, n_test=1, n_val=0, size=16, alpha=False,
                           background="black")
    c = load_capture(p)
    assert c.train.alphas is None and c.val is None and c.train.images.shape == (3, 16, 16, 3)
    cam = c.train.cameras[1]
    out = rasterize(scene_at(float(cam.times[0])), cam, background=0.0, backend="torch")
    assert psnr(out.rgb[0], c.train.images[1]) > 40


def test_intrinsics_from_fl_and_rescaled_w_h(syn, tmp_path):
    doc = _relink(syn / "transforms_train.json", tmp_path)
    fx = 0.5 * SIZE / math.tan(math.radians(20))
    del doc["camera_angle_x"]
    # intrinsics written for images twice the size: scaled to the loaded images
    doc.update(fl_x=2 * fx, fl_y=2 * fx, cx=SIZE + 1.0, cy=SIZE - 1.0, w=2 * SIZE, h=2 * SIZE)
    (tmp_path / "transforms_train.json").write_text(json.dumps(doc))
    c = load_capture(tmp_path, max_views=3)
    assert torch.allclose(c.train.cameras.K[0], torch.tensor([[fx, 0, SIZE / 2 + 0.5], [0, fx, SIZE / 2 - 0.5], [0, 0, 1]]))
    assert any("scaled" in n for n in c.notes)


# --------------------------------------------------------------------------- nerfstudio
def _nerfstudio_doc(syn: Path, dst: Path, *, time_key: str = "time", splits: bool = True) -> dict:
    """A nerfstudio transforms.json holding the synthetic train + test views (paths relative to ``dst``)."""
    fx = 0.5 * SIZE / math.tan(math.radians(20))
    doc = {"camera_model": "OPENCV", "fl_x": fx, "fl_y": fx, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE,
           "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": [],
           "applied_transform": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]}
    names = {}
    for split in ("train", "test"):
        src = json.loads((syn / f"transforms_{split}.json").read_text())
        names[split] = []
        for fr in src["frames"]:
            rel = os.path.normpath(fr["file_path"] + ".png")  # the image copied inside the capture
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(syn / rel, dst / rel)
            t = fr["time"] if time_key == "time" else 100.0 + 8.0 * fr["time"]
            doc["frames"].append({"file_path": rel, "transform_matrix": fr["transform_matrix"], time_key: t})
            names[split].append(rel)
    if splits:
        doc["train_filenames"], doc["test_filenames"] = names["train"], names["test"]
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "transforms.json").write_text(json.dumps(doc))
    return doc


def test_nerfstudio_loads_the_same_cameras(syn, cap, tmp_path):
    _nerfstudio_doc(syn, tmp_path)
    ns = load_capture(tmp_path, background="white")
    assert ns.format == "nerfstudio" and ns.val is None
    for a, b in ((ns.train, cap.train), (ns.test, cap.test)):
        assert len(a) == len(b)
        assert torch.allclose(a.cameras.K, b.cameras.K)
        assert torch.allclose(a.cameras.world_to_camera, b.cameras.world_to_camera, atol=1e-6)
        assert torch.allclose(a.times, b.times)
        assert torch.equal(a.images, b.images)
    assert load_capture(tmp_path).background == (0.0, 0.0, 0.0)  # nerfstudio's default


def test_nerfstudio_timestamps_per_frame_intrinsics_and_default_split(syn, cap, tmp_path):
    doc = _nerfstudio_doc(syn, tmp_path, time_key="timestamp", splits=False)
    for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        v = doc.pop(k)
        for fr in doc["frames"]:
            fr[k] = v
    for fr in doc["frames"]:
        fr["transform_matrix"] = fr["transform_matrix"][:3]  # 3x4 is accepted
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    ns = load_capture(tmp_path / "transforms.json", background="white")
    n = N_TRAIN + N_TEST
    test_idx = list(range(0, n, 8))
    assert len(ns.test) == len(test_idx) and len(ns.train) == n - len(test_idx)
    all_t = torch.cat([cap.train.times, cap.test.times])
    lo, hi = all_t.min(), all_t.max()
    assert torch.allclose(ns.test.times, (all_t[test_idx] - lo) / (hi - lo), atol=1e-6)
    assert float(ns.train.times.min()) >= 0 and float(ns.train.times.max()) <= 1
    assert torch.allclose(ns.test.cameras.world_to_camera[1], cap.train.cameras.world_to_camera[8], atol=1e-6)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d.update(k1=-0.05), ["transforms.json", "k1", "undistort"]),
        (lambda d: d["frames"][4].update(p2=0.01), ["transforms.json: frames[4].p2", "undistort"]),
        (lambda d: d.update(camera_model="OPENCV_FISHEYE"), ["transforms.json", "OPENCV_FISHEYE", "pinhole"]),
        (lambda d: d["frames"][0].pop("time"), ["transforms.json: frames[0]", "'time'", "dynamic capture"]),
        (lambda d: d["frames"][7].pop("time"), ["transforms.json: frames[7]", "'time'"]),
        (lambda d: d["frames"][2].update(time=12), ["transforms.json: frames[2].time", "outside [0, 1]", "timestamp"]),
        (lambda d: d["test_filenames"].append("nope.png"), ["transforms.json: test_filenames", "nope.png"]),
        (lambda d: d.update(frames=[]), ["transforms.json", "'frames' is empty"]),
        (lambda d: [d.pop(k) for k in ("fl_x", "fl_y")], ["transforms.json: frames[0]", "focal length"]),
    ],
)
def test_nerfstudio_bad_inputs(syn, tmp_path, edit, expected):
    doc = _nerfstudio_doc(syn, tmp_path)
    edit(doc)
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    with pytest.raises(CaptureError) as e:
        load_capture(tmp_path)
    for s in expected:
        assert s in str(e.value), (s, str(e.value))


# --------------------------------------------------------------------------- D-NeRF bad inputs
def _scaled(m):
    return [[2 * v for v in row[:3]] + [row[3]] for row in m[:3]] + [m[3]]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d, p: d["frames"][12].update(file_path="./train/r_999"),
         ["transforms_train.json: frames[12].file_path './train/r_999'", "no such image", "looked for"]),
        (lambda d, p: d["frames"][0].pop("time"),
         ["transforms_train.json: frames[0] has no 'time'", "dynamic capture needs a time per frame"]),
        (lambda d, p: d["frames"][2].update(time=1.5), ["transforms_train.json: frames[2].time = 1.5", "outside [0, 1]"]),
        (lambda d, p: d["frames"][3].update(time="0.5"), ["transforms_train.json: frames[3].time", "not a number"]),
        (lambda d, p: d["frames"][1].update(transform_matrix=_scaled(d["frames"][1]["transform_matrix"])),
         ["transforms_train.json: frames[1].transform_matrix", "not a rigid"]),
        (lambda d, p: d["frames"][1].update(transform_matrix=[[1, 0], [0, 1]]),
         ["transforms_train.json: frames[1].transform_matrix", "shape"]),
        (lambda d, p: d.update(frames=[]), ["transforms_train.json", "'frames' is empty"]),
        (lambda d, p: d.pop("frames"), ["transforms_train.json", "no 'frames'"]),
        (lambda d, p: d.pop("camera_angle_x"), ["transforms_train.json", "camera_angle_x"]),
        (lambda d, p: _odd_size(d, p), ["transforms_train.json: frames[7]", "r_007.png is 32x32",
                                        # r_000 is held out as test (no transforms_test.json here), so r_001 is the first train frame
                                        f"the first frame (train/r_001.png) is {SIZE}x{SIZE}"]),
        (lambda d, p: _corrupt(d, p), ["transforms_train.json: frames[4].file_path", "r_004.png",
                                       "could not be read as an image"]),
    ],
)
def test_dnerf_bad_inputs(syn, tmp_path, edit, expected):
    doc = _relink(syn / "transforms_train.json", tmp_path)
    edit(doc, tmp_path)
    (tmp_path / "transforms_train.json").write_text(json.dumps(doc))
    with pytest.raises(CaptureError) as e:
        load_capture(tmp_path)
    for s in expected:
        assert s in str(e.value), (s, str(e.value))


def _odd_size(doc: dict, root: Path) -> None:
    (root / "imgs").mkdir()
    Image.new("RGBA", (32, 32), (10, 20, 30, 255)).save(root / "imgs" / "r_007.png")
    doc["frames"][7]["file_path"] = "./imgs/r_007"


def _corrupt(doc: dict, root: Path) -> None:
    (root / "imgs").mkdir()
    src = Path(root / doc["frames"][4]["file_path"]).with_suffix(".png")
    data = src.read_bytes() if src.is_file() else b""
    (root / "imgs" / "r_004.png").write_bytes(data[:60] + b"\x00garbage" * 8)  # truncated after the header
    doc["frames"][4]["file_path"] = "./imgs/r_004.png"


def test_bad_json_and_unknown_folder(tmp_path, syn):
    with pytest.raises(CaptureError) as e:
        load_capture(tmp_path)
    assert "found no transforms_train.json (D-NeRF) or transforms.json (nerfstudio)" in str(e.value)
    assert str(tmp_path) in str(e.value)
    (tmp_path / "transforms_train.json").write_text('{"frames": [')
    with pytest.raises(CaptureError, match=r"transforms_train.json: not valid JSON \(line 1"):
        load_capture(tmp_path)
    with pytest.raises(CaptureError, match="no such file or folder"):
        load_capture(tmp_path / "missing")
    # a broken test split is reported against its own file
    _relink(syn / "transforms_train.json", tmp_path / "b")
    doc = _relink(syn / "transforms_test.json", tmp_path / "b", "transforms_test.json")
    doc["frames"][1].pop("transform_matrix")
    (tmp_path / "b" / "transforms_test.json").write_text(json.dumps(doc))
    with pytest.raises(CaptureError, match=r"transforms_test.json: frames\[1\] has no 'transform_matrix'"):
        load_capture(tmp_path / "b")


# --------------------------------------------------------------------------- real data
@pytest.mark.skipif(not (REAL / "transforms_train.json").is_file(),
                    reason=f"real D-NeRF capture not present at {REAL}")
def test_real_dnerf_bouncingballs():
    c = load_capture(REAL)
    assert c.format == "dnerf"
    assert c.train.images.shape[1:] == (400, 400, 3) and c.train.alphas is not None
    assert len(c.train) == 150 and len(c.test) == 20 and c.val is not None
    for s in (c.train, c.test, c.val):
        assert float(s.times.min()) >= 0 and float(s.times.max()) <= 1
    assert float(c.train.times[0]) == 0.0 and float(c.train.times[-1]) == 1.0
    centre, radius = c.bounds()
    assert float(centre.norm()) < 0.2 and 0.5 < radius < 3


def test_file_paths_may_not_leave_the_capture_folder(syn, tmp_path):
    """'../', absolute paths and links out of the capture are refused, with the same message
    whether or not the target exists; --allow-outside reads them."""
    import shutil

    cap = tmp_path / "cap"
    _relink(syn / "transforms_train.json", cap)
    doc = json.loads((cap / "transforms_train.json").read_text())
    outside_img = next((syn / "train").iterdir())
    cases = {"dotdot": os.path.relpath(outside_img, cap), "absolute": str(outside_img),
             "missing": "../../nowhere/secret"}
    msgs = {}
    for name, fp in cases.items():
        d = json.loads(json.dumps(doc))
        d["frames"][0]["file_path"] = fp
        (cap / "transforms_train.json").write_text(json.dumps(d))
        with pytest.raises(CaptureError, match="leaves the capture folder") as e:
            load_capture(cap)
        msgs[name] = str(e.value).replace(repr(fp), "FP")
    assert msgs["dotdot"] == msgs["missing"]  # no hint of what exists outside
    # a link inside the folder that points out of it
    first = doc["frames"][0]["file_path"]
    target = cap / (first if first.endswith(".png") else first + ".png")
    target.unlink()
    target.symlink_to(outside_img)
    (cap / "transforms_train.json").write_text(json.dumps(doc))
    with pytest.raises(CaptureError, match="leaves the capture folder"):
        load_capture(cap)
    assert len(load_capture(cap, allow_outside=True).train) > 0
    shutil.rmtree(cap)

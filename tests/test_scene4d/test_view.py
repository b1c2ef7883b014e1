"""scene4d view: the splat buffers, the camera-path editor's files, the server's errors, and a real
browser (Debian's Chromium, software WebGL) looking at a 4D scene whose motion is known."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cameras import read_camera_path
from scene4d.cli import main
from scene4d.io import save_scene
from scene4d.view import SceneSplats, Viewer, ViewerError, check_port, free_port, keyframe, load_path, path_document
from scene4d.view.keyframes import cameras_of
from scenes import ring_cameras, spheres_on_floor

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    cams = ring_cameras(12, width=160, height=120, radius=3.0, dtype=torch.float32, elevation=0.5)
    cams = cams.with_times(torch.linspace(0, 1, 12))
    return save_scene(tmp_path_factory.mktemp("view") / "scene", spheres_on_floor(), train_cameras=cams, up="+z")


@torch.no_grad()
def test_only_the_moving_rows_are_sent_on_a_time_change():
    scene = spheres_on_floor()
    s = SceneSplats(scene)
    floor = (scene.entity == 1)
    assert s.n == len(scene) == 2 * 400 + 32 * 32
    assert torch.equal(torch.sort(s.static_rows).values, torch.nonzero(floor).flatten())  # the floor is static
    assert s.n_dynamic == 800 and s.bytes_per_update == 800 * 32
    for t in (0.0, 0.37, 1.0):
        d = s.dynamic(t)
        want = scene.at(t).means[s.dynamic_rows]
        np.testing.assert_allclose(d.centers, want.numpy(), atol=1e-6)
    # covariances are R S S R^T of the moved Gaussians (the first sphere turns half a turn)
    g = scene.at(1.0)
    R = __import__("renderers").quat_to_rotmat(g.quats[s.dynamic_rows[:5]])
    S = g.scales[s.dynamic_rows[:5]]
    np.testing.assert_allclose(s.dynamic(1.0).covariances[:5], (R * S[:, None] ** 2) @ R.transpose(1, 2), atol=1e-6)
    s.deform = False  # the deformation toggle: canonical positions
    np.testing.assert_allclose(s.dynamic(1.0).centers, scene.at(0.0, deform=False).means[s.dynamic_rows].numpy(),
                               atol=1e-6)


def test_a_static_ply_has_nothing_to_update(tmp_path):
    from renderers.splat_io import write_ply
    from scenes import random_gaussians

    write_ply(tmp_path / "s.ply", random_gaussians(50, sh_degree=0, dtype=torch.float32))
    from scene4d.cli import load_scene

    sc, _, _ = load_scene(tmp_path / "s.ply")
    s = SceneSplats(sc)
    assert s.n == 50 and s.n_dynamic == 0 and s.dynamic(0.5) is None and len(s.static()) == 50


def _keys():
    from cameras import look_at

    out = []
    for eye, t in (((3.0, -1.0, 1.0), 0.0), ((1.0, -3.0, 1.2), 0.5), ((-2.0, -2.5, 0.8), 1.0)):
        w2c = look_at(torch.tensor(eye, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                      torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        c2w = torch.linalg.inv(w2c)
        from cameras.conventions import rotmat_to_quat_wxyz

        out.append(keyframe(rotmat_to_quat_wxyz(c2w[:3, :3]).tolist(), eye, 0.9, t))
    return out


def test_a_saved_path_plays_its_keyframes_and_loads_back(tmp_path):
    keys = _keys()
    doc = path_document(keys, 200, 100, fps=10, seconds=2.0)
    p = tmp_path / "camera_path.json"
    p.write_text(json.dumps(doc))
    cams = read_camera_path(p)  # what `scene4d render --path` reads
    assert len(cams) == 20 and (cams.width, cams.height) == (200, 100)
    want = cameras_of(keys, 200, 100)
    torch.testing.assert_close(cams.world_to_camera[0].double(), want.world_to_camera[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.world_to_camera[-1].double(), want.world_to_camera[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.K[0].double(), want.K[0], atol=1e-4, rtol=0)
    assert float(cams.times[0]) == 0 and abs(float(cams.times[-1]) - 1) < 1e-6
    assert np.all(np.diff(cams.times.numpy()) > 0)  # times run between the keyframes' times
    back, w, h, fps, seconds, closed = load_path(json.loads(p.read_text()), str(p))
    assert (w, h, fps, seconds, closed) == (200, 100, 10.0, 2.0, False)
    for a, b in zip(back, keys):
        np.testing.assert_allclose(a.position, b.position, atol=1e-9)
        assert abs(abs(np.dot(a.wxyz, b.wxyz)) - 1) < 1e-9 and abs(a.fov - b.fov) < 1e-9 and a.time == b.time


@pytest.mark.parametrize("doc, msg", [
    ({"render_width": 10}, "render_height"),
    ({"render_width": 64, "render_height": 64, "camera_path": []}, "non-empty"),
    ({"render_width": 64, "render_height": 64, "fps": 30, "seconds": 1, "keyframes": [{"matrix": [1] * 16, "fov": 50}]},
     "at least 2 keyframes"),
    ([1, 2], "JSON object"),
])
def test_a_bad_path_file_is_one_line(doc, msg):
    with pytest.raises(ValueError, match=msg) as e:
        load_path(doc, "p.json")
    assert "p.json" in str(e.value) and "\n" not in str(e.value)


def test_a_port_in_use_is_named_with_a_free_one():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        with pytest.raises(ViewerError, match=rf"port {port} on 127.0.0.1 is in use.*try --port \d+"):
            check_port("127.0.0.1", port)
    finally:
        s.close()


def test_cli_errors_are_one_line(tmp_path, capsys, scene_dir):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        assert main(["view", str(scene_dir), "--port", str(port)]) == 2
    finally:
        s.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port}" in err and "try --port" in err
    (tmp_path / "empty").mkdir()
    assert main(["view", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scene.json" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"render_width": 64, "render_height": 64, "camera_path": [{"camera_to_world": [1, 2]}]}')
    assert main(["view", str(scene_dir), "--path", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and "camera_to_world" in err


class _Event:
    def __init__(self, client=None):
        self.client = client


def test_the_server_lives_on_after_bad_input(tmp_path, scene_dir):
    from scene4d.cli import load_scene

    sc, tr, te = load_scene(scene_dir)
    v = Viewer(sc, train_cameras=tr, test_cameras=te, port=free_port("127.0.0.1", 18500), base=tmp_path)
    try:
        up = lambda name, content: v._guarded(lambda ev: v.load_upload(name, content, ev))(_Event())  # noqa: E731
        up("broken.json", b'{"render_width": 64, "render_height": 64, "keyframes": [{"matrix": "no"}, {"matrix": 1}], '
                          b'"fps": 30, "seconds": 1}')
        assert "broken.json" in v.last_message and "error" in v.last_message and "matrix" in v.last_message
        up("bin.json", b"\xff\xfe")
        assert "not UTF-8" in v.last_message
        up("deep.json", b"[" * 100000 + b"]" * 100000)
        assert "nested too deeply" in v.last_message
        v.gui_path_file.value = str(tmp_path / "x.txt")
        v._guarded(v._on_save)(_Event())
        assert ".json file" in v.last_message
        v.gui_path_file.value = str(tmp_path / "p.json")
        v._guarded(v._on_save)(_Event())  # no keyframes yet
        assert "at least 2 keyframes" in v.last_message and not (tmp_path / "p.json").exists()
        # still serving: a time change goes through, and a good path loads
        v.set_time(0.5)
        assert v.time == 0.5
        doc = path_document(_keys(), 160, 120, fps=10, seconds=1.0)
        up("good.json", json.dumps(doc).encode())
        assert len(v.keys) == 3 and "loaded 3 keyframes" in v.last_message
        assert list(tmp_path.iterdir()) == []  # nothing was written but what the user saved (nothing)
    finally:
        v.close()


# --------------------------------------------------------------------------- the browser test

def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                                         "--no-sandbox", "--disable-gpu-sandbox"])
        yield b
        b.close()


def _settled(page, timeout: float = 20.0) -> np.ndarray:
    """A screenshot once two in a row agree (the splats are sorted and drawn)."""
    from PIL import Image
    import io

    last, t0 = None, time.time()
    while True:
        img = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(np.float64) / 255
        if last is not None and np.abs(img - last).max() < 1 / 255 + 1e-9:
            return img
        if time.time() - t0 > timeout:
            return img
        last = img
        time.sleep(0.4)


def _psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2) + 1e-12))


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    t = torch.from_numpy(m.astype(np.float32))[None, None]
    return torch.nn.functional.max_pool2d(t, 2 * r + 1, 1, r)[0, 0].numpy() > 0


def test_browser_time_slider_and_saved_path(browser, scene_dir, tmp_path):
    from PIL import Image

    from scene4d.cli import load_scene

    sc, tr, te = load_scene(scene_dir)
    v = Viewer(sc, train_cameras=None, test_cameras=None, port=free_port("127.0.0.1", 18600), base=tmp_path)
    page = browser.new_page(viewport={"width": 1000, "height": 640})
    try:
        page.goto(v.url)
        page.wait_for_selector("canvas", timeout=60000)
        t0 = time.time()
        while not v.server.get_clients() and time.time() - t0 < 30:
            time.sleep(0.1)
        client = list(v.server.get_clients().values())[0]
        time.sleep(1.0)
        with client.atomic():  # a view with the scene left of the control panel
            client.camera.up_direction = (0.0, 0.0, 1.0)
            client.camera.position = (-1.0, -3.4, 1.3)
            client.camera.look_at = (0.9, 0.0, -0.3)
        t0 = time.time()
        while abs(client.camera.position[0] + 1.0) > 1e-6 and time.time() - t0 < 10:
            time.sleep(0.1)
        slider = page.get_by_role("slider").first
        slider.focus()
        page.keyboard.press("Home")
        a = _settled(page)
        assert v.time == 0.0
        slider.focus()
        page.keyboard.press("End")  # the user drags the time slider to the end
        t0 = time.time()
        while v.time != 1.0 and time.time() - t0 < 10:
            time.sleep(0.05)
        assert v.time == 1.0
        b = _settled(page)

        # where the splats change: our rasterizer at the browser's camera, t = 0 and t = 1
        H, W = a.shape[:2]
        ref0 = v.render(v.camera_of(client, H).with_times(torch.tensor([0.0]))) / 255.0
        ref1 = v.render(v.camera_of(client, H).with_times(torch.tensor([1.0]))) / 255.0
        assert ref0.shape == a.shape, (ref0.shape, a.shape)
        moving = _dilate(np.abs(ref0 - ref1).max(-1) > 0.1, 4)
        region = np.zeros((H, W), bool)
        region[170:, : int(0.62 * W)] = True  # the canvas away from the control panel and the notification
        assert moving[~region].sum() < 0.02 * moving.sum()  # the moving objects are in view
        still = region & ~_dilate(moving, 10)
        floor = still & (ref0.min(-1) < 0.9)  # static content (the floor) in the compared pixels
        assert floor.sum() > 3000
        d = np.abs(a - b).max(-1)
        assert (d[moving & region] > 0.1).mean() > 0.3, "the splats did not move where the objects move"
        assert d[still].mean() < 0.003 and np.quantile(d[still], 0.999) < 0.1, "pixels changed where nothing moves"
        # and the WebGL splats agree with our rasterizer where they are drawn
        print(f"moving pixels changed: {(d[moving & region] > 0.1).mean():.2f}; still pixels: mean {d[still].mean():.5f}, "
              f"99.9% {np.quantile(d[still], 0.999):.4f}; WebGL vs our rasterizer {_psnr(a[region], ref0[region]):.1f} dB")
        assert _psnr(a[region], ref0[region]) > 20

        # three keyframes from the page: this view at t = 1, then two more views and times
        views = [((-1.0, -3.4, 1.3), (0.9, 0.0, -0.3), None), ((0.5, -3.6, 0.6), (0.2, 0.0, -0.2), "Home"),
                 ((2.6, -2.2, 1.6), (0.0, 0.0, -0.2), None)]
        saved_view = None
        add = page.get_by_role("button", name="Add keyframe at this view")
        for i, (eye, target, key) in enumerate(views):
            if i:
                with client.atomic():
                    client.camera.position = eye
                    client.camera.look_at = target
                t0 = time.time()
                while np.abs(client.camera.position - np.array(eye)).max() > 1e-6 and time.time() - t0 < 10:
                    time.sleep(0.1)
            if key:
                slider.focus()
                page.keyboard.press(key)
                time.sleep(0.5)
            if i == 0:
                saved_view = v.camera_of(client, 120)  # the view the first keyframe is taken from
            n = len(v.keys)
            add.click()
            t0 = time.time()
            while len(v.keys) == n and time.time() - t0 < 10:
                time.sleep(0.05)
        assert [k.time for k in v.keys] == [1.0, 0.0, 0.0]
        out = tmp_path / "paths" / "three.json"
        box = page.locator(f'input[value="{v.gui_path_file.value}"]')
        box.fill(str(out))
        page.keyboard.press("Enter")
        time.sleep(0.5)
        v.gui_fps.value, v.gui_seconds.value, v.gui_path_h.value = 10.0, 1.0, 120
        page.get_by_role("button", name="Save path").click()
        t0 = time.time()
        while not out.exists() and time.time() - t0 < 10:
            time.sleep(0.05)
        assert out.exists(), v.last_message
        assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["three.json"]  # nothing else written
    finally:
        page.close()
        v.close()

    # the saved path renders with `scene4d render --path` and starts at the view it was saved from
    video = tmp_path / "r.mp4"
    assert main(["render", str(scene_dir), "--path", str(out), "--out", str(video), "--png"]) == 0
    frames = sorted((tmp_path / "r").glob("*.png"))
    first = np.asarray(Image.open(frames[0]).convert("RGB")) / 255.0
    want = v.render(saved_view) / 255.0
    assert first.shape == want.shape
    print(f"first frame of the saved path vs the view it was saved from: {_psnr(first, want):.1f} dB")
    assert _psnr(first, want) >= 30


def test_reconstruct_view_serves_the_scene_being_fitted(tmp_path):
    from scene4d.data import load_capture
    from scene4d.data.synthetic import make_dnerf_capture
    from scene4d.reconstruct import preset, train, with_iters
    from scene4d.view import LiveView

    cap = load_capture(make_dnerf_capture(tmp_path / "cap", size=32, n_train=12, n_test=2, n_val=1))
    cfg = preset("fast")
    with_iters(cfg, 30)
    watch = LiveView(10, port=free_port("127.0.0.1", 18700), train_cameras=cap.train.cameras, total=cfg.iters)
    seen = []
    try:
        def spy(step, scene, terms, report):
            watch(step, scene, terms, report)
            seen.append((step, watch.viewer._splats.scene))
        res = train(cap, tmp_path / "s", cfg, progress=False, evaluate=False, watch=spy)
        refreshed = [s for i, (s, sc) in enumerate(seen) if i == 0 or sc is not seen[i - 1][1]]
        assert refreshed == [1, 10, 20, 30] and watch.updates == 4  # the first step, then every 10
        shown = watch.viewer._splats.scene
        assert shown is not res.scene and not any(p.requires_grad for p in shown.parameters())  # a detached copy
        with torch.no_grad():
            torch.testing.assert_close(shown.at(0.5).means, res.scene.at(0.5).means)  # the last refresh is the result
        assert "fitting: step 30 of 30" in watch.viewer.gui_stats.content
    finally:
        watch.close()


def test_the_command_serves_the_page_and_stops_on_ctrl_c_or_kill(scene_dir):
    import signal
    import subprocess
    import sys
    import urllib.request

    def as_a_foreground_job():
        # Ctrl-C reaches the job in the terminal's foreground. A shell starts a background job (`.ci/run &`)
        # with SIGINT ignored, and an ignored signal stays ignored across fork and exec: Python would then
        # not turn SIGINT into KeyboardInterrupt in the viewer, and this test would time out for a reason
        # that is not the viewer's.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    port = free_port("127.0.0.1", 18800)
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([sys.executable, "-m", "scene4d.cli", "view", str(scene_dir), "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=as_a_foreground_job)
        try:
            lines = []
            while not lines or ("Ctrl-C" not in lines[-1] and lines[-1]):
                lines.append(p.stdout.readline())
            assert f"at http://127.0.0.1:{port}" in lines[0] and "1824 Gaussians, 800 moving" in lines[0]
            assert "only this machine can connect" in "".join(lines)
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=10).read()
            assert b"<html" in page.lower()
            p.send_signal(sig)
            out, _ = p.communicate(timeout=30)
            assert p.returncode == 0 and "scene4d view: stopped" in out
        finally:
            if p.poll() is None:
                p.kill()


def test_scene_swaps_keep_the_splat_sets_right_and_shared_viewers_stay_in_their_folder(tmp_path):
    """LiveView replaces the scene as training densifies: the moving set's size changes, or a scene
    has no moving rows at all (no stale node is left); a viewer on another address than loopback
    saves only under its folder."""
    from renderers import Gaussians
    from scene4d.render import StaticScene
    from scenes import random_gaussians

    a = spheres_on_floor(n_per_sphere=200)
    v = Viewer(a, port=free_port("127.0.0.1", 18650), base=tmp_path)
    try:
        assert len(v._handles["dynamic"].buffer) == 400 and len(v._handles["static"].buffer) == 1024
        v.set_scene(spheres_on_floor(n_per_sphere=300))  # more moving rows
        assert len(v._handles["dynamic"].buffer) == 600
        v.set_time(0.25)
        torch.testing.assert_close(torch.from_numpy(v._handles["dynamic"].centers.copy()),
                                   v.scene.at(0.25).means[v._splats.dynamic_rows].detach(), atol=1e-6, rtol=0)
        v.gui_nodes.value = True  # the motion nodes follow time in one point-cloud node
        v.set_time(0.0)
        h = v._handles["nodes"]
        v.set_time(1.0)
        assert v._handles["nodes"] is h
        np.testing.assert_allclose(h.points, v.node_positions(1.0), atol=1e-3)  # viser keeps them as float16
        assert np.abs(v.node_positions(1.0) - v.node_positions(0.0)).max() > 0.5  # they moved (0.7 and 0.6)
        v.gui_nodes.value = False
        v.set_time(0.5)
        assert "nodes" not in v._handles
        g = random_gaussians(30, sh_degree=0, dtype=torch.float32)
        v.set_scene(StaticScene(Gaussians(g.means, g.quats, g.scales, g.opacities, g.sh)))  # nothing moves
        assert "dynamic" not in v._handles and len(v._handles["static"].buffer) == 30
        assert v.set_time(0.5) >= 0 and v.last_update_bytes == 0
    finally:
        v.close()
    v = Viewer(a, host="127.0.0.1", port=free_port("127.0.0.1", 18660), base=tmp_path)
    try:
        v.shared = True  # as with --host 0.0.0.0 (not bound here: tests stay on loopback)
        v.keys = _keys()
        v._guarded(lambda ev: v.save_path(str(tmp_path.parent / "outside.json")))(_Event())
        assert "only under" in v.last_message and not (tmp_path.parent / "outside.json").exists()
        v._guarded(lambda ev: v.save_path("../outside.json"))(_Event())
        assert "only under" in v.last_message
        assert v.save_path("inside.json") == tmp_path / "inside.json" and (tmp_path / "inside.json").is_file()
    finally:
        v.close()


def test_gaussians_that_appear_and_vanish_are_sent_on_every_time_change():
    from scene4d.field import Scene4D, init_params

    g = torch.Generator().manual_seed(0)
    params = init_params(torch.randn(40, 3, generator=g), None, 0, opacity=0.5, times=torch.rand(40, generator=g),
                         time_scale=0.02)  # lifetimes far shorter than the probes' spacing
    sc = Scene4D(params, None, sh_degree=0)
    assert sc.temporal_opacity
    s = SceneSplats(sc)
    assert s.n_dynamic == 40
    with torch.no_grad():
        np.testing.assert_allclose(s.dynamic(0.3).opacities[:, 0], sc.at(0.3).opacities.numpy(), atol=1e-6)


def test_time_changes_reuse_the_node_weights_and_match_the_scene():
    """A motion-nodes scene's node weights are computed once per scene; every time change then gives
    exactly what Scene4D.at gives (48 nodes, all blending)."""
    import math

    from scene4d.deformation import MotionNodesConfig
    from scene4d.field import Scene4D, init_params

    g = torch.Generator().manual_seed(0)
    sc = Scene4D(init_params(torch.randn(3000, 3, generator=g) * 0.4, None, 0, opacity=0.5),
                 MotionNodesConfig(nodes=48, time_resolution=8), sh_degree=0)
    sc.initialize_fields()
    with torch.no_grad():
        k = torch.linspace(0, 2 * math.pi, 8)
        sc.deformation.translations[:, :, 0] = 0.2 * torch.sin(k)
        sc.deformation.rotvecs[:, :, 2] = 0.5 * torch.sin(k)
    s = SceneSplats(sc)
    assert s._fast is not None and s.n_dynamic == 3000
    calls = []
    real = sc.deformation.weights
    sc.deformation.weights = lambda m: calls.append(1) or real(m)
    with torch.no_grad():
        for t in (0.1, 0.55, 0.93):
            want = sc.at(t)
            n = len(calls)
            got = s._dynamic_gaussians(t)
            assert len(calls) == n  # no weights evaluated for the time change
            torch.testing.assert_close(got.means, want.means[s.dynamic_rows], atol=0, rtol=0)
            torch.testing.assert_close(got.quats, want.quats[s.dynamic_rows], atol=0, rtol=0)

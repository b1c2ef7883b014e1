"""The viewer: a viser server showing a 4D scene in the browser, with a time slider, the capture's
cameras, a server-side render panel and a camera-path editor.

The browser draws the splats with WebGL (degree-0 colour); the scene's deformation is evaluated
here and only the Gaussians it moves are re-sent on a time change (:mod:`scene4d.view.splats`).
The render panel shows the current view through our rasterizer, which is what ``scene4d render``
produces. Nothing is written anywhere except the files a user names in the page (a camera path, a
snapshot PNG).
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch

from cameras import Cameras, rigid_inverse
from cameras.conventions import rotmat_to_quat_wxyz
from renderers import rasterize

from .keyframes import Keyframe, cameras_of, keyframe, load_path, path_document, resolve_save_path
from .splats import SceneSplats, SplatArrays

UP_VECTORS = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}


class ViewerError(ValueError):
    """A viewer that cannot start (port taken, bad scene): one line for the user."""


def check_port(host: str, port: int) -> None:
    """ViewerError naming the port and a free one when ``host:port`` cannot be bound (viser would
    silently move to the next port, and the printed address would then be wrong)."""
    if not 0 < port < 65536:
        raise ViewerError(f"--port {port}: a TCP port lies in 1..65535")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    # as the server will (asyncio sets it): a port whose last connections linger in TIME_WAIT
    # after a viewer stopped is free; only a listening socket takes it
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        s.listen(1)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ViewerError(f"port {port} on {host} is in use (another viewer or server?); "
                              f"try --port {free_port(host, port + 1)}") from None
        if e.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME if hasattr(socket, "EAI_NONAME") else -1):
            raise ViewerError(f"--host {host}: not an address of this machine ({e.strerror})") from None
        if e.errno == errno.EACCES:
            raise ViewerError(f"port {port}: not allowed for this user (ports below 1024 need root); "
                              f"try --port {free_port(host, 8080)}") from None
        raise ViewerError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    except socket.gaierror as e:
        raise ViewerError(f"--host {host}: cannot be resolved ({e.strerror or e})") from None
    finally:
        s.close()


def free_port(host: str, start: int) -> int:
    """The first port from ``start`` that can be bound on ``host``."""
    for port in range(max(1024, start), 65536):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise ViewerError(f"no free port on {host}")


@dataclass
class Rate:
    """Updates per second over the last ``window`` seconds."""

    window: float = 2.0

    def __post_init__(self):
        self.stamps: deque = deque()
        self.costs: deque = deque(maxlen=64)

    def tick(self, cost: float) -> None:
        now = time.perf_counter()
        self.stamps.append(now)
        self.costs.append(cost)
        while self.stamps and now - self.stamps[0] > self.window:
            self.stamps.popleft()

    @property
    def per_second(self) -> float:
        if len(self.stamps) < 2:
            return 0.0
        span = self.stamps[-1] - self.stamps[0]
        return (len(self.stamps) - 1) / span if span > 0 else 0.0

    @property
    def mean_cost(self) -> float:
        return float(np.mean(self.costs)) if self.costs else 0.0


def _wxyz_of(R: np.ndarray) -> np.ndarray:
    return rotmat_to_quat_wxyz(torch.tensor(R, dtype=torch.float64)).numpy()


def _c2w(w2c: torch.Tensor) -> np.ndarray:
    return rigid_inverse(w2c.detach().to("cpu", torch.float64)).numpy()


class Viewer:
    """A running viewer for ``scene`` (anything with ``at(t)``; a Scene4D or a static scene).

    Args:
        scene: the scene; replace it later with :meth:`set_scene` (a fit in progress).
        train_cameras, test_cameras: the capture's cameras (frustums; the start view), or None.
        host, port: where to listen (127.0.0.1 unless the user says otherwise).
        up: the scene's up axis ("+z", ...).
        background: RGB of the render panel and snapshots (``render``'s default: white).
        base: the folder a relative save path is taken from.
        images: optional callable returning the train cameras' images (C, H, W, 3) for the frustums.
    """

    def __init__(self, scene, *, train_cameras: Optional[Cameras] = None, test_cameras: Optional[Cameras] = None,
                 host: str = "127.0.0.1", port: int = 8080, up: str = "+z", background=(1.0, 1.0, 1.0),
                 base: Optional[Path] = None, title: str = "scene4d", images: Optional[Callable] = None,
                 default_path_file: Optional[Path] = None, default_snapshot: Optional[Path] = None,
                 render_height: Optional[int] = None, backend: str = "auto"):
        import viser

        check_port(host, port)
        self._lock = threading.RLock()
        self.host, self.up = host, up
        self.background = tuple(float(c) for c in background)
        self.base = Path(base) if base is not None else Path.cwd()
        self.backend = backend
        self.train_cameras, self.test_cameras = train_cameras, test_cameras
        self.keys: List[Keyframe] = []
        self.time = 0.0
        self.rate = Rate()
        self.bytes_sent = 0
        self.last_update_bytes = 0
        self.timings = (0.0, 0.0, 0.0)  # the last time change: evaluate, pack, send (seconds)
        self._playing = False
        self._stop = threading.Event()
        self._preview = threading.Event()
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own banner; we print one line
            self.server = viser.ViserServer(host=host, port=port, label=title, verbose=False)
        if self.server.get_port() != port:  # lost a race for the port after check_port
            got = self.server.get_port()
            self.server.stop()
            raise ViewerError(f"port {port} on {host} is in use; try --port {got}")
        self.port = port
        # a viewer others can reach saves and loads only under ``base`` (a visitor could otherwise
        # write or probe any file this user can)
        self.shared = host not in ("127.0.0.1", "localhost", "::1")
        self.path_aspect: Optional[float] = None  # of a loaded path, until a keyframe is added
        self._radius = 1.0
        self._handles = {}
        self._frustums = []
        self._key_frustums = []
        self._splats: Optional[SceneSplats] = None
        try:
            self.server.scene.set_up_direction(UP_VECTORS.get(up, (0, 0, 1)))
            self._build_gui(default_path_file, default_snapshot, render_height)
            self.set_scene(scene)
            self._add_cameras(images)
            self.server.on_client_connect(self._on_connect)
        except BaseException:
            with contextlib.redirect_stdout(io.StringIO()):
                self.server.stop()
            raise
        self._player = threading.Thread(target=self._play_loop, name="scene4d-view-play", daemon=True)
        self._player.start()

    # ------------------------------------------------------------------ scene

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def set_scene(self, scene) -> None:
        """Show ``scene`` (a new one, or the same after training changed it)."""
        with self._lock:
            self.scene = scene
            self._splats = SceneSplats(scene)
            self._splats.deform = bool(self.gui_deform.value)
            try:
                self._radius = float(scene.bounds()[1])
            except Exception:  # noqa: BLE001 - a scene without bounds: a unit scene
                self._radius = 1.0
            arrays = self._splats.all_at(self.time)
            with self.server.atomic():  # the static and moving sets change together
                for name, arr in arrays.items():
                    self._put(name, arr)
                if "dynamic" not in arrays and "dynamic" in self._handles:
                    self._handles.pop("dynamic").remove()
            self.bytes_sent += sum(len(a) for a in arrays.values()) * 32
            self._update_nodes()
            self._stats()

    def _put(self, name: str, arr: SplatArrays) -> None:
        h = self._handles.get(name)
        if h is None or len(arr) == 0 and name == "static":
            if h is not None:
                h.remove()
            self._handles[name] = self.server.scene.add_gaussian_splats(
                f"/splats/{name}", centers=arr.centers, covariances=arr.covariances, rgbs=arr.rgbs,
                opacities=arr.opacities)
        else:
            h.set_gaussians(arr.centers, arr.covariances, arr.rgbs, arr.opacities)

    def set_time(self, t: float) -> float:
        """Show the scene at ``t`` (clamped to [0, 1]); returns seconds spent evaluating and sending."""
        t0 = time.perf_counter()
        with self._lock:
            self.time = float(min(max(t, 0.0), 1.0))
            d = self._splats.dynamic(self.time) if self._splats is not None else None
            if d is not None:
                t1 = time.perf_counter()
                self._put("dynamic", d)
                self.timings = (*self._splats.timings, time.perf_counter() - t1)
                self.last_update_bytes = len(d) * 32
                self.bytes_sent += self.last_update_bytes
            else:
                self.last_update_bytes = 0
            self._update_nodes()
            cost = time.perf_counter() - t0
            self.rate.tick(cost)
        return cost

    def _update_nodes(self) -> None:
        pts = self.node_positions(self.time) if self.gui_nodes.value else None
        h = self._handles.get("nodes")
        if pts is None or len(pts) == 0:
            if h is not None:
                self._handles.pop("nodes").remove()
            return
        pts = pts.astype(np.float32)
        if h is not None and len(h.points) == len(pts):
            h.points = pts  # a time change moves the nodes; the node itself stays
            return
        if h is not None:
            h.remove()
        self._handles["nodes"] = self.server.scene.add_point_cloud(
            "/motion_nodes", points=pts, colors=(255, 0, 200), point_size=self._scene_radius() * 0.03,
            point_shape="circle")

    def node_positions(self, t: float) -> Optional[np.ndarray]:
        """Every motion node's centre moved to time ``t`` by its own field (None: no motion nodes)."""
        fields = getattr(self.scene, "fields", None) or []
        out = []
        with torch.no_grad():
            for f in fields:
                c = getattr(f, "centers", None)
                if f is None or c is None or not hasattr(f, "warp"):
                    continue
                q = torch.zeros(len(c), 4, device=c.device, dtype=c.dtype)
                q[:, 0] = 1
                moved = f.warp(c, q, t)[0] if self.gui_deform.value else c
                out.append(moved.detach().float().cpu().numpy())
        return np.concatenate(out) if out else None

    def _scene_radius(self) -> float:
        return self._radius

    # ------------------------------------------------------------------ GUI

    def _build_gui(self, default_path_file, default_snapshot, render_height) -> None:
        gui = self.server.gui
        h0 = render_height or (self.train_cameras.height if self.train_cameras is not None else 540)
        with gui.add_folder("Time"):
            self.gui_time = gui.add_slider("time", min=0.0, max=1.0, step=0.001, initial_value=0.0)
            self.gui_play = gui.add_button("Play", icon=None)
            self.gui_speed = gui.add_number("speed (loops/s)", initial_value=0.25, min=0.01, max=10.0, step=0.01)
            self.gui_deform = gui.add_checkbox("deformation", initial_value=True)
            self.gui_rate = gui.add_markdown("")
        with gui.add_folder("Scene"):
            self.gui_cams = gui.add_checkbox("input cameras", initial_value=True)
            self.gui_nodes = gui.add_checkbox("motion nodes", initial_value=False)
            self.gui_stats = gui.add_markdown("")
        with gui.add_folder("Render", expand_by_default=False):
            self.gui_render_h = gui.add_number("height (px)", initial_value=int(min(h0, 1080)), min=16, max=4096, step=1)
            self.gui_render_btn = gui.add_button("Render view")
            self.gui_image = gui.add_image(np.full((8, 8, 3), 255, np.uint8), label="our rasterizer")
            snap = default_snapshot if default_snapshot is not None else self.base / "snapshot.png"
            self.gui_snap_path = gui.add_text("PNG file", initial_value=str(snap))
            self.gui_snap_btn = gui.add_button("Save snapshot")
        with gui.add_folder("Camera path"):
            self.gui_keys = gui.add_dropdown("keyframe", options=["(none)"], initial_value="(none)")
            self.gui_add = gui.add_button("Add keyframe at this view")
            self.gui_edit = gui.add_button_group("selected", ["Go to", "Up", "Down", "Remove"])
            self.gui_fps = gui.add_number("fps", initial_value=30.0, min=1.0, max=240.0, step=1.0)
            self.gui_seconds = gui.add_number("seconds", initial_value=4.0, min=0.1, max=3600.0, step=0.1)
            self.gui_path_h = gui.add_number("render height (px)", initial_value=int(min(h0, 1080)), min=16, max=4096,
                                             step=1)
            self.gui_loop = gui.add_checkbox("loop", initial_value=False)
            self.gui_preview = gui.add_button("Preview path")
            pf = default_path_file if default_path_file is not None else self.base / "camera_path.json"
            self.gui_path_file = gui.add_text("file", initial_value=str(pf))
            self.gui_save = gui.add_button("Save path")
            self.gui_load = gui.add_button("Load path")
            self.gui_upload = gui.add_upload_button("Upload path", mime_type="application/json")
            self.gui_status = gui.add_markdown("")

        self.gui_time.on_update(self._guarded(self._on_time))
        self.gui_play.on_click(lambda _: self._toggle_play())
        self.gui_deform.on_update(self._guarded(self._on_deform))
        self.gui_nodes.on_update(self._guarded(lambda _: self._locked(self._update_nodes)))
        self.gui_cams.on_update(self._guarded(self._on_cams))
        self.gui_loop.on_update(self._guarded(lambda _: self._refresh_keys()))
        self.gui_render_btn.on_click(self._guarded(self._on_render))
        self.gui_snap_btn.on_click(self._guarded(self._on_snapshot))
        self.gui_add.on_click(self._guarded(self._on_add))
        self.gui_edit.on_click(self._guarded(self._on_edit))
        self.gui_preview.on_click(self._guarded(self._on_preview))
        self.gui_save.on_click(self._guarded(self._on_save))
        self.gui_load.on_click(self._guarded(self._on_load))
        self.gui_upload.on_upload(self._guarded(self._on_upload))

    def _locked(self, fn):
        with self._lock:
            fn()

    def _guarded(self, fn):
        """A GUI callback whose errors become a status line and a notification, never a dead server."""
        def run(event):
            try:
                fn(event)
            except Exception as e:  # noqa: BLE001 - anything a click triggers is reported, the server lives on
                msg = str(e) if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {e}"
                self.say(f"**error:** {msg}", event, error=True)
        return run

    def say(self, text: str, event=None, *, error: bool = False) -> None:
        self.gui_status.content = text.replace("<", "&lt;").replace(">", "&gt;")
        self.last_message = text
        client = getattr(event, "client", None)
        if client is not None:
            try:
                client.add_notification("scene4d", text.replace("**", ""), color="red" if error else "green",
                                        auto_close_seconds=6.0)
            except Exception:  # noqa: BLE001 - a notification is a courtesy
                pass

    def _stats(self) -> None:
        s = self._splats
        if s is None:
            return
        self.gui_stats.content = (f"{s.n} Gaussians; {s.n_dynamic} move, sent per time change "
                                  f"({s.bytes_per_update / 1e6:.2f} MB); {s.n - s.n_dynamic} static, sent once")

    def _on_connect(self, client) -> None:
        try:
            view = self.start_view()
        except Exception:  # noqa: BLE001 - the browser keeps its own first view
            return
        if view is None:
            return
        pos, look, up = view
        with client.atomic():
            client.camera.up_direction = up
            client.camera.position = pos
            client.camera.look_at = look

    def start_view(self):
        """(position, look_at, up) of the first view: the mean input camera (forward-facing
        captures), the first input camera (360 captures), else a view of the scene's bounds."""
        up = np.array(UP_VECTORS.get(self.up, (0, 0, 1)), dtype=np.float64)
        cams = self.train_cameras
        if cams is not None and len(cams) > 0:
            try:
                from cameras.capture_paths import FORWARD_FACING, capture_rig

                rig = capture_rig(cams.to(device="cpu", dtype=torch.float64), up=torch.tensor(up))
                if rig.kind == FORWARD_FACING:  # the mean input camera (LLFF's average pose)
                    c2w = _c2w(rig.average_w2c)
                    return c2w[:3, 3], c2w[:3, 3] + c2w[:3, 2] * rig.focus_depth, -c2w[:3, 1]
                # all round: the first input camera's distance and elevation, 15 degrees round
                # the up axis from it (so its frustum is out of the line of sight) and a little farther out
                focus = rig.focus.numpy()
                e = _c2w(rig.inputs.world_to_camera[0])[:3, 3] - focus
                a = math.radians(15.0)
                e = e * math.cos(a) + np.cross(up, e) * math.sin(a) + up * np.dot(up, e) * (1 - math.cos(a))
                eye = focus + e * 1.1
                return eye, focus, up
            except Exception:  # noqa: BLE001 - odd cameras: fall back to the first one
                c2w = _c2w(cams.world_to_camera[0])
                return c2w[:3, 3], c2w[:3, 3] + c2w[:3, 2], -c2w[:3, 1]
        try:
            center, radius = self.scene.bounds()
            center = np.asarray(center.detach().cpu(), dtype=np.float64)
        except Exception:  # noqa: BLE001
            center, radius = np.zeros(3), 1.0
        side = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 1.0, 0])
        eye = center + 2.5 * radius * (side / np.linalg.norm(side) * 0.9 + up * 0.45)
        return eye, center, up

    def _add_cameras(self, images) -> None:
        cams = [(self.train_cameras, (40, 90, 220)), (self.test_cameras, (220, 120, 40))]
        thumbs = None
        if images is not None:
            try:
                thumbs = images()
            except Exception:  # noqa: BLE001 - images are optional; frustums show without them
                thumbs = None
        centres = [_c2w(c.world_to_camera[i])[:3, 3] for c, _ in cams if c is not None for i in range(len(c))]
        if not centres:
            return
        mid = np.asarray(self.scene.bounds()[0].detach().cpu(), dtype=np.float64) if hasattr(self.scene, "bounds") \
            else np.zeros(3)
        scale = 0.03 * float(np.median(np.linalg.norm(np.array(centres) - mid, axis=1)))
        for split, (c, color) in zip(("train", "test"), cams):
            if c is None:
                continue
            c = c.to(device="cpu", dtype=torch.float64)
            step = max(1, len(c) // 200)  # at most ~200 frustums a split
            for i in range(0, len(c), step):
                c2w = _c2w(c.world_to_camera[i])
                fov = 2 * math.atan(c.height / (2 * float(c.K[i, 1, 1])))
                img = None
                if thumbs is not None and split == "train" and i < len(thumbs):
                    img = thumbs[i]
                self._frustums.append(self.server.scene.add_camera_frustum(
                    f"/cameras/{split}/{i:05d}", fov=fov, aspect=c.width / c.height, scale=scale, color=color,
                    wxyz=_wxyz_of(c2w[:3, :3]), position=c2w[:3, 3], image=img, thickness=scale * 0.03))

    def _on_cams(self, _) -> None:
        for f in self._frustums:
            f.visible = bool(self.gui_cams.value)

    def _on_time(self, event) -> None:
        if getattr(event, "client", None) is None:  # the server moved the slider (playback, go to)
            return
        self.set_time(float(self.gui_time.value))
        self._show_rate()

    def _on_deform(self, _) -> None:
        with self._lock:
            self._splats.deform = bool(self.gui_deform.value)
            self._put("static", self._splats.static())  # canonical or at t = 0: the static set too
        self.set_time(self.time)

    def _toggle_play(self) -> None:
        self._playing = not self._playing
        self.gui_play.label = "Pause" if self._playing else "Play"

    def _show_rate(self) -> None:
        r = self.rate
        if self._playing:
            self.gui_rate.content = (f"playing: {r.per_second:.1f} updates/s ({1e3 * r.mean_cost:.0f} ms to evaluate and "
                                     f"send each, {self.last_update_bytes / 1e6:.2f} MB)")
        else:
            self.gui_rate.content = (f"last change: {1e3 * r.costs[-1] if r.costs else 0:.0f} ms to evaluate and send "
                                     f"({self.last_update_bytes / 1e6:.2f} MB)")

    #: playback stops asking for more than this many updates a second (a screen's rate)
    MAX_RATE = 60.0

    def _play_loop(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            if not self._playing:
                last = time.perf_counter()
                self._stop.wait(0.05)
                continue
            try:
                now = time.perf_counter()
                t = (self.time + float(self.gui_speed.value) * (now - last)) % 1.0
                last = now
                self.set_time(t)
                self.gui_time.value = round(self.time, 3)
                self._show_rate()
            except Exception as e:  # noqa: BLE001 - playback stops and says why; the server lives on
                self._playing = False
                self.gui_play.label = "Play"
                self.say(f"**error:** playback stopped: {type(e).__name__}: {e}", error=True)
            self._stop.wait(max(0.0, 1.0 / self.MAX_RATE - (time.perf_counter() - now)))

    # ------------------------------------------------------------------ render panel

    def camera_of(self, client, height: int) -> Cameras:
        """The browser's current view as our camera at ``height`` pixels (its canvas aspect)."""
        cam = client.camera
        aspect = float(cam.aspect) if cam.aspect and cam.aspect > 0 else 16 / 9
        h = int(height)
        w = max(16, int(round(h * aspect)))
        k = keyframe(cam.wxyz, cam.position, float(cam.fov), self.time)
        return cameras_of([k], w, h)

    def render(self, cams: Cameras) -> np.ndarray:
        """(H, W, 3) uint8 of ``cams[0]`` at its time through our rasterizer."""
        with self._lock, torch.no_grad():
            t = float(cams.times[0]) if cams.times is not None else self.time
            g = self._splats.gaussians(t)  # the scene at t, under the lock; rasterized outside it
        with torch.no_grad():
            dev = g.means.device
            c = cams.to(device=dev, dtype=g.means.dtype)
            bg = torch.tensor(self.background, dtype=g.means.dtype, device=dev)
            rgb = rasterize(g, c, background=bg, backend=self.backend, check=False).rgb[0]
        return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

    def _client(self, event):
        c = getattr(event, "client", None)
        if c is None:
            clients = list(self.server.get_clients().values())
            if not clients:
                raise ValueError("no browser is connected")
            c = clients[0]
        return c

    def _on_render(self, event) -> None:
        t0 = time.perf_counter()
        img = self.render(self.camera_of(self._client(event), int(self.gui_render_h.value)))
        self.gui_image.image = img
        self.say(f"rendered {img.shape[1]}x{img.shape[0]} at t = {self.time:.3f} in {time.perf_counter() - t0:.2f} s",
                 None)

    def _on_snapshot(self, event) -> None:
        from PIL import Image

        from ..io import atomic_write_bytes

        p = self.user_path(Path(str(self.gui_snap_path.value).strip()))
        if p.suffix.lower() != ".png":
            raise ValueError(f"{p}: a snapshot is a .png file")
        img = self.render(self.camera_of(self._client(event), int(self.gui_render_h.value)))
        self.gui_image.image = img
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, buf.getvalue())
        self.say(f"wrote {p} ({img.shape[1]}x{img.shape[0]}, t = {self.time:.3f})", event)

    # ------------------------------------------------------------------ camera path editor

    def _selected(self) -> int:
        v = self.gui_keys.value
        if not self.keys or not v.startswith("#"):
            raise ValueError("no keyframe selected (add one first)")
        return int(v[1:].split()[0]) - 1

    def _refresh_keys(self, select: Optional[int] = None) -> None:
        opts = [f"#{i + 1}  t = {k.time:.3f}" for i, k in enumerate(self.keys)] or ["(none)"]
        self.gui_keys.options = opts
        if select is not None and self.keys:
            self.gui_keys.value = opts[max(0, min(select, len(opts) - 1))]
        for f in self._key_frustums:
            f.remove()
        self._key_frustums = []
        scale = self._scene_radius() * 0.1
        for i, k in enumerate(self.keys):
            self._key_frustums.append(self.server.scene.add_camera_frustum(
                f"/camera_path/key_{i:03d}", fov=k.fov, aspect=self.path_aspect or 16 / 9, scale=scale, color=(240, 40, 40),
                wxyz=k.wxyz, position=k.position, thickness=scale * 0.04))
        if len(self.keys) >= 2:
            pts = np.array([k.position for k in self.keys])
            self._key_frustums.append(self.server.scene.add_spline_catmull_rom(
                "/camera_path/spline", points=pts, color=(240, 40, 40), thickness=2.0, thickness_units="screen",
                closed=bool(self.gui_loop.value)))

    def add_keyframe(self, client) -> Keyframe:
        cam = client.camera
        k = keyframe(cam.wxyz, cam.position, float(cam.fov), self.time)
        self.keys.append(k)
        self.path_aspect = None  # the path now follows the browser's aspect
        self._refresh_keys(select=len(self.keys) - 1)
        return k

    def _on_add(self, event) -> None:
        k = self.add_keyframe(self._client(event))
        self.say(f"keyframe {len(self.keys)} at t = {k.time:.3f}", None)

    def _on_edit(self, event) -> None:
        what = self.gui_edit.value
        if what == "Go to":
            self._on_goto(event)
        elif what in ("Up", "Down"):
            self._move(-1 if what == "Up" else +1)
        elif what == "Remove":
            self._on_remove(event)

    def _on_goto(self, event) -> None:
        k = self.keys[self._selected()]
        self._go(self._client(event), k)

    def _go(self, client, k: Keyframe) -> None:
        with client.atomic():
            client.camera.wxyz = k.wxyz
            client.camera.position = k.position
            client.camera.fov = k.fov
        self.set_time(k.time)
        self.gui_time.value = round(k.time, 3)

    def _move(self, d: int) -> None:
        i = self._selected()
        j = i + d
        if not 0 <= j < len(self.keys):
            return
        self.keys[i], self.keys[j] = self.keys[j], self.keys[i]
        self._refresh_keys(select=j)

    def _on_remove(self, event) -> None:
        i = self._selected()
        del self.keys[i]
        self._refresh_keys(select=min(i, len(self.keys) - 1))
        self.say(f"removed keyframe {i + 1}; {len(self.keys)} left", None)

    def path_size(self, client=None) -> tuple:
        """(width, height) of the saved path: --render height x the aspect of the loaded path, else
        of the browser that asks (else the first connected one)."""
        h = int(self.gui_path_h.value)
        aspect = self.path_aspect
        if aspect is None:
            if client is None:
                clients = list(self.server.get_clients().values())
                client = clients[0] if clients else None
            aspect = float(client.camera.aspect) if client is not None and client.camera.aspect else 16 / 9
        return max(16, int(round(h * aspect))), h

    def path_document(self, client=None) -> dict:
        w, h = self.path_size(client)
        return path_document(self.keys, w, h, float(self.gui_fps.value), float(self.gui_seconds.value),
                             closed=bool(self.gui_loop.value))

    def user_path(self, p: Path) -> Path:
        """``p`` as the file a page action may touch: relative to ``base``; when the viewer is shared
        (not on a loopback address), only inside ``base``."""
        p = Path(p).expanduser()
        if not p.is_absolute():
            p = self.base / p
        if self.shared:
            root = self.base.resolve()
            rp = p.resolve()
            if rp != root and root not in rp.parents:
                raise ValueError(f"{p}: this viewer is shared (--host {self.host}), so it reads and writes only "
                                 f"under {root}")
        return p

    def save_path(self, text: str, client=None) -> Path:
        """Write the path to the file ``text`` names (atomically); returns it."""
        from ..io import atomic_write_json

        p = self.user_path(resolve_save_path(text, self.base))
        doc = self.path_document(client)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p, doc)
        return p

    def _on_save(self, event) -> None:
        p = self.save_path(str(self.gui_path_file.value), getattr(event, "client", None))
        self.say(f"wrote {p} ({len(self.keys)} keyframes); render it: `scene4d render SCENE --path {p}`", event)

    def load_path_data(self, data, name: str) -> None:
        keys, w, h, fps, seconds, closed = load_path(data, name)
        self.keys = keys
        self.path_aspect = w / h
        self.gui_fps.value, self.gui_seconds.value, self.gui_path_h.value = fps, seconds, h
        self.gui_loop.value = closed
        self._refresh_keys(select=0)

    def _on_load(self, event) -> None:
        from cameras.limits import read_json

        p = self.user_path(Path(str(self.gui_path_file.value).strip()))
        self.load_path_data(read_json(p, "camera path"), str(p))
        self.say(f"loaded {len(self.keys)} keyframes from {p}", event)

    def _on_upload(self, event) -> None:
        f = self.gui_upload.value
        self.load_upload(f.name, f.content, event)

    def load_upload(self, filename: str, content: bytes, event=None) -> None:
        """Open an uploaded camera_path.json in the editor (ValueError naming it when it is not one)."""
        from cameras.limits import parse_json_bytes

        name = f"upload {filename!r}"
        self.load_path_data(parse_json_bytes(content, name, "camera path"), name)
        self.say(f"loaded {len(self.keys)} keyframes from {name}", event)

    def _on_preview(self, event) -> None:
        client = self._client(event)
        w, h = self.path_size()
        from .keyframes import dense_path

        cams = dense_path(self.keys, w, h, float(self.gui_fps.value), float(self.gui_seconds.value),
                          bool(self.gui_loop.value))
        fps = float(self.gui_fps.value)

        def play():
            try:
                run()
            except Exception as e:  # noqa: BLE001 - the preview stops and says why
                self.say(f"**error:** preview stopped: {type(e).__name__}: {e}", error=True)

        def run():
            for i in range(len(cams)):
                t0 = time.perf_counter()
                c2w = _c2w(cams.world_to_camera[i])
                fov = 2 * math.atan(h / (2 * float(cams.K[i, 1, 1])))
                with client.atomic():
                    client.camera.wxyz = _wxyz_of(c2w[:3, :3])
                    client.camera.position = c2w[:3, 3]
                    client.camera.fov = fov
                self.set_time(float(cams.times[i]))
                self._stop.wait(max(0.0, 1 / fps - (time.perf_counter() - t0)))
                if self._stop.is_set():
                    return
        threading.Thread(target=play, daemon=True).start()

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._stop.set()
        self._player.join(timeout=2)
        with contextlib.redirect_stdout(io.StringIO()):
            self.server.stop()

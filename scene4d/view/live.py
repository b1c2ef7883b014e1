"""``--view`` for reconstruct and generate: the scene being fitted, served by the viewer and
refreshed every N steps (a training-loop ``on_step`` hook)."""

from __future__ import annotations

import copy
import sys
from typing import Optional

import torch

from .server import Viewer, check_port


class LiveView:
    """Call it as the fit loop's ``on_step``; the viewer starts at the first step and shows a
    detached copy of the scene (so the browser never reads tensors the optimiser is writing),
    replaced every ``every`` steps. ``check_port`` runs here, before any training."""

    def __init__(self, every: int = 100, *, host: str = "127.0.0.1", port: int = 8080, train_cameras=None,
                 test_cameras=None, up: str = "+z", background=(1.0, 1.0, 1.0), total: Optional[int] = None):
        if every < 1:
            raise ValueError(f"--view-every must be at least 1, got {every}")
        check_port(host, port)
        self.every, self.host, self.port, self.total = int(every), host, port, total
        self.kw = dict(train_cameras=train_cameras, test_cameras=test_cameras, up=up, background=background)
        self.viewer: Optional[Viewer] = None
        self.updates = 0
        self.failed = False

    def snapshot(self, scene):
        with torch.no_grad():
            snap = copy.deepcopy(scene)
        for p in snap.parameters():
            p.grad = None
            p.requires_grad_(False)
        return snap.eval()

    def __call__(self, step: int, scene, terms=None, report=None) -> None:
        if self.viewer is not None and step % self.every and step != self.total:
            return
        if self.failed:
            return
        try:
            snap = self.snapshot(scene)
            if self.viewer is None:
                self.viewer = Viewer(snap, host=self.host, port=self.port, title="scene4d (fitting)", **self.kw)
                print(f"viewer: {self.viewer.url} shows the scene being fitted, refreshed every {self.every} steps",
                      file=sys.stderr)
            else:
                self.viewer.set_scene(snap)
        except Exception as e:  # noqa: BLE001 - the viewer is a window on the run, never its end
            self.failed = True
            print(f"viewer: stopped ({type(e).__name__}: {e}); the run goes on", file=sys.stderr)
            self.close()
            return
        self.updates += 1
        of = f" of {self.total}" if self.total else ""
        self.viewer.gui_stats.content = f"fitting: step {step}{of}; " + self.viewer.gui_stats.content

    def close(self) -> None:
        if self.viewer is not None:
            try:
                self.viewer.close()
            finally:
                self.viewer = None

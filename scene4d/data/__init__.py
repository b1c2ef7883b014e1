"""Captures of dynamic scenes: readers for D-NeRF and nerfstudio folders, and a procedural one.

    from scene4d.data import load_capture
    cap = load_capture("data/dnerf/jumpingjacks", downscale=2)
    cap.train.images    (C, H, W, 3) float32, composited over cap.background
    cap.train.alphas    (C, H, W, 1) or None
    cap.train.cameras   cameras.Cameras with times (C,) in [0, 1]
    centre, radius = cap.bounds()

``scene4d.data.synthetic.make_dnerf_capture`` writes a D-NeRF-format capture of a scene with known
motion (``scene_at(t)`` gives its ground truth), for tests and demos.
"""

from .capture import HOLDOUT_EVERY, Capture, CaptureError, CaptureSplit, load_capture
from .dnerf import load_dnerf
from .nerfstudio import load_nerfstudio

__all__ = [
    "Capture", "CaptureError", "CaptureSplit", "HOLDOUT_EVERY", "load_capture", "load_dnerf", "load_nerfstudio",
]

"""``scene4d view``: a 4D scene in the browser (viser), with a time slider, the capture's cameras,
a render panel through our rasterizer and a camera-path editor."""

from .keyframes import Keyframe, cameras_of, dense_path, keyframe, keyframes_of, load_path, path_document
from .live import LiveView
from .server import Viewer, ViewerError, check_port, free_port
from .splats import SceneSplats, SplatArrays, splat_arrays

__all__ = ["Keyframe", "LiveView", "SceneSplats", "SplatArrays", "Viewer", "ViewerError", "cameras_of", "check_port", "dense_path",
           "free_port", "keyframe", "keyframes_of", "load_path", "path_document", "splat_arrays"]

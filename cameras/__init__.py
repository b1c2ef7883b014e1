"""scene4d cameras: pure geometry, no learning, no rendering.

Import direction: ``cameras`` <- ``renderers`` <- ``scene4d`` -> ``diffusion_prior``.
This package imports none of the others.
"""

from .camera import CameraError, Cameras, intrinsics_from_fov, look_at, rigid_inverse
from .conventions import (
    K_to_fov,
    colmap_qvec_tvec_to_opencv_w2c,
    intrinsics_to_K,
    nerfstudio_c2w_to_opencv_w2c,
    opencv_w2c_to_colmap_qvec_tvec,
    opencv_w2c_to_nerfstudio_c2w,
    opencv_w2c_to_opengl_c2w,
    opengl_c2w_to_opencv_w2c,
    quat_wxyz_to_rotmat,
    rotmat_to_quat_wxyz,
)
from .capture_paths import (
    CaptureRig,
    SeenRegion,
    capture_rig,
    input_arc,
    input_spiral,
    tracking_spiral,
    llff_focus_depth,
    seen_region,
    stabilized,
)
from .io import camera_path_document, parse_camera_path, read_camera_path, read_keyframes, write_camera_path
from .paths import (
    TimeSchedule,
    dolly_zoom,
    interpolate_keyframes,
    orbit,
    parse_time_schedule,
    schedule_times,
    spiral,
)

__all__ = [
    # camera
    "CameraError",
    "Cameras",
    "intrinsics_from_fov",
    "look_at",
    "rigid_inverse",
    # conventions
    "K_to_fov",
    "colmap_qvec_tvec_to_opencv_w2c",
    "intrinsics_to_K",
    "nerfstudio_c2w_to_opencv_w2c",
    "opencv_w2c_to_colmap_qvec_tvec",
    "opencv_w2c_to_nerfstudio_c2w",
    "opencv_w2c_to_opengl_c2w",
    "opengl_c2w_to_opencv_w2c",
    "quat_wxyz_to_rotmat",
    "rotmat_to_quat_wxyz",
    # paths
    "TimeSchedule",
    "dolly_zoom",
    "interpolate_keyframes",
    "orbit",
    "parse_time_schedule",
    "schedule_times",
    "spiral",
    # paths from a capture's input cameras
    "CaptureRig",
    "SeenRegion",
    "capture_rig",
    "input_arc",
    "input_spiral",
    "tracking_spiral",
    "llff_focus_depth",
    "seen_region",
    "stabilized",
    # io
    "read_camera_path",
    "read_keyframes",
    "parse_camera_path",
    "camera_path_document",
    "write_camera_path",
]

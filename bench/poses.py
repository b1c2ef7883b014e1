"""Camera-pose step benchmark: time per step and accuracy against the truth on a generated clip.

    python bench/poses.py                                  # 36 frames, 320x240, moving objects on 10%
    python bench/poses.py --frames 60 --size 640 --dynamic 0.33 --out /tmp/bench_poses

The clip is a handheld walk through a textured room with moving objects
(:mod:`scene4d.data.handheld`). Accuracy is up to a similarity: RMS camera-centre error as a
percentage of the path length, largest rotation error in degrees (see ``pose_errors``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scene4d.data.handheld import make_handheld_clip, pose_errors  # noqa: E402
from scene4d.sfm import PosesError, poses_command  # noqa: E402

STEPS = ("decode", "features", "matching", "mapping", "dynamic", "undistort", "write", "total")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=36, help="frames in the clip (all are used)")
    ap.add_argument("--size", type=int, default=320, help="width of the clip; height is 3/4 of it")
    ap.add_argument("--dynamic", type=float, default=0.1, help="fraction of the frame covered by moving objects")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=-1, help="pycolmap threads (-1: all cores)")
    ap.add_argument("--camera-model", default="SIMPLE_RADIAL")
    ap.add_argument("--no-dynamic-pass", action="store_true", help="skip the moving-object pass (for comparison)")
    ap.add_argument("--out", type=Path, default=None, help="keep the clip and the poses here (default: a temp folder)")
    args = ap.parse_args(argv)

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory()
        out = Path(tmp.name)
    else:
        out = args.out
    try:
        w, h = args.size, (args.size * 3) // 4
        t0 = time.perf_counter()
        truth = make_handheld_clip(out / "clip.mp4", size=(w, h), n_frames=args.frames,
                                   dynamic_fraction=args.dynamic, seed=args.seed)
        t_gen = time.perf_counter() - t0
        print(f"clip: {args.frames} frames {w}x{h}, moving objects cover {truth.dynamic_coverage.mean():.0%} "
              f"of the frame, path length {truth.path_length:.2f} (generated in {t_gen:.1f}s)")
        try:
            res = poses_command(out / "clip.mp4", out / "poses", max_frames=args.frames, size=max(w, h),
                                camera_model=args.camera_model, dynamic_pass=not args.no_dynamic_pass,
                                num_threads=args.threads, seed=args.seed, quiet=True)
        except PosesError as e:
            print(f"poses failed: {e}")
            return 1
        print(f"\n{'step':<10} {'seconds':>8}")
        for k in STEPS:
            if k in res.timings:
                print(f"{k:<10} {res.timings[k]:>8.2f}")
        err = pose_errors(res.world_to_camera, truth.world_to_camera[res.frame_indices])
        f_true = truth.K[0, 0]  # undistortion crops a pixel or so but keeps the focal length
        print(f"\nregistered {res.n_registered} of {res.n_frames} frames, reprojection error "
              f"{res.reprojection_error:.2f} px, {len(res.points_xyz)} points")
        print(f"camera centres: RMS {100 * err['rms_centers']:.2f}% of the path (Umeyama on centres), "
              f"{100 * err['rms']:.2f}% (rotation-aligned)")
        print(f"rotations: max {err['rot_max']:.2f} deg, mean {err['rot_mean']:.2f} deg (rotation-aligned); "
              f"max {err['rot_max_centers']:.2f} deg (aligned on centres)")
        print(f"focal length: {res.K[0, 0]:.1f} px vs true {f_true:.1f} ({100 * (res.K[0, 0] / f_true - 1):+.1f}%)")
        if res.dynamic.get("flagged_features"):
            print(f"moving objects: {res.dynamic['flagged_features']} features flagged, "
                  f"{res.dynamic['dropped_matches']} matches dropped, regions {res.dynamic['mean_area']:.1%} of a frame")
        if args.out is not None:
            print(f"\nwrote {out / 'poses' / 'transforms.json'}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

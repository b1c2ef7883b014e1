"""Reliability (issue 20): no lost work under kills, divergence, concurrent runs and failed writes.
One test per defect found against the old main; each fails there and passes now:

- a run that goes non-finite stops, names the bad term and keeps the last good checkpoint (it used
  to exit 0 with an all-NaN scene and delete the checkpoint);
- SIGTERM and SIGHUP checkpoint and stop like Ctrl-C (they used to lose everything);
- every run checkpoints early (step 50), not only every ``checkpoint_every`` steps;
- an output folder is locked: a second run stops at once naming the holder; a dead holder's lock
  is taken over;
- checkpoints are written manifest-last: a kill between the tensors and the JSON resumes the
  previous checkpoint consistently, and a damaged tensors file is refused;
- a failed final write keeps the trained state, and ``--resume`` writes it without training;
- temporaries left by kills are cleaned;
- ``render`` streams frames to the encoder and fails on an unwritable output before rendering.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from scene4d.data import load_capture
from scene4d.data.synthetic import make_dnerf_capture
from scene4d.deformation import MotionNodesConfig
from scene4d.field import Scene4D, init_params
from scene4d.train import (CheckpointError, FitConfig, FitDiverged, OutputLock, StepPlan, fit, read_checkpoint,
                           tensors_path)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return load_capture(make_dnerf_capture(tmp_path_factory.mktemp("cap") / "capture", n_train=2, n_test=1, n_val=0,
                                           size=16))


class Photo:
    """The smallest objective: one camera at t = 0.5 against its image; ``poison_at``: from that
    step on the loss is NaN (what a too-high learning rate ends in)."""

    label = "photo-fit"
    generator = None

    def __init__(self, capture, poison_at=None):
        self.img, self.cams = capture.train.images, capture.train.cameras
        self.poison_at = poison_at
        self.weights = {"photo": 1.0, "time_smoothness": 0.0, "arap": 0.0}

    def plan(self, step):
        return StepPlan(deform=True, train_canonical=True, train_deformation=True, sh_degree=0)

    def losses(self, ctx):
        out = ctx.render(0.5, self.cams[0], background=torch.ones(3))
        loss = (out.rgb - self.img[:1]).square().mean()
        if self.poison_at is not None and ctx.step >= self.poison_at:
            loss = loss * float("nan")
        return {"photo": loss}

    def state_tensors(self):
        return {}

    def load_state_tensors(self, tensors):
        pass

    def progress_info(self):
        return {}


def scene():
    g = torch.Generator().manual_seed(0)
    s = Scene4D(init_params(torch.rand(80, 3, generator=g) - 0.5, torch.rand(80, 3, generator=g), 0, opacity=0.5),
                MotionNodesConfig(nodes=4, time_resolution=3), sh_degree=0)
    s.initialize_fields()
    return s


def run(capture, out, iters=40, every=10, **kw):
    poison = kw.pop("poison_at", None)
    return fit(scene(), Photo(capture, poison), out, FitConfig(iters=iters, checkpoint_every=every, densify=None),
               progress=False, **kw)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(capture, tmp_path):
    with pytest.raises(FitDiverged) as e:
        run(capture, tmp_path / "s", poison_at=23)
    msg = str(e.value)
    assert "photo-fit diverged at step 23: the loss is nan (photo = nan);" in msg
    assert "last good checkpoint (step 20)" in msg and "lower it" in msg and "\n" not in msg
    assert read_checkpoint(tmp_path / "s")["step"] == 20
    t = load_file(str(tensors_path(tmp_path / "s")))
    assert all(bool(torch.isfinite(v).all()) for v in t.values() if v.is_floating_point())
    assert not (tmp_path / "s" / "scene.json").exists()
    # the finished-scene write refuses a non-finite state too (never an all-NaN scene)
    with pytest.raises(FitDiverged, match="non-finite values in canonical"):
        s = scene()
        with torch.no_grad():
            s.params["means"][0, 0] = float("nan")
        fit(s, Photo(capture), tmp_path / "n", FitConfig(iters=3, checkpoint_every=1000, densify=None), progress=False)
    assert not (tmp_path / "n" / "scene.json").exists()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_checkpoint_and_stop(capture, tmp_path, sig):
    def on_step(step, *_):
        if step == 7:
            os.kill(os.getpid(), getattr(signal, sig))

    with pytest.raises(KeyboardInterrupt, match="stopped at step 7/40"):
        run(capture, tmp_path / "s", on_step=on_step)
    assert read_checkpoint(tmp_path / "s")["step"] == 7
    assert signal.getsignal(getattr(signal, sig)) is not None  # the old handler is back
    assert run(capture, tmp_path / "s", resume=True).steps == 40
    assert (tmp_path / "s" / "scene.json").is_file()


def test_every_run_checkpoints_early(capture, tmp_path):
    def crash(step, *_):
        if step == 60:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        run(capture, tmp_path / "s", iters=80, every=1000, on_step=crash)
    assert read_checkpoint(tmp_path / "s")["step"] == 50  # not lost: checkpoint_every alone would give none
    assert not (tmp_path / "s" / ".scene4d.lock").exists()  # the lock goes with the run
    assert run(capture, tmp_path / "s", iters=80, every=1000, resume=True).steps == 80


def test_output_folder_is_locked(capture, tmp_path):
    out = tmp_path / "s"
    holder = OutputLock(out, command="scene4d reconstruct other.mp4").acquire()
    lock = json.loads((out / ".scene4d.lock").read_text())
    lock["pid"] = os.getppid()  # a live process that is not this one
    (out / ".scene4d.lock").write_text(json.dumps(lock))
    with pytest.raises(FileExistsError) as e:
        run(capture, out)
    assert f"in use by process {os.getppid()}" in str(e.value) and "scene4d reconstruct other.mp4" in str(e.value)
    assert not (out / "checkpoints").exists()
    # a lock whose process is gone is taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock["pid"] = dead.pid
    (out / ".scene4d.lock").write_text(json.dumps(lock))
    assert run(capture, out, iters=12).steps == 12
    assert (out / "scene.json").is_file() and not (out / ".scene4d.lock").exists()
    holder.held = False


def test_checkpoint_is_one_unit_written_manifest_last(capture, tmp_path, monkeypatch):
    import scene4d.train.state as st

    out = tmp_path / "s"
    run(capture, out, stop_at=20)
    real = st.atomic_write_json
    calls = {"n": 0}

    def killed_before_manifest(path, obj):  # the tensors of step 30 are written, then the process dies
        calls["n"] += 1
        raise SystemExit("killed")

    monkeypatch.setattr(st, "atomic_write_json", killed_before_manifest)
    with pytest.raises(SystemExit):
        run(capture, out, resume=True)
    monkeypatch.setattr(st, "atomic_write_json", real)
    assert calls["n"] == 1 and (out / "checkpoints" / "step-0000030.safetensors").is_file()
    assert read_checkpoint(out)["step"] == 20 and tensors_path(out).name == "step-0000020.safetensors"
    # resuming takes step 20 with its own tensors, and clears the orphan of step 30
    assert not (out / ".scene4d.lock").exists()  # released on the way out (a real kill leaves it: see the lock test)
    res = run(capture, out, resume=True, stop_at=25)
    assert res.steps == 25 and not (out / "checkpoints" / "step-0000030.safetensors").exists()
    # a tensors file that does not match its manifest is refused, not half-loaded
    p = tensors_path(out)
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match .*latest.json.*refusing to resume"):
        run(capture, out, resume=True)


def test_failed_final_write_keeps_the_trained_state(capture, tmp_path, monkeypatch):
    import errno

    import scene4d.train.loop as loop

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "s"
    monkeypatch.setattr(loop, "save_scene", full_disk)
    with pytest.raises(CheckpointError, match=r"writing the scene failed \(No space left on device\); the trained "
                                              r"state is kept in .*\(step 40\)"):
        run(capture, out)
    monkeypatch.undo()
    assert read_checkpoint(out)["step"] == 40 and not (out / "scene.json").exists()
    calls = []
    res = run(capture, out, resume=True, on_step=lambda *a: calls.append(a))
    assert res.steps == 40 and not calls and (out / "scene.json").is_file()  # written, no step trained again


def test_stale_temporaries_are_cleaned(capture, tmp_path):
    out = tmp_path / "s"
    run(capture, out, stop_at=10)
    junk = [out / "checkpoints" / ".latest.json.x1.tmp", out / "checkpoints" / ".step-0000020.safetensors.x2.tmp",
            out / ".metrics.json.x3.tmp"]
    for j in junk:
        j.write_bytes(b"left by a kill")
    run(capture, out, resume=True)
    assert not any(j.exists() for j in junk)


def test_free_space_is_checked_before_training(capture, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    du = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: du(10**9, 10**9, 1000))
    with pytest.raises(CheckpointError, match="MB free on its disk, a checkpoint of this run needs about"):
        run(capture, tmp_path / "s")
    assert not (tmp_path / "s" / "checkpoints").exists()


# --------------------------------------------------------------------------- render
def test_render_streams_frames_to_the_encoder(capture, tmp_path, monkeypatch):
    """Each frame is encoded before the next is rendered (memory does not grow with the frame
    count), and an output that cannot be written fails before any frame is rendered."""
    import scene4d.render as R
    from scene4d.media import VideoWriter, read_video

    s = scene()
    cams = capture.train.cameras[[0, 1, 0, 1, 0]].with_times(torch.linspace(0, 1, 5))
    events = []
    real_raster, real_write = R.rasterize, VideoWriter.write
    monkeypatch.setattr(R, "rasterize", lambda *a, **k: (events.append("r"), real_raster(*a, **k))[1])
    monkeypatch.setattr(VideoWriter, "write", lambda self, f: (events.append("w"), real_write(self, f))[1])
    res = R.render_video(s, cams, tmp_path / "v.mp4", progress=False, alpha=True)
    assert "".join(events) == "rww" * 5  # rgb and alpha of a frame are written before the next renders
    assert read_video(res.video).shape[0] == 5 and read_video(res.alpha_video).shape[0] == 5
    events.clear()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        R.render_video(s, cams, tmp_path / "file" / "v.mp4", progress=False)
    assert events == []  # nothing rendered for nothing


# --------------------------------------------------------------------------- hostile files and flags
def _scene_folder(tmp_path):
    from scene4d.io import save_scene

    return save_scene(tmp_path / "scene", scene())


def test_tiny_hostile_scene_json_allocates_nothing(tmp_path, capsys):
    """A hand-edited scene.json asking for 10^9 nodes, nested 100k deep, not UTF-8, or with NaN:
    one line each, before any field is built."""
    from scene4d.cli import main
    from scene4d.io import SceneFolderError, load_scene

    folder = _scene_folder(tmp_path)
    good = (folder / "scene.json").read_text()
    meta = json.loads(good)
    meta["entities"][0]["deformation"]["nodes"] = 10**9
    (folder / "scene.json").write_text(json.dumps(meta))
    with pytest.raises(SceneFolderError, match=r"implies deformation.0.rotvecs of shape \(1000000000, 3, 3\)"):
        load_scene(folder)
    for text, msg in [("[" * 100_000 + "]" * 100_000, "nested too deeply"), (b"\xff\xfe{}", "not UTF-8"),
                      (good.replace('"version": 2', '"version": NaN'), "NaN is not a JSON number")]:
        p = folder / "scene.json"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        assert main(["render", str(folder), "--frames", "1", "--out", str(tmp_path / "v.mp4")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
    # weights of another shape than scene.json says
    (folder / "scene.json").write_text(good)
    from safetensors.torch import load_file, save_file

    w = load_file(str(folder / "weights.safetensors"))
    w["deformation.0.translations"] = torch.zeros(5, 3, 3)
    save_file(w, str(folder / "weights.safetensors"))
    with pytest.raises(SceneFolderError, match="do not belong together"):
        load_scene(folder)
    # a NaN scene is named as such (it used to surface as "orbit: center has non-finite values")
    w = load_file(str(folder / "weights.safetensors"))
    w["deformation.0.translations"] = torch.zeros(4, 3, 3)
    w["canonical.means"][:7] = float("nan")
    save_file(w, str(folder / "weights.safetensors"))
    assert main(["render", str(folder), "--frames", "1", "--out", str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "canonical.means holds NaN or infinite values (7 of 80 Gaussians)" in err and len(err.splitlines()) == 1


def test_camera_path_and_flag_limits(tmp_path, capsys):
    from scene4d.cli import main

    folder = _scene_folder(tmp_path)
    path = {"camera_type": "perspective", "render_height": 10**6, "render_width": 640, "fps": 30, "seconds": 1,
            "camera_path": [{"camera_to_world": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 0, 0, 1], "fov": 50}]}
    (tmp_path / "p.json").write_text(json.dumps(path))
    cases = [(["--path", str(tmp_path / "p.json")], "render_height must be a positive integer up to 16384"),
             (["--fps", "nan"], "--fps must be a frame rate in (0, 1000]"),
             (["--fps", "1e300"], "--fps must be a frame rate"),
             (["--fov", "0"], "--fov must be a vertical field of view"),
             (["--size", "100000x100000"], "at most 16384 pixels a side"),
             (["--frames", "10000000"], "--frames must be at most 100000")]
    path.update(render_height=480, keyframes=path.pop("camera_path") * 2, seconds=1e9)
    (tmp_path / "k.json").write_text(json.dumps(path))
    cases.append((["--path", str(tmp_path / "k.json")], "asks for more than 100000 frames"))
    for args, msg in cases:
        assert main(["render", str(folder), "--out", str(tmp_path / "v.mp4"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, (args, err)
    assert not (tmp_path / "v.mp4").exists()


def test_decompression_bomb_is_refused(tmp_path):
    """A small PNG that decodes to 144 M pixels is refused with one line, not decoded."""
    from PIL import Image

    from scene4d.data import CaptureError
    from scene4d.data.capture import read_image

    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(CaptureError, match="claims more than .* pixels.*decompression bomb"):
        read_image(tmp_path / "bomb.png", "frames[0].file_path")


def test_zero_field_of_view_is_one_line(tmp_path):
    from scene4d.data import CaptureError, load_capture
    from scene4d.data.synthetic import make_dnerf_capture

    cap = make_dnerf_capture(tmp_path / "cap", n_train=2, n_test=1, n_val=0, size=16)
    for name in ("transforms_train.json", "transforms_test.json"):
        doc = json.loads((cap / name).read_text())
        doc["camera_angle_x"] = 0
        (cap / name).write_text(json.dumps(doc))
    with pytest.raises(CaptureError, match=r"camera_angle_x = 0 must lie in \(0, pi\)"):
        load_capture(cap)


def test_resume_refuses_another_downscale(tmp_path):
    """--resume with another --downscale used to continue silently on images of another size."""
    from scene4d.io import SceneFolderError
    from scene4d.reconstruct import TrainConfig, train

    cap_dir = make_dnerf_capture(tmp_path / "cap", n_train=2, n_test=1, n_val=0, size=16)
    cfg = lambda: TrainConfig(iters=20, warmup_iters=2, init_points=100, checkpoint_every=1000,  # noqa: E731
                              deformation=MotionNodesConfig(nodes=4, time_resolution=3), densify=None)
    train(load_capture(cap_dir), tmp_path / "s", cfg(), progress=False, evaluate=False, stop_at=5)
    with pytest.raises(SceneFolderError, match="trained on 16x16 images, this capture loads as 8x8"):
        train(load_capture(cap_dir, downscale=2), tmp_path / "s", cfg(), progress=False, evaluate=False, resume=True)
    assert train(load_capture(cap_dir), tmp_path / "s", cfg(), progress=False, evaluate=False, resume=True).steps == 20


def test_reconstruct_flag_limits(tmp_path, capsys):
    from scene4d.cli import main

    cap = make_dnerf_capture(tmp_path / "cap", n_train=2, n_test=1, n_val=0, size=16)
    for args, msg in [(["--size", "100000"], "--size must be 16..16384"), (["--max-frames", "10000000"], "--max-frames"),
                      (["--iters", "100000000000"], "more steps than any preset needs")]:
        assert main(["reconstruct", str(cap), "--out", str(tmp_path / "s"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
    assert not (tmp_path / "s").exists()


def test_single_view_capture_does_not_call_its_training_view_a_test(tmp_path, capsys):
    from scene4d.cli import main

    cap = make_dnerf_capture(tmp_path / "cap", n_train=2, n_test=1, n_val=0, size=16)
    (cap / "transforms_test.json").unlink()
    doc = json.loads((cap / "transforms_train.json").read_text())
    doc["frames"] = doc["frames"][:1]
    (cap / "transforms_train.json").write_text(json.dumps(doc))
    assert main(["reconstruct", str(cap), "--out", str(tmp_path / "s"), "--iters", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "training-view (the capture has a single view, so nothing is held out" in out and "\ntest PSNR" not in out
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["held_out"] is False


def test_the_camera_step_waits_for_the_lock_too(tmp_path, capsys):
    """A second `reconstruct clip.mp4` into a folder in use stops before the camera step writes
    OUT/poses, not after its minutes."""
    from scene4d.cli import main

    out = tmp_path / "s"
    holder = OutputLock(out, command="scene4d reconstruct other.mp4").acquire()
    lock = json.loads((out / ".scene4d.lock").read_text())
    lock["pid"] = os.getppid()
    (out / ".scene4d.lock").write_text(json.dumps(lock))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)  # never opened: the lock is taken first
    assert main(["reconstruct", str(clip), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"in use by process {os.getppid()}" in err and err.count("\n") == 1
    assert not (out / "poses").exists()
    holder.held = False


def test_absurd_intrinsics_and_far_scenes_are_warned_about(tmp_path):
    from scene4d.data import load_capture
    from scene4d.data.synthetic import make_dnerf_capture

    src = make_dnerf_capture(tmp_path / "cap", size=16, n_train=6, n_test=2, n_val=0)
    assert load_capture(src).warnings() == []
    for split in ("train", "test"):
        p = src / f"transforms_{split}.json"
        d = json.loads(p.read_text())
        d["camera_angle_x"] = 0.001  # degrees written where radians belong, twice over
        p.write_text(json.dumps(d))
    (w,) = load_capture(src).warnings()
    assert "field of view is 0.0573" in w and "radians" in w
    for split in ("train", "test"):
        p = src / f"transforms_{split}.json"
        d = json.loads(p.read_text())
        d["camera_angle_x"] = 0.69
        for f in d["frames"]:
            f["transform_matrix"][0][3] += 1e7
        p.write_text(json.dumps(d))
    (w,) = load_capture(src).warnings()
    assert "1e+07 units from the origin" in w and "Recentre" in w


def _read_only_after(monkeypatch, out, first_bad_step, calls):
    """From checkpoint step ``first_bad_step`` on, every write under ``out`` fails as on a disk
    remounted read-only (checkpoints and the scene); writes elsewhere work."""
    import errno

    import scene4d.train.loop as loop
    from scene4d.train.state import TrainState

    save, save_scene = TrainState.save, loop.save_scene

    def ro(path):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system")

    def ckpt(self, d, *a, **k):
        calls.append(self.step)
        if self.step >= first_bad_step:
            ro(d)
        return save(self, d, *a, **k)

    def scene_w(d, *a, **k):
        ro(d)
        return save_scene(d, *a, **k)

    monkeypatch.setattr(TrainState, "save", ckpt)
    monkeypatch.setattr(loop, "save_scene", scene_w)


def test_a_disk_that_turns_read_only_mid_run_loses_nothing(capture, tmp_path, monkeypatch, capsys):
    """The output's disk fails after the first checkpoint: training goes on (one warning, not one
    per checkpoint), and the finished scene, which can be written neither to --out nor as a checkpoint
    there, is written to a rescue folder that every command reads; the error names it."""
    from scene4d.io import load_scene

    import errno
    from pathlib import Path

    out, rescue = tmp_path / "s", tmp_path / "rescue"
    monkeypatch.setenv("SCENE4D_RESCUE_DIR", str(rescue))
    calls = []
    _read_only_after(monkeypatch, out, 20, calls)
    unlink = Path.unlink

    def no_unlink_on_out(self, *a, **k):  # the lock file cannot be removed either on that disk
        if self.name == ".scene4d.lock":
            raise OSError(errno.EROFS, "Read-only file system")
        return unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", no_unlink_on_out)
    with pytest.raises(CheckpointError) as e:  # not the lock's OSError from releasing it
        run(capture, out, iters=40, every=10)
    assert calls == [10, 20, 30, 40]  # training went on past the failed checkpoint at step 20
    err = capsys.readouterr().err
    assert err.count("could not be written") == 1 and "Read-only file system" in err and "step 20" in err
    msg = str(e.value)
    assert "no checkpoint of it is there" in msg and "written to" in msg
    (where,) = rescue.iterdir()
    assert str(where) in msg
    # the rescued scene is the trained one: the last good checkpoint on the failed disk is step 10's
    assert read_checkpoint(out)["step"] == 10
    sc, _, _ = load_scene(where)
    trained = load_file(str(tensors_path(out)))
    from scene4d.io import scene_tensors

    rescued = scene_tensors(sc)
    shared = [k for k in rescued if k in trained]
    assert shared and any(not torch.equal(rescued[k], trained[k]) for k in shared), "rescued the step-10 state"
    assert json.loads((where / "metrics.json").read_text())["steps"] == 40


def test_a_stop_on_a_read_only_disk_rescues_the_checkpoint(capture, tmp_path, monkeypatch):
    """Stopped early (here by ``stop_at``; Ctrl-C and SIGTERM take the same way) while the disk is
    read-only: the checkpoint goes to the rescue folder, and copied back it resumes the run."""
    out, rescue = tmp_path / "s", tmp_path / "rescue"
    monkeypatch.setenv("SCENE4D_RESCUE_DIR", str(rescue))
    _read_only_after(monkeypatch, out, 20, [])
    with pytest.raises(CheckpointError, match=r"stopped at step 25/40, but the checkpoint could not be written"):
        run(capture, out, iters=40, every=10, stop_at=25)
    monkeypatch.undo()
    (where,) = rescue.iterdir()
    assert read_checkpoint(where)["step"] == 25
    import shutil

    shutil.rmtree(out / "checkpoints")
    shutil.copytree(where / "checkpoints", out / "checkpoints")
    calls = []
    res = run(capture, out, iters=40, every=10, resume=True, on_step=lambda step, *a: calls.append(step))
    assert res.steps == 40 and calls[0] == 26 and (out / "scene.json").is_file()

"""The ``generate`` and ``prior`` commands (registered in :mod:`scene4d.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional


def generate(
    prompt: str,
    /,
    out: Path = Path("generated"),
    preset: str = "toy",
    iters: Optional[int] = None,
    prior: str = "toy",
    video_prior: Optional[str] = None,
    image: Optional[Path] = None,
    negative: str = "",
    guidance: Optional[float] = None,
    seed: Optional[int] = None,
    frames: Optional[int] = None,
    size: Optional[int] = None,
    deformation: Optional[Literal["nodes", "hexplane", "mlp"]] = None,
    motion_strength: Optional[float] = None,
    entities: Optional[int] = None,
    preview_every: Optional[int] = None,
    resume: bool = False,
    device: str = "auto",
    threads: Optional[int] = None,
    allow_cpu: bool = False,
    view: bool = False,
    view_every: int = 50,
    port: int = 8080,
    host: str = "127.0.0.1",
) -> None:
    """Make a 4D scene from a prompt by score distillation (text-to-4D; image-to-4D with --image).

    Args:
        prompt: what to make. With the embedded toy prior (the default), a prompt of its small world:
            "a {colour} {shape} {motion}[ next to|on top of a {colour} {shape}[ {motion}]]" (scene4d prior
            info lists the words).
        out: the scene folder to write (then: scene4d render OUT, scene4d export OUT).
        preset: a generate preset in configs/generate (toy, analytic) or a
            preset file (.json).
        iters: total steps (split over the stages as the preset divides them).
        prior: image / multi-view prior: toy (embedded), toy:PATH, analytic:SCENE (targets rendered
            from a scene folder or .ply), analytic:toy (a toy prompt's own ground truth: the toy
            prior's ceiling; use --guidance 1), sd:PATH, mvdream:PATH (diffusers folders).
        video_prior: video prior: zeroscope:PATH, animatediff:SD_PATH,ADAPTER_PATH, svd:PATH; or
            time experts paired with the toy prior (video steps from their cameras): toy (the
            shipped two, azimuths 30 and 120, the default with the shipped toy prior), toy:DIR[,DIR2] (from `scene4d
            prior train-toy --video-camera`), none (the toy prior alone, its own video prior, as
            the analytic prior is).
        image: a reference image (image-to-4D): seen from the front camera at t = 0.
        negative: negative prompt.
        guidance: classifier-free guidance scale (diffusers' form).
        seed: random seed.
        frames: frames per video step.
        size: render size (pixels, square).
        deformation: the deformation field: nodes (motion nodes, default), hexplane or mlp.
        motion_strength: weight of the video prior (more motion).
        entities: characters: 1 keeps one field; default: as many as the prompt names (at most 2).
        preview_every: write a views x times preview grid every N steps (0: never).
        resume: continue the interrupted run in --out.
        device: auto (CUDA when available), cpu or cuda.
        threads: CPU threads for torch (default: with a neural prior, the cores idle when the run
            starts, at most 4; a run repeats bit for bit only with the same count, so pass it to
            compare runs; 1 when other jobs share a small machine).
        allow_cpu: run a real-size prior on the CPU anyway (days per run; see README).
        view: serve the scene being generated in the browser (as scene4d view), refreshed every
            --view-every steps.
        view_every: steps between the viewer's refreshes.
        port: the viewer's port (with --view).
        host: the viewer's address (with --view): 127.0.0.1, only this machine, unless you say.
    """

    from ..cli import UsageError, _at_least, _device
    from .config import load_generate_preset
    from .job import generate as run

    _at_least("--iters", iters, 1)
    _at_least("--threads", threads, 1)
    _at_least("--frames", frames, 2)
    _at_least("--size", size, 8)
    if preview_every is not None and preview_every < 0:
        raise UsageError(f"--preview-every must be 0 or more, got {preview_every}")
    cfg = load_generate_preset(preset, deformation)
    for name, value in (("iters", iters), ("seed", seed), ("frames", frames), ("size", size),
                        ("motion_strength", motion_strength), ("entities", entities), ("preview_every", preview_every),
                        ("threads", threads)):
        if value is not None:
            setattr(cfg, name, value)
    if guidance is not None:
        cfg.guidance = cfg.video_guidance = guidance
    if entities is not None and entities not in (1, 2):
        raise UsageError(f"--entities must be 1 or 2, got {entities}")
    dev = _device(device)  # threads: the job sets them (configure_cpu_threads on the CPU)
    _at_least("--view-every", view_every, 1)
    watch = None
    if view:
        from ..view import LiveView, ViewerError

        try:
            watch = LiveView(view_every, host=host, port=port, background=tuple(cfg.background), total=cfg.iters)
        except (ViewerError, ValueError) as e:
            raise UsageError(str(e)) from None
    try:
        res = run(prompt, out, cfg, prior=prior, video_prior=video_prior, negative=negative, image=image,
                  resume=resume, device=dev, allow_cpu=allow_cpu, command="scene4d " + " ".join(sys.argv[1:]),
                  watch=watch)
    except KeyboardInterrupt as e:
        print(f"scene4d generate: {e}", file=sys.stderr)
        raise SystemExit(130)
    finally:
        if watch is not None:
            watch.close()
    m = res.metrics
    print(f"scene written to {res.out} ({m.get('n_gaussians')} Gaussians, {res.scene.n_entities} "
          f"entit{'y' if res.scene.n_entities == 1 else 'ies'}, {res.seconds:.0f} s)")
    if "psnr" in m:
        acc = ", ".join(f"{k[4:]} {v:.2f}" for k, v in m.items() if k.startswith("acc_"))
        print(f"against the ground truth at novel views and times: PSNR {m['psnr']} dB, SSIM {m['ssim']} "
              f"(deformation off: {m.get('psnr_deformation_off')} dB)" + (f"; attributes: {acc}" if acc else ""))
    if res.video is not None:
        print(f"video: {res.video}; previews: {res.out / 'previews'}")


def prior_sample(
    prompt: str,
    /,
    out: Path = Path("samples.png"),
    prior: str = "toy",
    video_prior: Optional[str] = None,
    views: int = 4,
    times: int = 4,
    steps: int = 50,
    guidance: float = 3.0,
    seed: int = 0,
    size: int = 64,
    expert_from: float = 0.6,
) -> None:
    """Samples of a prior for a prompt: a grid of views (rows) x times (columns), what the prior
    believes the prompt looks like, before any scene is fitted.

    Args:
        prompt: the prompt.
        out: the PNG grid to write.
        prior: toy (embedded) or toy:PATH.
        video_prior: time experts paired with the prior: toy (the shipped two, the default with
            the shipped prior), toy:DIR[,DIR2] (from train-toy --video-camera) or none. With
            experts each row is a video (one camera, --times frames), the first rows at the
            experts' cameras (90 degrees apart), where they know time.
        views: cameras (rows), 360/views degrees apart.
        times: scene times (columns), from 0 to 1.
        steps: sampling steps (DDIM with eta = 1: ancestral, the clean samples).
        guidance: classifier-free guidance scale.
        seed: random seed.
        size: pixels per cell in the grid (samples are upscaled to it).
        expert_from: with experts, where an expert's rows pass to the prior, as a fraction of the
            noise schedule (the expert's own trained t_from, 0.8, when lower): the experts draw
            the detail that shows time (a spin's stripes) a little below where they were trained.
    """
    import torch

    from ..cli import UsageError, _at_least
    from ..media import write_image
    from .errors import GenerateError
    from .objective import orbit_camera
    from diffusion_prior.experts import expert_cameras

    from .priors import default_experts, load_toy_pair, parse_spec, shipped_experts
    from .toyworld import CAMERA_DISTANCE, FOV_DEG, ToyPromptError, parse_prompt

    _at_least("--views", views, 1)
    _at_least("--times", times, 1)
    _at_least("--steps", steps, 1)
    if not 0.0 <= expert_from <= 1.0:
        raise UsageError(f"--expert-from is a fraction of the noise schedule (0 to 1), got {expert_from}")
    kind, path = parse_spec(prior, "--prior", ("toy",))
    expert = default_experts(path)
    if video_prior:
        vkind, expert = parse_spec(video_prior, "--video-prior", ("toy", "none"))
        if vkind == "toy" and expert is None:
            expert = shipped_experts()
            if expert is None:
                raise UsageError("--video-prior toy: no time expert is installed; pass toy:DIR[,DIR2] or none")
    try:
        parse_prompt(prompt)
    except ToyPromptError as e:
        raise GenerateError(str(e)) from None
    p = load_toy_pair(path, expert)
    G = p.group_size
    az0, el = 20.0, 15.0
    if expert is not None:  # video rows: one group per camera, its times in order
        if times != G:
            raise UsageError(f"--times must be {G} with a time expert (each row is one video group of {G} frames), "
                             "or pass --video-prior none")
        first = expert_cameras(p)[0]
        az0, el = float(first["azimuth"]), float(first["elevation"])
    elif views % G and G % views:
        raise UsageError(f"--views must divide or be a multiple of the prior's group of {G}")
    cams = torch.stack([torch.stack([orbit_camera(360.0 * i / views + az0, el, CAMERA_DISTANCE, FOV_DEG,
                                                  p.native_size)[0] for i in range(views)])] * times, 1)
    tt = torch.tensor([j / max(times - 1, 1) for j in range(times)]).expand(views, times)  # (views, times)
    if expert is None:  # one group per time: the views of one moment
        cams, tt = cams.transpose(0, 1).reshape(-1, views, 4, 4), tt.T.reshape(-1, views)
    imgs = p.sample(prompt, cams, tt.contiguous(), steps=steps, guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(seed),
                    **({"expert_from": expert_from} if expert is not None else {}))
    imgs = torch.nn.functional.interpolate(imgs.flatten(0, 1), size=(size, size), mode="nearest")
    if expert is None:  # (times, views) -> rows = views
        imgs = imgs.reshape(times, views, 3, size, size).permute(1, 3, 0, 4, 2)
    else:
        imgs = imgs.reshape(views, times, 3, size, size).permute(0, 3, 1, 4, 2)
    imgs = imgs.reshape(views * size, times * size, 3)
    write_image(Path(out), imgs)
    print(f"wrote {out}: {views} views (rows) x {times} times (columns) of {prompt!r}")


def prior_train_toy(
    out: Path = Path("toy_prior"),
    steps: Optional[int] = None,
    batch: int = 32,
    resume: bool = False,
    workers: int = 0,
    device: str = "auto",
    threads: Optional[int] = None,
    seed: int = 0,
    checkpoint_every: int = 1000,
    lr: float = 3e-4,
    warmup: int = 500,
    chunk_groups: int = 64,
    initial_chunks: int = 8,
    steps_per_chunk: int = 8,
    buffer_chunks: int = 32,
    time_budget: Optional[float] = None,
    init: Optional[Path] = None,
    high_t_share: float = 0.0,
    high_t_from: float = 0.5,
    ema: float = 0.999,
    channels: str = "32,64,128",
    heads: int = 8,
    prediction_type: str = "epsilon",
    p_two_objects: float = 0.35,
    p_drop_camera: float = 0.1,
    video_camera: Optional[str] = None,
) -> None:
    """Train the embedded toy prior on the toy world (data rendered on the fly with fixed seeds).
    Hours on a 2-core CPU: it checkpoints every --checkpoint-every steps and on Ctrl-C/SIGTERM, and
    --resume continues bit for bit; OUT/prior is a usable prior folder after every checkpoint.

    Args:
        out: the training folder (OUT/prior is the prior; OUT/checkpoints the state).
        steps: optimizer steps in all (default 20000; with --resume, the run's own total: the
            learning-rate schedule decays over it, so give --steps again only to lengthen a run).
        batch: groups of 4 images per step.
        resume: continue the run in --out.
        workers: processes rendering data (0: in this process; more when cores are free).
        device: auto, cpu or cuda.
        threads: torch CPU threads.
        seed: random seed of the data and the model.
        checkpoint_every: steps between checkpoints.
        lr: AdamW learning rate.
        warmup: steps of linear learning-rate warm-up (then a cosine decay to a tenth at --steps).
        chunk_groups: groups per rendered data chunk.
        initial_chunks: chunks rendered before the first step.
        steps_per_chunk: a new chunk joins the data buffer every this many steps (match it to the
            workers' speed: the run waits for a chunk that is not ready).
        buffer_chunks: the buffer keeps the newest this many chunks.
        time_budget: seconds: after 300 steps, shorten --steps to end inside this (a lent GPU).
        init: a toy prior folder to start from (e.g. scene4d/assets_data/toy_prior: continue training the
            shipped weights with a fresh optimizer); ignored with --resume.
        high_t_share: share of groups noised from the top of the schedule (>= --high-t-from x T):
            where an object is at a time is learned up there (0: uniform, as the shipped run).
        high_t_from: where the top of the schedule starts, as a fraction.
        ema: decay of the weights' moving average (the shipped weights are the average); with
            --init it starts from the init weights at this decay, with no young start.
        channels: the U-Net's channels per level, comma-separated.
        heads: attention heads per layer (1 trains ~3x faster on a CPU).
        prediction_type: what the U-Net predicts: epsilon or v_prediction (better at the top of
            the schedule, where a time expert works).
        p_two_objects: share of groups showing two objects with a relation.
        p_drop_camera: share of groups whose camera is dropped (classifier-free guidance).
        video_camera: AZIMUTH,ELEVATION in degrees: train a time expert instead -- every group a
            video at this one camera (use with --high-t-share 1 --high-t-from 0.8; generate pairs it
            with the multi-view prior through --video-prior toy:DIR).
    """
    import torch

    from ..cli import UsageError, _at_least, _device
    from .train_toy import ToyTrainConfig, train_toy_prior

    if steps is not None:
        _at_least("--steps", steps, 1)
    elif not resume:
        steps = 20000
    _at_least("--batch", batch, 1)
    _at_least("--warmup", warmup, 0)
    for flag, v in (("--high-t-share", high_t_share), ("--high-t-from", high_t_from)):
        if not 0 <= v <= 1:
            raise UsageError(f"{flag} is a fraction in [0, 1], got {v}")
    if not 0 <= ema < 1:
        raise UsageError(f"--ema is a decay in [0, 1), got {ema}")
    def numbers(flag, text, n=None):
        try:
            vals = tuple(float(v) for v in str(text).split(","))
        except ValueError:
            vals = ()
        if not vals or (n is not None and len(vals) != n):
            raise UsageError(f"{flag} takes {n or 'some'} comma-separated numbers, got {text!r}")
        return vals

    chans = tuple(int(v) for v in numbers("--channels", channels))
    if any(c < 8 or c % 8 for c in chans):
        raise UsageError(f"--channels are multiples of 8 (the group norm's groups), got {channels!r}")
    cam = numbers("--video-camera", video_camera, 2) if video_camera is not None else None
    if cam is not None and not -90 <= cam[1] <= 90:
        raise UsageError(f"--video-camera is AZIMUTH,ELEVATION in degrees; the elevation must be within [-90, 90], "
                         f"got {cam[1]:g}")
    for flag, v in (("--p-two-objects", p_two_objects), ("--p-drop-camera", p_drop_camera)):
        if not 0 <= v <= 1:
            raise UsageError(f"{flag} is a fraction in [0, 1], got {v}")
    if threads:
        torch.set_num_threads(threads)
    _at_least("--heads", heads, 1)
    if prediction_type not in ("epsilon", "v_prediction"):
        raise UsageError(f"--prediction-type is epsilon or v_prediction, got {prediction_type!r}")
    cfg = ToyTrainConfig(steps=steps, channels=chans, heads=heads, prediction_type=prediction_type, p_two_objects=p_two_objects,
                         p_drop_camera=p_drop_camera, video_camera=cam, batch=batch, seed=seed, checkpoint_every=checkpoint_every, lr=lr,
                         warmup=warmup, high_t_share=high_t_share, high_t_from=high_t_from, ema=ema,
                         ema_warmup=init is None, chunk_groups=chunk_groups, initial_chunks=initial_chunks, steps_per_chunk=steps_per_chunk,
                         buffer_chunks=buffer_chunks)
    try:
        res = train_toy_prior(out, cfg, resume=resume, device=_device(device), workers=workers,
                              command="scene4d " + " ".join(sys.argv[1:]), time_budget=time_budget,
                              init=init)
    except KeyboardInterrupt as e:
        print(f"scene4d prior train-toy: {e}", file=sys.stderr)
        raise SystemExit(130)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"scene4d prior train-toy: {e}", file=sys.stderr)
        raise SystemExit(2)
    print(f"trained {res.steps} steps in {res.seconds:.0f} s; the prior: {res.prior_dir}")


def prior_info(path: Optional[Path] = None, /) -> None:
    """What a prior folder holds (default: the embedded toy prior), and the toy world's words.

    Args:
        path: a prior folder.
    """
    import json

    from .priors import TOY_PRIOR_DIR
    from .toyworld import COLOURS, MOTIONS, RELATIONS, SHAPES

    folder = Path(path) if path else TOY_PRIOR_DIR
    if not folder.exists():
        from ..cli import UsageError

        raise UsageError(f"{folder}: no such prior folder")
    print(f"prior folder {folder}:")
    for sub in sorted(p for p in folder.iterdir()):
        print(f"  {sub.name}{'/' if sub.is_dir() else ''}")
    cfg_file = folder / "scene4d_prior.json"
    expert = json.loads(cfg_file.read_text()).get("time_expert") if cfg_file.is_file() else None
    if expert:
        print(f"a time expert: video clips from azimuth {expert['azimuth']:g}, elevation {expert['elevation']:g} "
              f"degrees, timesteps >= {expert['t_from']:g} x T; pair it with the toy prior: --video-prior toy:{folder}")
    rec = folder / "training.json"
    if rec.is_file():
        r = json.loads(rec.read_text())
        print(f"trained: {r.get('steps')} steps, {r.get('seconds')} s on {r.get('machine')}; command: {r.get('command')}")
    print("toy world: a {colour} {shape} {motion}[ {relation} a {colour} {shape}[ {motion}]]")
    print(f"  colours: {', '.join(COLOURS)}\n  shapes: {', '.join(SHAPES)}\n  motions: {', '.join(MOTIONS)}\n"
          f"  relations: {', '.join(RELATIONS)}")


PRIOR_COMMANDS = {"sample": prior_sample, "train-toy": prior_train_toy, "info": prior_info}

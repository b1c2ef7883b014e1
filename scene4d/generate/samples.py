"""What a toy prior's own samples show, read by the toy world's model-free classifiers.

A prompt is sampled as a *video* from each of four cameras 90 degrees apart (one group = one camera
at four times, the layout the video step of ``generate`` scores), so the classifier sees the same
kind of clip it reads off a generated scene: colour from the hue, shape from the silhouettes at
known cameras, motion from the centroid track and texture phase. Samples carry no exact background
(a sampled white is never exactly white), so the background is read from each frame's border.

A prior paired with time experts (:mod:`diffusion_prior.experts`) knows time at the experts'
cameras only: its four cameras start at the first one, and the motion is read from the clips of
the experts' cameras (colour and shape from all four).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from cameras import Cameras
from diffusion_prior.experts import SAMPLE_FROM, TimeExpertPrior, expert_cameras, seen_by

from . import toyworld as tw

SAMPLE_TIMES = (0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0)
SAMPLE_AZIMUTHS = (20.0, 110.0, 200.0, 290.0)
SAMPLE_ELEVATION = 15.0


@dataclass
class SampleJudgement:
    prompt: str
    seed: int
    accuracy: Dict[str, float]
    read_as: str
    """What the classifier read, as a prompt-like phrase per object (e.g. ``red ball spinning``)."""


def video_cameras(size: int, azimuths: Sequence[float] = SAMPLE_AZIMUTHS,
                  times: Sequence[float] = SAMPLE_TIMES, elevation: float = SAMPLE_ELEVATION) -> Cameras:
    """len(azimuths) x len(times) toy-world cameras, camera-major (each camera's times together)."""
    views = tw.camera_from_angles(torch.tensor(azimuths, dtype=torch.float32),
                                  torch.full((len(azimuths),), float(elevation)), size=size)
    return tw.grid_cameras(views, times)


def sample_views(prior) -> Tuple[Tuple[float, ...], float, Tuple[int, ...]]:
    """The sampled cameras' azimuths and elevation (four, 90 degrees apart, from the first time
    expert's camera when the prior has experts) and which of them are an expert's camera."""
    metas = expert_cameras(prior)
    if not metas:
        return SAMPLE_AZIMUTHS, SAMPLE_ELEVATION, ()
    az0, el = float(metas[0]["azimuth"]), float(metas[0]["elevation"])
    azs = tuple(az0 + 90.0 * i for i in range(4))
    views = tw.camera_from_angles(torch.tensor(azs), torch.full((len(azs),), el))
    owned = tuple(int(i) for i in torch.nonzero(seen_by(metas, views.world_to_camera).any(-1)).flatten())
    return azs, el, owned


def sample_video(prior, prompt: str, seed: int = 0, *, steps: int = 25, guidance: float = 3.0,
                 times: Sequence[float] = SAMPLE_TIMES, expert_from: Optional[float] = SAMPLE_FROM
                 ) -> Tuple[Tensor, Cameras]:
    """(views * times, s, s, 3) frames in [0, 1] and their cameras: the prior's samples of
    ``prompt`` as one video group per camera (:func:`sample_views`); with time experts, each
    expert draws its groups down to ``expert_from`` (:data:`diffusion_prior.experts.SAMPLE_FROM`)."""
    G = prior.group_size
    if len(times) != G:
        raise ValueError(f"sample_video: the prior's groups hold {G} frames, got {len(times)} times")
    az, el, _ = sample_views(prior)
    cams = video_cameras(prior.native_size, az, times, el)
    n = len(cams) // G
    w2c = cams.world_to_camera.reshape(n, G, 4, 4)
    tt = cams.times.reshape(n, G)
    extra = {"expert_from": expert_from} if isinstance(prior, TimeExpertPrior) else {}
    with torch.no_grad():
        imgs = prior.sample(prompt, w2c, tt, steps=steps, guidance_scale=guidance,
                            generator=torch.Generator().manual_seed(seed), **extra)
    frames = imgs.flatten(0, 1).permute(0, 2, 3, 1).float().clamp(0, 1).cpu()
    return frames, cams


def frame_backgrounds(frames: Tensor) -> Tensor:
    """(T, H, W, 3) -> (T, 3): each frame's median border colour."""
    border = torch.cat([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], 1)
    return border.median(1).values


def judge(frames: Tensor, cameras: Cameras, scene: "tw.ToyScene", motion_frames: Optional[Sequence[int]] = None
          ) -> Tuple[Dict[str, float], str]:
    """Attribute accuracy of a sampled clip of ``scene`` and what it was read as (the motion from
    the frames ``motion_frames`` only when given: the time experts' cameras). Each group is
    sampled apart and may come out on its own tint of background (one in eight is visibly darker):
    every frame is first shifted so that its border matches the clip's median border, else a whole
    darker frame would read as foreground."""
    fb = frame_backgrounds(frames)
    common = fb.median(0).values
    frames = (frames + (common - fb)[:, None, None, :]).clamp(0, 1)
    bg = tuple(float(v) for v in common)

    def classify_clip(fr, cams):
        if len(scene.objects) == 1:
            c = tw.classify(fr, cams, background=bg)
            return c, [c]
        c = tw.classify_scene(fr, cams, len(scene.objects), background=bg)
        return c, list(c.objects)

    cls, objs = classify_clip(frames, cameras)
    if motion_frames:
        idx = torch.tensor(list(motion_frames))
        _, moving = classify_clip(frames[idx], cameras[idx])
        # a one-camera read may order two objects otherwise: match them by colour where it can
        pick = [next((m for m in moving if m.colour == o.colour), moving[i] if i < len(moving) else o)
                for i, o in enumerate(objs)]
        objs = [replace(o, motion=m.motion) for o, m in zip(objs, pick)]
        cls = objs[0] if len(scene.objects) == 1 else replace(cls, objects=tuple(objs))
    read = " / ".join(f"{o.colour} {o.shape} {o.motion}" for o in objs)
    return tw.attribute_accuracy(scene, cls), read


def judge_prompt(prior, prompt: str, seed: int = 0, *, steps: int = 25, guidance: float = 3.0,
                 expert_from: Optional[float] = SAMPLE_FROM) -> SampleJudgement:
    scene = tw.parse_prompt(prompt)
    frames, cams = sample_video(prior, prompt, seed, steps=steps, guidance=guidance, expert_from=expert_from)
    G = prior.group_size
    owned = sample_views(prior)[2]
    acc, read = judge(frames, cams, scene, [v * G + j for v in owned for j in range(G)] or None)
    return SampleJudgement(scene.prompt(), seed, acc, read)

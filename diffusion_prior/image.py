"""Stable Diffusion as an image prior: latent SDS through the VAE encoder, view-dependent prompts.

Loads a Stable-Diffusion-layout diffusers folder (tokenizer/, text_encoder/ CLIPTextModel, unet/
UNet2DConditionModel, vae/ AutoencoderKL, scheduler/) by path. Renders (B, G, 3, H, W) in [0, 1] are
resized to the model's native size (``unet.sample_size x`` the VAE's downsampling: 512 for SD 2.1-base),
mapped to [-1, 1] and encoded to latents ``z = E(x).mean * scaling_factor`` with gradients (the
posterior mean, not a sample: deterministic, and the encoder's own noise adds nothing SDS needs).
A folder without a VAE whose UNet takes 3 channels is a pixel-space prior (``x = 2 img - 1``).

View-dependent prompts (DreamFusion §3.3; threestudio's rule, ``prompt_processors/base.py``): each
image's camera centre, taken about the world origin in the z-up world, gives an azimuth (degrees
from the front direction, in the xy plane) and an elevation; the prompt gets ", front view" when
|azimuth| < 45°, ", back view" when |azimuth| > 135°, ", overhead view" when the elevation exceeds
60° (it wins over the others), else ", side view".

diffusers and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .base import DiffusionPrior, PriorError, PromptEmbeds

VIEW_SUFFIXES: Dict[str, str] = {"front": ", front view", "side": ", side view", "back": ", back view",
                                 "overhead": ", overhead view"}


# ------------------------------------------------------------------------------ view-dependent prompts
def camera_azimuth_elevation(world_to_camera: Tensor, front_azimuth_deg: float = 0.0) -> Tuple[Tensor, Tensor]:
    """(..., 4, 4) world-to-camera (OpenCV) -> ``(azimuth, elevation)`` in degrees, each (...).

    The camera centre ``C = -R^T t`` is read in the z-up world about the origin: azimuth
    ``atan2(C_y, C_x) - front_azimuth_deg`` wrapped to (-180, 180], elevation ``atan2(C_z, |C_xy|)``.
    With ``front_azimuth_deg = 0`` a camera on the +x axis sees the front (threestudio's azimuth 0)."""
    R = world_to_camera[..., :3, :3].double()
    t = world_to_camera[..., :3, 3].double()
    C = -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)
    az = torch.rad2deg(torch.atan2(C[..., 1], C[..., 0])) - front_azimuth_deg
    az = torch.remainder(az + 180.0, 360.0) - 180.0
    el = torch.rad2deg(torch.atan2(C[..., 2], C[..., :2].norm(dim=-1)))
    return az, el


def view_directions(world_to_camera: Tensor, *, front_azimuth_deg: float = 0.0, front_threshold: float = 45.0,
                    back_threshold: float = 45.0, overhead_threshold: float = 60.0) -> List[str]:
    """(N, 4, 4) world-to-camera -> N names among front / side / back / overhead (threestudio's
    thresholds: later rules win, as there)."""
    az, el = camera_azimuth_elevation(world_to_camera.reshape(-1, 4, 4), front_azimuth_deg)
    out = []
    for a, e in zip(az.tolist(), el.tolist()):
        name = "side"
        if -front_threshold < a < front_threshold:
            name = "front"
        if a > 180 - back_threshold or a < -180 + back_threshold:
            name = "back"
        if e > overhead_threshold:
            name = "overhead"
        out.append(name)
    return out


# ------------------------------------------------------------------------------------- shared helpers
def load_alphas_cumprod(scheduler_config: dict) -> Tuple[Tensor, str]:
    """(T,) float64 alpha-bar and the prediction type of a scheduler config (any diffusers
    scheduler's ``scheduler_config.json``), via DDPMScheduler so every beta schedule diffusers knows
    (trained betas, zero-SNR rescaling) is honoured."""
    from diffusers import DDPMScheduler

    keep = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = DDPMScheduler.from_config(keep)
    return sched.alphas_cumprod.double().clone(), scheduler_config.get("prediction_type", "epsilon")


def to_epsilon(out: Tensor, x_t: Tensor, a: Tensor, prediction_type: str) -> Tensor:
    """A model output of ``prediction_type`` -> the noise prediction, DDPM ``x_t = sqrt(a) x0 + sqrt(1-a) eps``:
    ``v = sqrt(a) eps - sqrt(1-a) x0`` (Salimans & Ho 2022, §4) gives ``eps = sqrt(a) v + sqrt(1-a) x_t``."""
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - a.sqrt() * out) / (1 - a).sqrt()
    raise PriorError(f"unknown prediction_type {prediction_type!r} in the scheduler config")


def resize_hw(images: Tensor, hw: Tuple[int, int]) -> Tensor:
    """(B, G, 3, H, W) -> (B, G, 3, h, w), bilinear, antialiased when shrinking."""
    B, G, C, H, W = images.shape
    if (H, W) == tuple(hw):
        return images
    out = torch.nn.functional.interpolate(images.reshape(B * G, C, H, W), size=tuple(hw), mode="bilinear",
                                          align_corners=False, antialias=hw[0] < H or hw[1] < W)
    return out.reshape(B, G, C, *hw)


def _source(path, kind: str):
    from .loading import Source, check_folder

    return path if isinstance(path, Source) else check_folder(kind, path)[0]


def load_text_parts(src, dtype: torch.dtype):
    """``(tokenizer, text_encoder)`` from tokenizer/ and text_encoder/ of a folder (CLIP layout)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(src.path, subfolder="tokenizer", **src.kwargs())
    # loaded in its stored dtype, cast by the prior (transformers 4 and 5 name the dtype argument differently)
    te = CLIPTextModel.from_pretrained(src.path, subfolder="text_encoder", **src.kwargs())
    return tok, te.eval().requires_grad_(False)


def render_hw_of(unet_config: dict, vae_factor: int, size) -> Tuple[int, int]:
    """The (H, W) pixels a model takes: ``size`` (int or (H, W)) when given, else its config's
    ``sample_size`` times the VAE downsampling factor."""
    if size is not None:
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    s = unet_config.get("sample_size") or 64
    s = (s, s) if isinstance(s, int) else tuple(s)
    return int(s[0]) * vae_factor, int(s[1]) * vae_factor


def _place(module, device: torch.device, dtype: torch.dtype):
    """A frozen module in eval mode on ``device``, cast only where its dtype differs."""
    p = next(module.parameters(), None)
    if p is not None and p.dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device).eval().requires_grad_(False)


class _DiffusersPrior(DiffusionPrior):
    """What the diffusers-backed priors share: device/dtype/offload handling, CLIP text encoding,
    VAE latent encoding with gradients, the prediction-type conversion, previews.

    ``render_hw``: the (H, W) pixels renders are resized to before encoding (default: the UNet's
    ``sample_size`` x the VAE's downsampling factor); ``native_size`` is its larger side.
    ``vae_chunk``: images per VAE call (memory of the forward; the backward keeps all activations)."""

    def __init__(self, unet, *, vae=None, tokenizer=None, text_encoder=None, alphas_cumprod: Tensor,
                 prediction_type: str = "epsilon", device="cpu", dtype: torch.dtype = torch.float32,
                 render_hw: Optional[Tuple[int, int]] = None, offload: bool = False,
                 attention_slicing: bool = False, vae_chunk: int = 8):
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = bool(offload) and self.device.type == "cuda"
        home = torch.device("cpu") if self.offload else self.device
        self.unet = _place(unet, home, dtype)
        # the VAE stays on the device even when offloading: its encoder's backward runs after the call
        self.vae = _place(vae, self.device, dtype) if vae is not None else None
        self.tokenizer = tokenizer
        self.text_encoder = _place(text_encoder, home, dtype) if text_encoder is not None else None
        self._ac = alphas_cumprod.double()
        self.prediction_type = prediction_type
        self.vae_factor = (2 ** (len(vae.config.block_out_channels) - 1)) if vae is not None else 1
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 1.0)) if vae is not None else 1.0
        self.render_hw = tuple(render_hw) if render_hw else render_hw_of(dict(unet.config), self.vae_factor, None)
        self.native_size = max(self.render_hw)
        self.attention_slicing = bool(attention_slicing)
        if self.attention_slicing and hasattr(self.unet, "set_attention_slice"):
            self.unet.set_attention_slice("auto")
        self.vae_chunk = max(1, int(vae_chunk))

    # ----------------------------------------------------------------- device plumbing
    @contextmanager
    def _on_device(self, module):
        """Offload (enable_model_cpu_offload-like): the module visits the device for this call only."""
        if not self.offload:
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._ac

    # ----------------------------------------------------------------- text
    def encode_text(self, texts: List[str]) -> Tensor:
        """N prompts -> (N, L, D) CLIP last hidden states on the device in the model dtype."""
        if self.tokenizer is None or self.text_encoder is None:
            raise PriorError(f"{type(self).__name__} was built without a tokenizer/text encoder; pass "
                             "PromptEmbeds made elsewhere")
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.no_grad(), self._on_device(self.text_encoder) as te:
            out = te(ids.to(te.device))[0]
        return out.to(self.device, self.dtype)

    @staticmethod
    def _check_prompt(prompt: str) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise PriorError("empty prompt: say what to make, e.g. \"a red ball bouncing\"")

    # ----------------------------------------------------------------- images <-> model space
    def encode_images(self, images: Tensor) -> Tensor:
        """(B, G, 3, H, W) in [0, 1] -> (B, G, C, h, w) float32 latents (or pixels in [-1, 1]),
        differentiable; the VAE runs ``vae_chunk`` images at a time (one frame at a time for video)."""
        B, G = images.shape[:2]
        x = resize_hw(images, self.render_hw).to(self.device) * 2 - 1
        if self.vae is None:
            return x.float()
        flat = x.reshape(B * G, *x.shape[2:]).to(self.dtype)
        z = torch.cat([self.vae.encode(c).latent_dist.mean for c in flat.split(self.vae_chunk)])
        z = z.float() * self.scaling_factor
        return z.reshape(B, G, *z.shape[1:])

    def decode_preview(self, x0: Tensor) -> Tensor:
        if self.vae is None:
            return ((x0 + 1) / 2).clamp(0, 1)
        B, G = x0.shape[:2]
        flat = (x0.reshape(B * G, *x0.shape[2:]) / self.scaling_factor).to(self.dtype)
        img = torch.cat([self.vae.decode(c).sample for c in flat.split(self.vae_chunk)]).float()
        return ((img + 1) / 2).clamp(0, 1).reshape(B, G, *img.shape[1:])

    def _eps(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        a = self._ac.to(x_t.device)[t].float().view(-1, *([1] * (x_t.dim() - 1)))
        return to_epsilon(out.float(), x_t.float(), a, self.prediction_type)


class StableDiffusionPrior(_DiffusersPrior):
    """Latent (or pixel) SDS with a Stable-Diffusion-layout model; G images of a group are
    independent (``group_size`` 1: an image prior sees one image at a time).

    ``view_dependent``: add ", front view" etc. from each image's camera when cameras are given
    (``front_azimuth_deg``: the world azimuth the front faces, see :func:`camera_azimuth_elevation`).
    ``attention_slicing``: diffusers' sliced attention in the UNet and separate conditional and
    unconditional passes (half the activation memory). ``offload``: on CUDA, the text encoder and UNet
    live on the CPU and visit the GPU for each call (like ``enable_model_cpu_offload``)."""

    kind = "image"
    group_size = 1
    needs_cameras = False
    needs_times = False

    def __init__(self, unet, *, view_dependent: bool = True, front_azimuth_deg: float = 0.0, **kw):
        super().__init__(unet, **kw)
        if getattr(self.unet.config, "class_embed_type", None) is not None:
            raise PriorError("this UNet conditions on class labels (class_embed_type="
                             f"{self.unet.config.class_embed_type}): a multi-view (MVDream) UNet; load it as mvdream")
        self.view_dependent = bool(view_dependent)
        self.front_azimuth_deg = float(front_azimuth_deg)

    @classmethod
    def from_pretrained(cls, path, *, device="cpu", dtype: torch.dtype = torch.float32, size=None,
                        attention_slicing: bool = False, offload: bool = False, view_dependent: bool = True,
                        front_azimuth_deg: float = 0.0, vae_chunk: int = 8) -> "StableDiffusionPrior":
        """Load from a diffusers folder (``path``; a hub id where a network exists). ``size``: render
        size fed to the model (default: the config's native size, 512 for SD 2.1-base)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel

        src = _source(path, "sd")
        unet = UNet2DConditionModel.from_pretrained(src.path, subfolder="unet", torch_dtype=dtype, **src.kwargs())
        vae = None
        has_vae = not src.local or os.path.isfile(os.path.join(src.path, "vae", "config.json"))
        if unet.config.in_channels != 3 or has_vae:
            try:
                vae = AutoencoderKL.from_pretrained(src.path, subfolder="vae", torch_dtype=dtype, **src.kwargs())
            except (OSError, EnvironmentError) as e:
                raise PriorError(f"sd:{src.path}: the UNet works on {unet.config.in_channels}-channel latents but "
                                 f"vae/ did not load ({e})") from e
        tok, te = load_text_parts(src, dtype)
        ac, pred = load_alphas_cumprod(src.read_json("scheduler/scheduler_config.json") or {})
        factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        return cls(unet, vae=vae, tokenizer=tok, text_encoder=te, alphas_cumprod=ac, prediction_type=pred,
                   device=device, dtype=dtype, render_hw=render_hw_of(dict(unet.config), factor, size),
                   offload=offload, attention_slicing=attention_slicing, view_dependent=view_dependent,
                   front_azimuth_deg=front_azimuth_deg, vae_chunk=vae_chunk)

    def encode_prompt(self, prompt: str, negative: str = "") -> PromptEmbeds:
        """``cond`` (1, L, D) for the prompt, ``uncond`` for the negative prompt (empty: the
        unconditional model), and, when view-dependent, ``extra["views"]``: {direction: (1, L, D)}."""
        self._check_prompt(prompt)
        texts = [prompt, negative]
        names = list(VIEW_SUFFIXES) if self.view_dependent else []
        texts += [prompt + VIEW_SUFFIXES[n] for n in names]
        e = self.encode_text(texts)
        extra = {"views": {n: e[2 + i: 3 + i] for i, n in enumerate(names)}} if names else {}
        return PromptEmbeds(prompt, negative, e[0:1], e[1:2], extra)

    def cond_per_image(self, emb: PromptEmbeds, cameras: Optional[Tensor], n: int) -> Tensor:
        """(n, L, D) conditional states: the view-dependent prompt of each image's camera where the
        embeddings carry them and cameras are given, else the plain prompt."""
        views = emb.extra.get("views") if self.view_dependent else None
        if views and cameras is not None:
            names = view_directions(cameras.reshape(-1, 4, 4), front_azimuth_deg=self.front_azimuth_deg)
            return torch.cat([views[nm] for nm in names]).to(self.device, self.dtype)
        return emb.cond.to(self.device, self.dtype).expand(n, -1, -1)

    def _unet(self, x: Tensor, t: Tensor, states: Tensor) -> Tensor:
        with self._on_device(self.unet) as unet:
            return unet(x, t, encoder_hidden_states=states).sample

    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor],
                      times: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        B, G = x_t.shape[:2]
        n = B * G
        x = x_t.reshape(n, *x_t.shape[2:])
        tt = t.to(self.device).repeat_interleave(G)
        cond = self.cond_per_image(emb, cameras, n)
        uncond = emb.uncond.to(self.device, self.dtype).expand(n, -1, -1)
        xin = x.to(self.dtype)
        if self.attention_slicing:  # two passes: half the activations
            out = torch.cat([self._unet(xin, tt, cond), self._unet(xin, tt, uncond)])
        else:
            out = self._unet(torch.cat([xin, xin]), torch.cat([tt, tt]), torch.cat([cond, uncond]))
        eps = self._eps(out, torch.cat([x, x]), torch.cat([tt, tt]))
        eps_c, eps_u = eps.chunk(2)
        return eps_c.reshape(x_t.shape), eps_u.reshape(x_t.shape)

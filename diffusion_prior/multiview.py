"""Camera-conditioned multi-view (and time-conditioned video) prior, MVDream-style, from diffusers' core
classes.

MVDream (Shi et al. 2023) is Stable Diffusion's U-Net with two changes, both expressible in
diffusers' ``UNet2DConditionModel`` without custom modules:

* the camera, a camera-to-world matrix in Blender/OpenGL axes with its translation normalised to unit
  length, flattened to 16 numbers, goes through a 2-layer MLP and is added to the timestep embedding:
  ``class_embed_type="projection"`` with ``projection_class_embeddings_input_dim=16`` does exactly
  that (``emb = emb + class_embedding(class_labels)``);
* self-attention runs over all views of a group at once ("(b f) l c -> b (f l) c"):
  :class:`MultiViewAttnProcessor` on every ``attn1``.

Our embedded toy prior adds the scene time: 8 Fourier features of t appended to the camera's 16
numbers (``projection_class_embeddings_input_dim=24``), so that a group can be G views of one moment
(a multi-view prior), G moments seen by one camera (a video prior) or a mix. A folder holds the usual
diffusers components (``tokenizer/``, ``text_encoder/``, ``unet/``, ``scheduler/``, optionally
``vae/``) and ``scene4d_prior.json`` saying how the class labels are built.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DiffusionPrior, PriorError, PromptEmbeds, resize_renders
from .image import to_epsilon
from .schedule import alphas_cumprod as make_alphas

PRIOR_CONFIG = "scene4d_prior.json"


def mvdream_camera(world_to_camera: Tensor) -> Tensor:
    """(..., 4, 4) OpenCV world-to-camera -> (..., 16) MVDream camera vectors: the camera-to-world in
    OpenGL/Blender axes (camera y up, z backward: the OpenCV y and z columns negated), translation
    normalised to unit length (MVDream's cameras sit on a unit sphere), flattened row-major."""
    c2w = torch.linalg.inv(world_to_camera.double())
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w.dtype, device=c2w.device))
    c2w = c2w @ flip
    t = c2w[..., :3, 3]
    c2w = c2w.clone()
    c2w[..., :3, 3] = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return c2w.flatten(-2).to(world_to_camera.dtype)


def time_features(times: Tensor, n: int = 8) -> Tensor:
    """(...) scene times in [0, 1] -> (..., n) Fourier features ``sin/cos(2 pi f t)`` for
    ``f = 0.5, 1, 2, 4, ...``: the lowest frequency tells t = 0 from t = 1."""
    if n == 0:
        return times.new_zeros(times.shape + (0,))
    freqs = 0.5 * 2.0 ** torch.arange(n // 2, dtype=times.dtype, device=times.device)
    a = 2 * math.pi * times[..., None] * freqs
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


class MultiViewAttnProcessor:
    """Attention for diffusers' ``Attention`` where self-attention (``attn1``) runs jointly over the
    ``num_views`` images of each group and cross-attention is the usual per-image attention.

    ``num_views`` arrives per call through ``cross_attention_kwargs`` (no state kept between calls);
    images are grouped in order, so a batch of B groups is laid out as (B * G, ...)."""

    def __init__(self, joint: bool):
        self.joint = joint

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Optional[Tensor] = None,
                 attention_mask: Optional[Tensor] = None, temb: Optional[Tensor] = None,
                 num_views: int = 1) -> Tensor:
        if attention_mask is not None:
            raise ValueError("MultiViewAttnProcessor does not take attention masks")
        input_4d = hidden_states.dim() == 4
        if input_4d:  # (N, C, H, W) blocks: attend over pixels
            n, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(n, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        N, L, C = hidden_states.shape
        cross = encoder_hidden_states is not None
        joint = self.joint and not cross and num_views > 1
        if joint:
            if N % num_views:
                raise ValueError(f"batch of {N} images is not a whole number of groups of {num_views}")
            hidden_states = hidden_states.reshape(N // num_views, num_views * L, C)
        context = encoder_hidden_states if cross else hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        b = q.shape[0]
        q, k, v = (x.view(b, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, -1, heads * out.shape[-1])
        out = attn.to_out[1](attn.to_out[0](out))
        if joint:
            out = out.reshape(N, L, -1)
        if input_4d:
            out = out.transpose(1, 2).reshape(n, -1, h, w)
        return out


def install_multiview_attention(unet) -> None:
    """Put :class:`MultiViewAttnProcessor` on every attention layer of ``unet`` (joint on ``attn1``)."""
    procs = {name: MultiViewAttnProcessor(joint=name.endswith("attn1.processor")) for name in unet.attn_processors}
    unet.set_attn_processor(procs)


def _need(path: Path, rel: str, kind: str) -> None:
    if not (path / rel).exists():
        raise PriorError(
            f"{path}: not a {kind} prior folder: {rel} is missing. A prior folder is a diffusers-layout folder "
            f"(tokenizer/, text_encoder/, unet/, scheduler/); copy one here, or on a machine with a network run "
            f"`huggingface-cli download ID --local-dir DIR` and pass that DIR")


class MultiViewPrior(DiffusionPrior):
    """A camera- (and optionally time-) conditioned prior over groups of G images.

    Components: ``tokenizer`` (CLIPTokenizer), ``text_encoder`` (CLIPTextModel), ``unet``
    (UNet2DConditionModel with a projection class embedding), the DDPM ``alphas_cumprod``, an
    optional ``vae`` (latent models; None = pixel space), and ``config`` (``scene4d_prior.json``:
    ``camera`` "mvdream", ``time_features`` n (0: none), ``num_views``, ``native_size``, ``kind``)."""

    kind = "multiview"
    needs_cameras = True

    def __init__(self, tokenizer, text_encoder, unet, alphas_cumprod: Tensor, config: Dict, vae=None):
        self.tokenizer, self.text_encoder, self.unet, self.vae = tokenizer, text_encoder, unet, vae
        self._ac = alphas_cumprod.double()
        self.config = dict(config)
        self.n_time = int(config.get("time_features", 0))
        self.needs_times = self.n_time > 0
        self.group_size = int(config.get("num_views", 4))
        self.native_size = int(config.get("native_size", unet.config.sample_size * (8 if vae is not None else 1)))
        self.kind = config.get("kind", "multiview")
        self.prediction_type = config.get("prediction_type", "epsilon")
        install_multiview_attention(self.unet)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: Union[str, Path], *, device=None, dtype=torch.float32) -> "MultiViewPrior":
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        path = Path(path)
        if not path.exists():
            raise PriorError(f"{path}: no such prior folder")
        for rel in ("tokenizer", "text_encoder/config.json", "unet/config.json", "scheduler/scheduler_config.json"):
            _need(path, rel, "multi-view")
        cfg_path = path / PRIOR_CONFIG
        config = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {"camera": "mvdream", "num_views": 4}
        unet_cfg = json.loads((path / "unet" / "config.json").read_text())
        if unet_cfg.get("_class_name") not in (None, "UNet2DConditionModel"):
            raise PriorError(f"{path}/unet is a {unet_cfg.get('_class_name')}, not the UNet2DConditionModel of a "
                             "multi-view prior (is it a video prior? pass it as --video-prior)")
        if unet_cfg.get("class_embed_type") != "projection":
            raise PriorError(f"{path}/unet has no camera embedding (class_embed_type is "
                             f"{unet_cfg.get('class_embed_type')!r}, not 'projection'): it is an image prior; "
                             "pass it as --prior sd:PATH")
        sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        ac = make_alphas(sched.get("beta_schedule", "scaled_linear"), int(sched.get("num_train_timesteps", 1000)),
                         float(sched.get("beta_start", 0.00085)), float(sched.get("beta_end", 0.012)))
        kw = dict(local_files_only=True)
        tok = CLIPTokenizer.from_pretrained(path / "tokenizer", **kw)
        te = CLIPTextModel.from_pretrained(path / "text_encoder", torch_dtype=dtype, **kw)
        unet = UNet2DConditionModel.from_pretrained(path / "unet", torch_dtype=dtype, **kw)
        vae = AutoencoderKL.from_pretrained(path / "vae", torch_dtype=dtype, **kw) if (path / "vae").is_dir() else None
        prior = cls(tok, te, unet, ac, config, vae)
        prior.to(device or "cpu")
        prior.eval()
        return prior

    def save_pretrained(self, path: Union[str, Path], *, dtype: Optional[torch.dtype] = None) -> Path:
        """Write the folder (diffusers layout + ``scene4d_prior.json``); ``dtype`` casts the weights
        (fp16 for shipping)."""
        from diffusers import DDPMScheduler

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path / "tokenizer")
        for name, m in (("text_encoder", self.text_encoder), ("unet", self.unet), ("vae", self.vae)):
            if m is None:
                continue
            if dtype is not None:
                m = _cast_copy(m, dtype)
            m.save_pretrained(path / name, safe_serialization=True)
        DDPMScheduler(**self.config.get("scheduler", {"beta_schedule": "squaredcos_cap_v2"})).save_pretrained(
            path / "scheduler")
        (path / "model_index.json").write_text(json.dumps({
            "_class_name": "MultiViewPrior", "_scene4d": "diffusion_prior.multiview.MultiViewPrior",
            "tokenizer": ["transformers", "CLIPTokenizer"], "text_encoder": ["transformers", "CLIPTextModel"],
            "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "DDPMScheduler"],
            **({"vae": ["diffusers", "AutoencoderKL"]} if self.vae is not None else {})}, indent=2) + "\n")
        (path / PRIOR_CONFIG).write_text(json.dumps(self.config, indent=2) + "\n")
        return path

    def to(self, device) -> "MultiViewPrior":
        for m in (self.text_encoder, self.unet, self.vae):
            if m is not None:
                m.to(device)
        return self

    def eval(self) -> "MultiViewPrior":
        for m in (self.text_encoder, self.unet, self.vae):
            if m is not None:
                m.eval()
                m.requires_grad_(False)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._ac

    # ------------------------------------------------------------------ conditioning
    def tokenize(self, prompts) -> Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def text_states(self, ids: Tensor) -> Tensor:
        return self.text_encoder(ids.to(self.device)).last_hidden_state

    @torch.no_grad()
    def encode_prompt(self, prompt: str, negative: str = "") -> PromptEmbeds:
        states = self.text_states(self.tokenize([prompt, negative]))
        return PromptEmbeds(prompt, negative, states[:1], states[1:])

    def class_labels(self, cameras: Tensor, times: Optional[Tensor], *, drop_camera: Optional[Tensor] = None) -> Tensor:
        """(B, G, 4, 4) cameras [+ (B, G) times] -> (B * G, 16 [+ n]) class labels; ``drop_camera``
        (B,) bool zeroes the camera part of those groups (classifier-free dropout in training)."""
        cam = mvdream_camera(cameras.float())
        if drop_camera is not None:
            cam = cam * (~drop_camera).float().view(-1, 1, 1)
        parts = [cam]
        if self.n_time:
            if times is None:
                raise PriorError("this prior is time-conditioned: pass the scene time of every image (times=(B, G))")
            parts.append(time_features(times.float(), self.n_time))
        return torch.cat(parts, -1).flatten(0, 1)

    def unet_eps(self, x: Tensor, t: Tensor, states: Tensor, labels: Tensor, num_views: int) -> Tensor:
        """The U-Net on (B * G, C, h, w) inputs, timesteps (B * G,), text states (B * G, L, D)."""
        out = self.unet(x.to(self.dtype), t, encoder_hidden_states=states.to(self.dtype),
                        class_labels=labels.to(self.dtype), cross_attention_kwargs={"num_views": num_views}).sample
        return out.float()

    # ------------------------------------------------------------------ SDS hooks
    def encode_images(self, images: Tensor) -> Tensor:
        x = resize_renders(images, self.native_size)
        if self.vae is None:
            return x * 2 - 1
        B, G = x.shape[:2]
        lat = self.vae.encode(x.flatten(0, 1).to(self.dtype) * 2 - 1).latent_dist.mean  # no hidden RNG draw
        lat = lat.float() * self.vae.config.scaling_factor
        return lat.reshape(B, G, *lat.shape[1:])

    def decode_preview(self, x0: Tensor) -> Tensor:
        if self.vae is None:
            return ((x0 + 1) / 2).clamp(0, 1)
        B, G = x0.shape[:2]
        img = self.vae.decode((x0.flatten(0, 1) / self.vae.config.scaling_factor).to(self.dtype)).sample.float()
        return ((img + 1) / 2).clamp(0, 1).reshape(B, G, *img.shape[1:])

    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor],
                      times: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        B, G = x_t.shape[:2]
        labels = self.class_labels(cameras.to(self.device), None if times is None else times.to(self.device))
        x = x_t.flatten(0, 1)
        tt = t.to(self.device).repeat_interleave(G)
        cond = emb.cond.expand(B * G, -1, -1)
        uncond = emb.uncond.expand(B * G, -1, -1)
        # one U-Net call for both halves; the camera stays in the unconditional half (MVDream)
        out = self.unet_eps(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, uncond]),
                            torch.cat([labels, labels]), G)
        if self.prediction_type != "epsilon":  # e.g. a v-prediction time expert
            a = self._ac.float().to(out.device)[torch.cat([tt, tt])].view(-1, 1, 1, 1)
            out = to_epsilon(out, torch.cat([x, x]).float(), a, self.prediction_type)
        eps_c, eps_u = out.chunk(2)
        return eps_c.reshape(x_t.shape), eps_u.reshape(x_t.shape)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, prompt: str, cameras: Tensor, times: Optional[Tensor] = None, *, steps: int = 50,
               guidance_scale: float = 3.0, negative: str = "", generator: Optional[torch.Generator] = None,
               eta: float = 1.0) -> Tensor:
        """DDIM (Song et al. 2021, eq. 12) samples of groups: cameras (B, G, 4, 4), times (B, G) ->
        (B, G, 3, s, s) images in [0, 1]. What the prior believes the prompt looks like from those
        cameras at those times (``scene4d prior sample``).

        ``eta = 1`` (default) is ancestral sampling (DDPM's posterior variance on the DDIM steps):
        its fresh noise corrects the first steps' poor clean-image estimates (at alpha_bar ~ 0 an
        epsilon model's x0 is its error divided by ~0), which the deterministic ``eta = 0`` path
        keeps as high-frequency noise to the end on the toy prior (measured: Laplacian RMS 1.1 vs
        0.37 of a true render, and 0.29 with ``eta = 1``)."""
        emb = self.encode_prompt(prompt, negative)
        shape = (*cameras.shape[:2], self.unet.config.in_channels, self.unet.config.sample_size,
                 self.unet.config.sample_size)
        return ddim_sample(self, emb, shape, cameras, times, steps=steps, guidance_scale=guidance_scale,
                           generator=generator, eta=eta, clamp=self.vae is None)


@torch.no_grad()
def ddim_sample(prior: DiffusionPrior, emb: PromptEmbeds, shape: Tuple[int, ...], cameras: Tensor,
                times: Optional[Tensor], *, steps: int = 50, guidance_scale: float = 3.0,
                generator: Optional[torch.Generator] = None, eta: float = 1.0, clamp: bool = True,
                **predict_kwargs) -> Tensor:
    """The DDIM loop of :meth:`MultiViewPrior.sample` over any prior's ``predict_noise`` (given
    ``predict_kwargs`` besides the cameras and times): groups of ``shape`` (B, G, C, h, w) in model
    space -> ``prior.decode_preview`` of the last estimate."""
    B = shape[0]
    x = torch.randn(shape, generator=generator).to(prior.device)
    ac = prior.alphas_cumprod.float().to(x.device)
    T = len(ac)
    ts = torch.linspace(T - 1, 0, steps).round().long().tolist()
    for i, t in enumerate(ts):
        eps_c, eps_u = prior.predict_noise(x, torch.full((B,), t, dtype=torch.long), emb, cameras=cameras,
                                           times=times, **predict_kwargs)
        eps = eps_u + guidance_scale * (eps_c - eps_u)
        a = ac[t]
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt())
        if clamp:
            x0 = x0.clamp(-1, 1)
        a_prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=x.device)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp_min(0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0 and i + 1 < len(ts):
            x = x + sigma * torch.randn(x.shape, generator=generator).to(x)
    return prior.decode_preview(x)


def _cast_copy(module, dtype):
    import copy

    return copy.deepcopy(module).to(dtype)

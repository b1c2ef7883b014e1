"""Video priors: SDS over the G frames of a clip at once.

* :class:`TextToVideoPrior`: a text-to-video UNet, either ``UNet3DConditionModel`` (ModelScope /
  zeroscope layout: input (B, C, F, h, w), text states (B, L, D) repeated per frame inside the UNet)
  or AnimateDiff (``UNetMotionModel``, built with ``UNetMotionModel.from_unet2d(unet2d, MotionAdapter)``
  when the folder holds a plain SD UNet and a ``motion_adapter/``; its text states must be repeated
  per frame by the caller, (B F, L, D)). The VAE is an image VAE run one frame at a time.
* :class:`ImageToVideoPrior`: Stable Video Diffusion (``UNetSpatioTemporalConditionModel`` +
  ``AutoencoderKLTemporalDecoder`` + CLIP vision encoder), conditioned on an image, not text.

Frames of a group are G consecutive scene times of one camera, in time order; the prior does not
need the times themselves (``needs_times`` False) nor the cameras.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .base import PriorError, PromptEmbeds
from .image import _DiffusersPrior, _source, load_alphas_cumprod, load_text_parts, render_hw_of, resize_hw


class TextToVideoPrior(_DiffusersPrior):
    """Text-to-video SDS (4D-fy's video stage): one timestep per clip, the whole clip noised and
    denoised together, so the gradient carries the model's sense of motion.

    ``frames``: the clip length the model was trained for (``group_size``; zeroscope 16-24,
    AnimateDiff 16); renders may come with any G. ``size``: (H, W) render size fed to the model
    (zeroscope_v2_576w: (320, 576); default: the UNet config's ``sample_size`` x 8)."""

    kind = "video"
    group_size = 16
    needs_cameras = False
    needs_times = False

    def __init__(self, unet, *, frames: int = 16, **kw):
        super().__init__(unet, **kw)
        self.group_size = int(frames)
        self.motion = type(self.unet).__name__ == "UNetMotionModel"

    @classmethod
    def from_pretrained(cls, path, *, device="cpu", dtype: torch.dtype = torch.float32, adapter=None,
                        frames: int = 16, size=None, attention_slicing: bool = False, offload: bool = False,
                        vae_chunk: int = 1) -> "TextToVideoPrior":
        """``path``: a zeroscope/ModelScope folder (unet/ UNet3DConditionModel), an AnimateDiff pipeline
        folder (unet/ UNetMotionModel, or unet/ UNet2DConditionModel + motion_adapter/), or an SD folder
        with ``adapter`` a MotionAdapter folder (the "SD_DIR,ADAPTER_DIR" spec)."""
        import diffusers
        from diffusers import AutoencoderKL, MotionAdapter, UNetMotionModel

        from .loading import Source, describe_folder, resolve_source

        if adapter is not None and not isinstance(adapter, Source):
            adapter = resolve_source(adapter, "animatediff")
        kind = "animatediff" if adapter is not None else "zeroscope"
        if not isinstance(path, Source) and adapter is None:
            try:
                kind = "animatediff" if describe_folder(path).kind == "animatediff" else kind
            except PriorError:
                pass  # a hub id or a missing path: _source says what is wrong
        src = _source(path, kind)
        ucfg = src.read_json("unet/config.json") or {}
        cls_name = ucfg.get("_class_name", "UNet3DConditionModel")
        kw = src.kwargs()
        if cls_name == "UNet2DConditionModel":  # AnimateDiff from an SD UNet + a motion adapter
            unet2d = diffusers.UNet2DConditionModel.from_pretrained(src.path, subfolder="unet", torch_dtype=dtype, **kw)
            if adapter is not None:
                ad = MotionAdapter.from_pretrained(adapter.path, torch_dtype=dtype, **adapter.kwargs())
            else:
                ad = MotionAdapter.from_pretrained(src.path, subfolder="motion_adapter", torch_dtype=dtype, **kw)
            try:
                unet = UNetMotionModel.from_unet2d(unet2d, ad)
            except Exception as e:  # mismatched block layouts: say so in one line
                raise PriorError(f"animatediff: the motion adapter does not fit this UNet ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160]}); adapters are made for SD 1.5-layout UNets") from e
        elif cls_name in ("UNet3DConditionModel", "UNetMotionModel"):
            unet = getattr(diffusers, cls_name).from_pretrained(src.path, subfolder="unet", torch_dtype=dtype, **kw)
        else:
            raise PriorError(f"{src.path}: unet is {cls_name}, not a text-to-video UNet")
        vae = AutoencoderKL.from_pretrained(src.path, subfolder="vae", torch_dtype=dtype, **kw)
        tok, te = load_text_parts(src, dtype)
        ac, pred = load_alphas_cumprod(src.read_json("scheduler/scheduler_config.json") or {})
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return cls(unet, vae=vae, tokenizer=tok, text_encoder=te, alphas_cumprod=ac, prediction_type=pred,
                   device=device, dtype=dtype, render_hw=render_hw_of(dict(unet.config), factor, size),
                   offload=offload, attention_slicing=attention_slicing, vae_chunk=vae_chunk, frames=frames)

    def encode_prompt(self, prompt: str, negative: str = "") -> PromptEmbeds:
        """``cond`` / ``uncond`` (1, L, D); a negative such as "low motion, static statue" (4D-fy) fights
        frozen clips."""
        self._check_prompt(prompt)
        e = self.encode_text([prompt, negative])
        return PromptEmbeds(prompt, negative, e[0:1], e[1:2])

    def _unet(self, x: Tensor, t: Tensor, states: Tensor) -> Tensor:
        """x (n, C, F, h, w), t (n,), states (n, L, D) -> (n, C, F, h, w)."""
        if self.motion:  # UNetMotionModel wants the text states per frame
            states = states.repeat_interleave(x.shape[2], dim=0)
        with self._on_device(self.unet) as unet:
            return unet(x, t, encoder_hidden_states=states).sample

    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor],
                      times: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        B = x_t.shape[0]
        x = x_t.permute(0, 2, 1, 3, 4)  # (B, C, G, h, w): frames are the UNet's depth axis
        tt = t.to(self.device)
        cond = emb.cond.to(self.device, self.dtype).expand(B, -1, -1)
        uncond = emb.uncond.to(self.device, self.dtype).expand(B, -1, -1)
        xin = x.to(self.dtype)
        if self.attention_slicing:
            out = torch.cat([self._unet(xin, tt, cond), self._unet(xin, tt, uncond)])
        else:
            out = self._unet(torch.cat([xin, xin]), torch.cat([tt, tt]), torch.cat([cond, uncond]))
        eps = self._eps(out, torch.cat([x, x]), torch.cat([tt, tt]))
        eps_c, eps_u = (e.permute(0, 2, 1, 3, 4) for e in eps.chunk(2))
        return eps_c.contiguous(), eps_u.contiguous()


# ------------------------------------------------------------------------------------------- SVD
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageToVideoPrior(_DiffusersPrior):
    """Stable Video Diffusion as an image-to-video SDS prior (for image-to-4D).

    SVD is an EDM model (Karras et al. 2022) with v-prediction: for a noise level sigma the network
    sees ``c_in z = z / sqrt(sigma^2 + 1)`` with ``z = x0 + sigma eps`` and ``c_noise = 0.25 log sigma``,
    and returns ``F`` with ``x0_hat = z / (sigma^2 + 1) - sigma F / sqrt(sigma^2 + 1)`` (diffusers'
    ``EulerDiscreteScheduler``, v_prediction). SDS is done in x0 form on the shared DDPM grid: with
    ``alpha_bar = 1 / (1 + sigma^2)`` the DDPM sample ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps`` *is*
    ``c_in z``, so ``x0_hat`` comes from the network and ``eps_hat = (z - x0_hat) / sigma``, making
    ``w (eps_hat - eps) = w (x0 - x0_hat) / sigma`` the x0-form gradient. The sigmas are the
    scheduler's discrete training sigmas (``scaled_linear`` 0.00085-0.012: 0.03 to 14.6).

    Conditioning (the pipeline's): CLIP image embedding of the reference image (unconditional:
    zeros), the reference's VAE latent (mode, unscaled, after ``noise_aug_strength`` noise) concatenated
    to every frame's channels (unconditional: zeros), and added time ids ``(fps - 1, motion_bucket_id,
    noise_aug_strength)``. Call :meth:`encode_image` (or ``encode_prompt(..., image=)``) once."""

    kind = "image_to_video"
    group_size = 14
    needs_cameras = False
    needs_times = False
    prediction_type = "v_prediction"

    def __init__(self, unet, *, image_encoder, image_size: int = 224, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                 fps: int = 7, motion_bucket_id: int = 127, noise_aug_strength: float = 0.02,
                 frames: Optional[int] = None, **kw):
        super().__init__(unet, **kw)
        home = torch.device("cpu") if self.offload else self.device
        self.image_encoder = image_encoder.to(home, self.dtype).eval().requires_grad_(False)
        self.image_size = int(image_size)
        self.image_mean = torch.tensor(image_mean).view(1, 3, 1, 1)
        self.image_std = torch.tensor(image_std).view(1, 3, 1, 1)
        self.fps, self.motion_bucket_id = int(fps), int(motion_bucket_id)
        self.noise_aug_strength = float(noise_aug_strength)
        self.group_size = int(frames or getattr(self.unet.config, "num_frames", 14) or 14)

    @classmethod
    def from_pretrained(cls, path, *, device="cpu", dtype: torch.dtype = torch.float32, frames: Optional[int] = None,
                        size=None, attention_slicing: bool = False, offload: bool = False, vae_chunk: int = 1,
                        fps: int = 7, motion_bucket_id: int = 127,
                        noise_aug_strength: float = 0.02) -> "ImageToVideoPrior":
        from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
        from transformers import CLIPVisionModelWithProjection

        src = _source(path, "svd")
        kw = src.kwargs()
        unet = UNetSpatioTemporalConditionModel.from_pretrained(src.path, subfolder="unet", torch_dtype=dtype, **kw)
        vae = AutoencoderKLTemporalDecoder.from_pretrained(src.path, subfolder="vae", torch_dtype=dtype, **kw)
        enc = CLIPVisionModelWithProjection.from_pretrained(src.path, subfolder="image_encoder", **kw)
        pp = src.read_json("feature_extractor/preprocessor_config.json") or {}
        crop = pp.get("crop_size", enc.config.image_size)
        crop = crop.get("height", enc.config.image_size) if isinstance(crop, dict) else crop
        ac, _ = load_alphas_cumprod(src.read_json("scheduler/scheduler_config.json") or {})
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        return cls(unet, vae=vae, image_encoder=enc, image_size=int(crop), image_mean=pp.get("image_mean", CLIP_MEAN),
                   image_std=pp.get("image_std", CLIP_STD), alphas_cumprod=ac, prediction_type="v_prediction",
                   device=device, dtype=dtype, render_hw=render_hw_of(dict(unet.config), factor, size), offload=offload,
                   attention_slicing=attention_slicing, vae_chunk=vae_chunk, fps=fps, motion_bucket_id=motion_bucket_id,
                   noise_aug_strength=noise_aug_strength, frames=frames)

    # ----------------------------------------------------------------- conditioning
    def encode_prompt(self, prompt: str = "", negative: str = "", *, image: Optional[Tensor] = None,
                      generator: Optional[torch.Generator] = None) -> PromptEmbeds:
        """SVD has no text: ``image`` (3, H, W) or (1, 3, H, W) in [0, 1] is the conditioning."""
        if image is None:
            raise PriorError("an image-to-video prior (SVD) conditions on an image, not text: pass image=(3, H, W) "
                             "in [0, 1] (the reference view, --image)")
        return self.encode_image(image, generator=generator, prompt=prompt)

    def encode_image(self, image: Tensor, *, generator: Optional[torch.Generator] = None,
                     prompt: str = "") -> PromptEmbeds:
        """The reference image -> PromptEmbeds with ``cond`` the CLIP image embedding (1, 1, D),
        ``uncond`` zeros, and ``extra``: ``image_latents`` (1, C, h, w) and ``time_ids`` (1, 3)."""
        if image.dim() == 3:
            image = image[None]
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise PriorError(f"SVD image must be (3, H, W) or (1, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        image = image.float().cpu()
        with torch.no_grad():
            # CLIP: squash to the encoder's square size with antialiasing (as the pipeline), normalise
            clip_in = torch.nn.functional.interpolate(image, size=(self.image_size, self.image_size), mode="bicubic",
                                                      align_corners=False, antialias=True).clamp(0, 1)
            clip_in = ((clip_in - self.image_mean) / self.image_std).to(self.device, self.dtype)
            with self._on_device(self.image_encoder) as enc:
                img_emb = enc(clip_in).image_embeds.unsqueeze(1)
            x = resize_hw(image[None], self.render_hw)[0] * 2 - 1
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
            x = (x + self.noise_aug_strength * noise).to(self.device, self.dtype)
            lat = self.vae.encode(x).latent_dist.mode()
        time_ids = torch.tensor([[self.fps - 1, self.motion_bucket_id, self.noise_aug_strength]], dtype=self.dtype,
                                device=self.device)
        return PromptEmbeds(prompt, "", img_emb.to(self.dtype), torch.zeros_like(img_emb, dtype=self.dtype),
                            {"image_latents": lat, "time_ids": time_ids})

    def decode_preview(self, x0: Tensor) -> Tensor:
        B, G = x0.shape[:2]
        flat = (x0.reshape(B * G, *x0.shape[2:]) / self.scaling_factor).to(self.dtype)
        img = self.vae.decode(flat, num_frames=G).sample.float()
        return ((img + 1) / 2).clamp(0, 1).reshape(B, G, *img.shape[1:])

    # ----------------------------------------------------------------- the x0-form noise prediction
    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeds, *, cameras: Optional[Tensor],
                      times: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if "image_latents" not in emb.extra:
            raise PriorError("SVD needs PromptEmbeds from ImageToVideoPrior.encode_image(image)")
        B, G = x_t.shape[:2]
        ab = self._ac.to(self.device)[t.to(self.device)]
        sigma = ((1 - ab) / ab).sqrt()  # (B,) EDM noise level of each clip's timestep
        c_noise = (0.25 * sigma.log()).to(self.dtype)
        lat = emb.extra["image_latents"].to(self.device, self.dtype)
        lat = lat[:, None].expand(B, G, -1, -1, -1)
        xin = x_t.to(self.dtype)  # = c_in z (see the class docstring)
        ids = emb.extra["time_ids"].to(self.device, self.dtype).expand(B, -1)
        cond = emb.cond.to(self.device, self.dtype).expand(B, -1, -1)
        uncond = emb.uncond.to(self.device, self.dtype).expand(B, -1, -1)
        a_in = torch.cat([xin, lat], dim=2)
        u_in = torch.cat([xin, torch.zeros_like(lat)], dim=2)
        with self._on_device(self.unet) as unet:
            if self.attention_slicing:
                F = torch.cat([unet(a_in, c_noise, cond, added_time_ids=ids).sample,
                               unet(u_in, c_noise, uncond, added_time_ids=ids).sample])
            else:
                F = unet(torch.cat([a_in, u_in]), torch.cat([c_noise, c_noise]), torch.cat([cond, uncond]),
                         added_time_ids=torch.cat([ids, ids])).sample
        F = F.float()
        s = torch.cat([sigma, sigma]).float().view(-1, 1, 1, 1, 1)
        z = torch.cat([x_t, x_t]).float() * (s * s + 1).sqrt()
        x0_hat = z / (s * s + 1) - s * F / (s * s + 1).sqrt()
        eps = (z - x0_hat) / s
        eps_c, eps_u = eps.chunk(2)
        return eps_c, eps_u

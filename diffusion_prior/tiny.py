"""Tiny random diffusers priors, saved as real diffusers folders, for tests and the CPU bench.

``tiny_folder(kind, out_dir, seed=0)`` builds every prior kind from small configs (the sizes of
diffusers' tests' ``get_dummy_components``), with random weights drawn from ``seed`` and a LOCAL
CLIP tokenizer (a small word vocabulary written as vocab.json + merges.txt: nothing comes from the
hub), and writes them with ``save_pretrained`` into ``out_dir``: ``model_index.json`` plus one
subfolder per component, exactly what ``load_prior(kind, out_dir)`` reads.

    sd           StableDiffusionPipeline layout: UNet2DConditionModel + AutoencoderKL + CLIP text
    mvdream      the same, the UNet with class_embed_type="projection" (16-d camera class labels)
    zeroscope    TextToVideoSDPipeline layout: UNet3DConditionModel
    animatediff  AnimateDiffPipeline layout: an SD UNet + motion_adapter/ (MotionAdapter)
    svd          StableVideoDiffusionPipeline layout: UNetSpatioTemporalConditionModel +
                 AutoencoderKLTemporalDecoder + CLIPVisionModelWithProjection
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from .loading import canonical_kind, diffusers_modules

WORDS = ("a an the of and next to on top behind red orange yellow green blue purple white black gray ball cube "
         "cone cylinder torus sphere box dog cat car bouncing spinning circling sliding swaying growing still "
         "rolling jumping walking front side back overhead view low motion static statue not moving no blurry "
         "ugly bad quality photo render of").split()
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789,.!?'-")


def _bpe(word: str, ranks: Dict[Tuple[str, str], int]) -> List[str]:
    """CLIP's byte-pair merge of one word (characters, the last one with ``</w>``): repeatedly join
    every occurrence of the lowest-ranked adjacent pair."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), (a, b)) for a, b in zip(parts, parts[1:])]
        r, best = min(pairs)
        if r == 1 << 30:
            break
        out, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                out.append(parts[i] + parts[i + 1])
                i += 2
            else:
                out.append(parts[i])
                i += 1
        parts = out
    return parts


def tokenizer_files(out_dir: str | os.PathLike, words=WORDS) -> Tuple[Path, Path]:
    """Write a CLIP BPE vocabulary whose whole words are single tokens: every character (alone and
    word-final, ``x</w>``) plus merges found by running the BPE itself: while a word still ends in
    several pieces, the merge of its first two pieces is appended (the lowest priority, so it only
    fires where nothing else does and words already whole stay whole). Unknown words fall back to
    characters, so any lowercase ASCII prompt tokenises. Returns (vocab.json, merges.txt)."""
    vocab: List[str] = ["<|startoftext|>", "<|endoftext|>"] + _CHARS + [c + "</w>" for c in _CHARS]
    seen = set(vocab)
    ranks: Dict[Tuple[str, str], int] = {}
    for w in dict.fromkeys(words):
        while len(parts := _bpe(w, ranks)) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            if parts[0] + parts[1] not in seen:
                seen.add(parts[0] + parts[1])
                vocab.append(parts[0] + parts[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    merges = [f"{a} {b}" for (a, b), _ in sorted(ranks.items(), key=lambda kv: kv[1])]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return out / "vocab.json", out / "merges.txt"


def tiny_tokenizer(work_dir: str | os.PathLike):
    """A transformers CLIPTokenizer over :data:`WORDS`, built from local files (77 tokens)."""
    from transformers import CLIPTokenizer

    v, m = tokenizer_files(Path(work_dir) / "_vocab")
    return CLIPTokenizer(str(v), str(m), model_max_length=77)


def tiny_text_encoder(vocab_size: int, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
                                        intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
                                        num_hidden_layers=2, vocab_size=vocab_size, max_position_embeddings=77))


def _sd_scheduler(**kw):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, **kw)


def tiny_components(kind: str, work_dir: str | os.PathLike, seed: int = 0) -> Tuple[str, Dict[str, object]]:
    """``(pipeline class name, {component name: object})`` for a tiny prior of ``kind``."""
    diffusers, transformers = diffusers_modules()
    kind = canonical_kind(kind)
    D = diffusers

    def seeded(i: int):
        torch.manual_seed(seed * 1000 + i)

    with torch.random.fork_rng(devices=[]):
        if kind == "svd":
            seeded(1)
            unet = D.UNetSpatioTemporalConditionModel(
                block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=8, out_channels=4,
                down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
                up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
                num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32,
                num_frames=4)
            seeded(2)
            vae = D.AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                                 down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                                                 latent_channels=4)
            seeded(3)
            enc = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
                hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                intermediate_size=37, patch_size=4))
            sched = D.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                             interpolation_type="linear", num_train_timesteps=1000,
                                             prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                                             steps_offset=1, timestep_spacing="leading", timestep_type="continuous",
                                             use_karras_sigmas=True)
            return "StableVideoDiffusionPipeline", {"unet": unet, "vae": vae, "image_encoder": enc, "scheduler": sched,
                                                    "_preprocessor": {"crop_size": {"height": 32, "width": 32},
                                                                      "size": {"shortest_edge": 32}}}
        tok = tiny_tokenizer(work_dir)
        seeded(4)
        te = tiny_text_encoder(len(tok.get_vocab()))
        seeded(5)
        vae = D.AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3,
                              down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                              latent_channels=4, norm_num_groups=2, sample_size=32)
        seeded(6)
        if kind in ("sd", "mvdream"):
            extra = (dict(class_embed_type="projection", projection_class_embeddings_input_dim=16)
                     if kind == "mvdream" else {})
            unet = D.UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16,
                                          in_channels=4, out_channels=4, attention_head_dim=(4, 8),
                                          down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                          up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                          norm_num_groups=8, **extra)
            comps = {"unet": unet, "vae": vae, "text_encoder": te, "tokenizer": tok, "scheduler": _sd_scheduler()}
            return "StableDiffusionPipeline", comps
        if kind == "zeroscope":
            unet = D.UNet3DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                                          in_channels=4, out_channels=4,
                                          down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                          up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=32,
                                          attention_head_dim=4, norm_num_groups=4)
            return "TextToVideoSDPipeline", {"unet": unet, "vae": vae, "text_encoder": te, "tokenizer": tok,
                                             "scheduler": _sd_scheduler()}
        # animatediff: an SD 1.5-layout UNet (the block types an adapter expects) + a motion adapter
        unet = D.UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=2, sample_size=16, in_channels=4,
                                      out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                      norm_num_groups=4, attention_head_dim=4)
        seeded(7)
        adapter = D.MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=2, motion_norm_num_groups=4,
                                  motion_num_attention_heads=4)
        return "AnimateDiffPipeline", {"unet": unet, "motion_adapter": adapter, "vae": vae, "text_encoder": te,
                                       "tokenizer": tok, "scheduler": _sd_scheduler()}


def _library_of(obj) -> str:
    return "transformers" if type(obj).__module__.startswith("transformers") else "diffusers"


def save_folder(pipeline: str, components: Dict[str, object], out_dir: str | os.PathLike) -> Path:
    """Write components as a diffusers folder: each ``save_pretrained`` into its subfolder, plus the
    ``model_index.json`` DiffusionPipeline.from_pretrained reads."""
    import diffusers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index: Dict[str, object] = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    for name, obj in components.items():
        if name.startswith("_"):
            continue
        obj.save_pretrained(out / name)
        index[name] = [_library_of(obj), type(obj).__name__]
    if "_preprocessor" in components:  # the CLIP image preprocessing SVD's pipeline would apply
        pp = dict(components["_preprocessor"], image_mean=[0.48145466, 0.4578275, 0.40821073],
                  image_std=[0.26862954, 0.26130258, 0.27577711], do_normalize=True, do_resize=True,
                  do_center_crop=True, image_processor_type="CLIPImageProcessor")
        (out / "feature_extractor").mkdir(exist_ok=True)
        (out / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(pp, indent=2))
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    unet = components.get("unet")
    if getattr(getattr(unet, "config", None), "class_embed_type", None) == "projection":
        # multiview.MultiViewPrior reads how its class labels are built from this file
        native = int(unet.config.sample_size) * (2 ** (len(components["vae"].config.block_out_channels) - 1))
        (out / "scene4d_prior.json").write_text(json.dumps({
            "camera": "mvdream", "time_features": 0, "num_views": 4, "native_size": native, "kind": "multiview",
            "prediction_type": "epsilon"}, indent=2) + "\n")
    if pipeline == "StableDiffusionPipeline":
        index.update(safety_checker=[None, None], feature_extractor=[None, None], image_encoder=[None, None],
                     requires_safety_checker=False)
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


def tiny_folder(kind: str, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build a tiny random prior of ``kind`` (sd, mvdream, zeroscope, animatediff, svd, or an alias)
    and save it as a diffusers folder at ``out_dir``; returns the folder."""
    out = Path(out_dir)
    pipeline, comps = tiny_components(kind, out, seed)
    save_folder(pipeline, comps, out)
    vocab = out / "_vocab"
    if vocab.is_dir():
        for f in vocab.iterdir():
            f.unlink()
        vocab.rmdir()
    return out


# ----------------------------------------------------------------------------- real-size configs
def real_configs(kind: str) -> Dict[str, Dict]:
    """The configs of the real models (written here, nothing downloaded), for random-weight cost
    measurements (``bench/sds.py --real``) and the CPU-refusal test: {component: constructor kwargs}.

    sd: SD 2.1-base (UNet 865.9M, 64² latents); mvdream: the same UNet with MVDream's 16-d camera
    projection at 32² latents; zeroscope: UNet3DConditionModel's defaults (ModelScope/zeroscope,
    1411M); animatediff: SD 1.5's UNet (UNet2DConditionModel defaults, 859.5M) + MotionAdapter
    defaults (v1-5-2 layout, 453M); svd: UNetSpatioTemporalConditionModel defaults (1524.6M) with
    14 frames. The VAEs are SD's (128-256-512-512, 83.7M; SVD's with the temporal decoder)."""
    kind = canonical_kind(kind)
    sd_vae = dict(block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3, latent_channels=4,
                  down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                  layers_per_block=2, sample_size=512)
    sd21 = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=[320, 640, 1280, 1280],
                layers_per_block=2, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024,
                use_linear_projection=True,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
    if kind == "sd":
        return {"unet": dict(sd21, _class_name="UNet2DConditionModel"),
                "vae": dict(sd_vae, _class_name="AutoencoderKL")}
    if kind == "mvdream":
        return {"unet": dict(sd21, _class_name="UNet2DConditionModel", sample_size=32, class_embed_type="projection",
                             projection_class_embeddings_input_dim=16),
                "vae": dict(sd_vae, _class_name="AutoencoderKL")}
    if kind == "zeroscope":
        return {"unet": dict(_class_name="UNet3DConditionModel", sample_size=32),
                "vae": dict(sd_vae, _class_name="AutoencoderKL")}
    if kind == "animatediff":
        return {"unet": dict(_class_name="UNet2DConditionModel", sample_size=64, cross_attention_dim=768),
                "motion_adapter": dict(_class_name="MotionAdapter"),
                "vae": dict(sd_vae, _class_name="AutoencoderKL")}
    return {"unet": dict(_class_name="UNetSpatioTemporalConditionModel", num_frames=14, sample_size=96),
            "vae": dict(_class_name="AutoencoderKLTemporalDecoder", block_out_channels=[128, 256, 512, 512],
                        down_block_types=["DownEncoderBlock2D"] * 4, layers_per_block=2, latent_channels=4)}


def write_config_only_folder(kind: str, out_dir: str | os.PathLike) -> Path:
    """A folder with the real model's ``unet/config.json`` and ``vae/config.json`` (no weights) beside
    a tiny tokenizer/text encoder/scheduler: enough for the loader's checks and cost estimate."""
    out = Path(out_dir)
    _, comps = tiny_components("sd" if canonical_kind(kind) != "svd" else "svd", out)
    comps = {k: v for k, v in comps.items() if k not in ("unet", "vae")}
    save_folder("StableDiffusionPipeline", comps, out)
    for name, cfg in real_configs(kind).items():
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "config.json").write_text(json.dumps(cfg, indent=2))
    vocab = out / "_vocab"
    if vocab.is_dir():
        for f in vocab.iterdir():
            f.unlink()
        vocab.rmdir()
    return out

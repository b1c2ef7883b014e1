"""MVDream's released checkpoint (LDM layout) -> a diffusers ``UNet2DConditionModel`` state dict + config.

MVDream (Shi et al. 2023) fine-tunes SD 2.1-base's UNet with two changes: a camera embedding
``camera_embed = Linear(16, 1280) - SiLU - Linear(1280, 1280)`` added to the time embedding, and
self-attention across the views of a group (no new weights). In diffusers' core classes that is a
``UNet2DConditionModel`` with ``class_embed_type="projection"`` and
``projection_class_embeddings_input_dim=16`` (its ``class_embedding`` is a ``TimestepEmbedding``:
linear_1 - SiLU - linear_2, added to the time embedding exactly as MVDream adds the camera's), plus a
view-grouped attention processor (``multiview.py``), which has no weights.

The key map is derived here from the UNet's block structure (re-implemented from the layout of
``openaimodel.UNetModel``, not copied): ``input_blocks.{i}`` / ``middle_block`` / ``output_blocks.{i}``
-> ``down_blocks`` / ``mid_block`` / ``up_blocks``; inside a ResBlock ``in_layers.0/2``,
``emb_layers.1``, ``out_layers.0/3``, ``skip_connection`` -> ``norm1``, ``conv1``, ``time_emb_proj``,
``norm2``, ``conv2``, ``conv_shortcut``; a SpatialTransformer's names (norm, proj_in,
transformer_blocks.k.attn1/attn2/ff/norm1-3, proj_out) are the same in both layouts.

The configuration is read from the checkpoint's shapes (channels, layers per block, which blocks
attend, cross-attention width, linear vs 1x1-conv projections, camera width); the head count
cannot be, so ``num_head_channels`` (LDM's setting; SD 2.x and MVDream: 64) gives it.

Reading: ``torch.load(weights_only=True)`` for ``.pt``/``.ckpt``, safetensors otherwise; nothing
is unpickled. ``python -m diffusion_prior.mvdream_convert CKPT OUT_DIR [--sd-folder SD21_BASE_DIR]``
writes ``OUT_DIR/unet`` (and, with an SD 2.1-base diffusers folder, the rest of a complete folder).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .base import PriorError

UNET_PREFIX = "model.diffusion_model."
RESNET_RENAME = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                 "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
TOP_RENAME = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
              "camera_embed.0": "class_embedding.linear_1", "camera_embed.2": "class_embedding.linear_2",
              "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}


def block_map(block_out_channels: int, layers_per_block: int, down_attn: List[bool],
              up_attn: List[bool]) -> Dict[str, Tuple[str, str]]:
    """LDM module prefix -> (diffusers module prefix, "resnet" | "attn" | "plain") for a UNet with
    ``block_out_channels`` levels (a count), ``layers_per_block`` resnets per down level (one more
    per up level), and attention at the levels flagged."""
    n, L = block_out_channels, layers_per_block
    m: Dict[str, Tuple[str, str]] = {k: (v, "plain") for k, v in TOP_RENAME.items()}
    for b in range(n):
        for j in range(L):
            i = 1 + b * (L + 1) + j
            m[f"input_blocks.{i}.0"] = (f"down_blocks.{b}.resnets.{j}", "resnet")
            if down_attn[b]:
                m[f"input_blocks.{i}.1"] = (f"down_blocks.{b}.attentions.{j}", "attn")
        if b < n - 1:
            m[f"input_blocks.{1 + b * (L + 1) + L}.0.op"] = (f"down_blocks.{b}.downsamplers.0.conv", "plain")
    m["middle_block.0"] = ("mid_block.resnets.0", "resnet")
    m["middle_block.1"] = ("mid_block.attentions.0", "attn")
    m["middle_block.2"] = ("mid_block.resnets.1", "resnet")
    for u in range(n):
        for j in range(L + 1):
            i = u * (L + 1) + j
            m[f"output_blocks.{i}.0"] = (f"up_blocks.{u}.resnets.{j}", "resnet")
            if up_attn[u]:
                m[f"output_blocks.{i}.1"] = (f"up_blocks.{u}.attentions.{j}", "attn")
            if j == L and u < n - 1:
                m[f"output_blocks.{i}.{2 if up_attn[u] else 1}.conv"] = (f"up_blocks.{u}.upsamplers.0.conv", "plain")
    return m


def _rename(key: str, table: Mapping[str, Tuple[str, str]], resnet_table: Mapping[str, str]) -> Optional[str]:
    """Longest matching module prefix of ``key`` in ``table``, renamed; None if none matches."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        pre = ".".join(parts[:cut])
        if pre in table:
            new, kind = table[pre]
            rest = ".".join(parts[cut:])
            if kind == "resnet":
                for a, b in resnet_table.items():
                    if rest == a or rest.startswith(a + "."):
                        rest = b + rest[len(a):]
                        break
                else:
                    return None
            return f"{new}.{rest}"
    return None


def _structure(unet_sd: Mapping[str, Tensor]) -> Tuple[int, int, List[bool], List[bool]]:
    """(levels, layers_per_block, down attention flags, up attention flags) from LDM keys."""
    ins = {int(k.split(".")[1]) for k in unet_sd if k.startswith("input_blocks.")}
    outs = {int(k.split(".")[1]) for k in unet_sd if k.startswith("output_blocks.")}
    n_in, n_out = max(ins) + 1, max(outs) + 1
    downs = [i for i in ins if f"input_blocks.{i}.0.op.weight" in unet_sd]
    levels = len(downs) + 1
    L = (n_in - 1 - len(downs)) // levels
    if levels * (L + 1) != n_out:
        raise PriorError(f"MVDream checkpoint: {n_in} input and {n_out} output blocks do not form a UNet "
                         f"of {levels} levels")
    down_attn = [any(k.startswith(f"input_blocks.{1 + b * (L + 1)}.1.") for k in unet_sd) for b in range(levels)]
    up_attn = [any(k.startswith(f"output_blocks.{u * (L + 1)}.1.") and
                   f"output_blocks.{u * (L + 1)}.1.conv.weight" not in unet_sd for k in unet_sd) for u in range(levels)]
    return levels, L, down_attn, up_attn


def infer_config(unet_sd: Mapping[str, Tensor], *, num_head_channels: int = 64, sample_size: int = 32,
                 norm_num_groups: int = 32) -> Dict:
    """A diffusers UNet2DConditionModel config read from an LDM UNet state dict (keys without the
    ``model.diffusion_model.`` prefix). ``sample_size``: latent size (MVDream: 32, i.e. 256² images);
    ``norm_num_groups`` (GroupNorm groups, not readable from weights): 32 in every SD UNet."""
    levels, L, down_attn, up_attn = _structure(unet_sd)
    chans = [int(unet_sd[f"input_blocks.{1 + b * (L + 1)}.0.out_layers.3.weight"].shape[0]) for b in range(levels)]
    attn_w = next((v for k, v in unet_sd.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in unet_sd.items() if k.endswith(".proj_in.weight")), None)
    heads = [max(1, c // num_head_channels) for c in chans]
    cfg = {
        "sample_size": sample_size,
        "in_channels": int(unet_sd["input_blocks.0.0.weight"].shape[1]),
        "out_channels": int(unet_sd["out.2.weight"].shape[0]),
        "block_out_channels": chans,
        "layers_per_block": L,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in down_attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in up_attn],
        "attention_head_dim": heads,  # diffusers' name for the head *count* of SD-style UNets
        "cross_attention_dim": int(attn_w.shape[1]) if attn_w is not None else 1024,
        "use_linear_projection": bool(proj_in is not None and proj_in.dim() == 2),
        "norm_num_groups": norm_num_groups,
    }
    if "camera_embed.0.weight" in unet_sd:
        cfg["class_embed_type"] = "projection"
        cfg["projection_class_embeddings_input_dim"] = int(unet_sd["camera_embed.0.weight"].shape[1])
    return cfg


def load_checkpoint(path: str | os.PathLike) -> Dict[str, Tensor]:
    """A checkpoint's tensors: ``.safetensors`` via safetensors, anything else with
    ``torch.load(weights_only=True)`` (no arbitrary unpickling); a ``state_dict`` wrapper is opened."""
    p = Path(path)
    if not p.is_file():
        raise PriorError(f"MVDream checkpoint {p}: no such file (the released one is sd-v2.1-base-4view.pt)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(p)))
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise PriorError(f"MVDream checkpoint {p}: not a plain tensor checkpoint ({type(e).__name__}); "
                         "it is read with torch.load(weights_only=True) only") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return dict(sd)


def convert_mvdream_checkpoint(checkpoint, *, num_head_channels: int = 64, sample_size: int = 32,
                               norm_num_groups: int = 32,
                               config: Optional[Dict] = None) -> Tuple[Dict[str, Tensor], Dict]:
    """MVDream LDM checkpoint (a path, or a state dict with ``model.diffusion_model.*`` and
    ``camera_embed.*`` keys, with or without the prefix) -> ``(diffusers state dict, config)``
    loadable with ``UNet2DConditionModel.from_config(config).load_state_dict(sd)``. Keys outside
    the UNet (VAE ``first_stage_model.*``, text encoder ``cond_stage_model.*``) are ignored; a UNet
    key the map does not know is an error (never silently dropped)."""
    sd = load_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else dict(checkpoint)
    unet: Dict[str, Tensor] = {}
    for k, v in sd.items():
        if k.startswith(UNET_PREFIX):
            unet[k[len(UNET_PREFIX):]] = v
        elif k.startswith(("camera_embed.", "model.camera_embed.")):
            unet["camera_embed." + k.split("camera_embed.", 1)[1]] = v
        elif not k.startswith(("first_stage_model.", "cond_stage_model.", "model_ema.", "betas", "alphas",
                               "sqrt_", "log_one_minus", "posterior_", "logvar")) and "." in k and \
                k.split(".")[0] in ("input_blocks", "middle_block", "output_blocks", "time_embed", "out"):
            unet[k] = v  # already unprefixed
    if "input_blocks.0.0.weight" not in unet:
        raise PriorError("MVDream checkpoint: no UNet found (expected keys model.diffusion_model.input_blocks...)")
    if config is not None:
        cfg = dict(config)
    else:
        cfg = infer_config(unet, num_head_channels=num_head_channels, sample_size=sample_size,
                           norm_num_groups=norm_num_groups)
    levels, L, down_attn, up_attn = _structure(unet)
    table = block_map(levels, L, down_attn, up_attn)
    out: Dict[str, Tensor] = {}
    unknown = []
    for k, v in unet.items():
        new = _rename(k, table, RESNET_RENAME)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise PriorError(f"MVDream checkpoint: {len(unknown)} UNet keys have no diffusers name, e.g. {unknown[0]}")
    return out, cfg


def to_ldm_state_dict(diffusers_sd: Mapping[str, Tensor], config: Mapping, *,
                      prefix: str = UNET_PREFIX) -> Dict[str, Tensor]:
    """The inverse map: a diffusers UNet2DConditionModel state dict -> LDM/MVDream key names, all
    under ``prefix`` (the camera embedding as ``{prefix}camera_embed.*``). Used to test the converter."""
    n = len(config["block_out_channels"])
    L = int(config["layers_per_block"])
    down_attn = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    table = block_map(n, L, down_attn, up_attn)
    inv = {v[0]: (k, v[1]) for k, v in table.items()}
    inv_res = {b: a for a, b in RESNET_RENAME.items()}
    out: Dict[str, Tensor] = {}
    for k, v in diffusers_sd.items():
        new = _rename(k, inv, inv_res)
        if new is None:
            raise PriorError(f"no LDM name for diffusers key {k}")
        out[prefix + new] = v
    return out


def save_converted(checkpoint, out_dir: str | os.PathLike, *, sd_folder: Optional[str | os.PathLike] = None,
                   num_head_channels: int = 64, sample_size: int = 32, norm_num_groups: int = 32) -> Path:
    """Convert and write ``out_dir/unet`` (config.json + diffusion_pytorch_model.safetensors); with
    ``sd_folder`` (an SD 2.1-base diffusers folder) copy its tokenizer, text encoder, VAE and
    scheduler beside it, making a complete folder for ``--prior mvdream:OUT_DIR``."""
    from diffusers import UNet2DConditionModel

    sd, cfg = convert_mvdream_checkpoint(checkpoint, num_head_channels=num_head_channels, sample_size=sample_size,
                                         norm_num_groups=norm_num_groups)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg)
    unet.load_state_dict(sd, strict=True, assign=True)
    out = Path(out_dir)
    unet.save_pretrained(out / "unet")
    if sd_folder is not None:
        src = Path(sd_folder)
        for sub in ("tokenizer", "text_encoder", "vae", "scheduler"):
            if not (src / sub).is_dir():
                raise PriorError(f"{src}: {sub}/ is missing; it must be an SD 2.1-base diffusers folder")
            shutil.copytree(src / sub, out / sub, dirs_exist_ok=True)
        index = json.loads((src / "model_index.json").read_text()) if (src / "model_index.json").is_file() else {}
        index.update({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
        (out / "model_index.json").write_text(json.dumps(index, indent=2))
        # how multiview.MultiViewPrior builds the class labels: MVDream's 16-d camera, 4 views at 256²
        (out / "scene4d_prior.json").write_text(json.dumps({
            "camera": "mvdream", "time_features": 0, "num_views": 4, "native_size": sample_size * 8,
            "kind": "multiview", "prediction_type": "epsilon"}, indent=2) + "\n")
    return out


def main(argv=None) -> None:  # pragma: no cover - thin CLI
    import argparse

    ap = argparse.ArgumentParser(description="Convert MVDream's sd-v2.1-base-4view.pt to a diffusers folder")
    ap.add_argument("checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--sd-folder", help="an SD 2.1-base diffusers folder to take tokenizer/text encoder/VAE from")
    ap.add_argument("--num-head-channels", type=int, default=64)
    a = ap.parse_args(argv)
    print(save_converted(a.checkpoint, a.out_dir, sd_folder=a.sd_folder, num_head_channels=a.num_head_channels))


if __name__ == "__main__":  # pragma: no cover
    main()

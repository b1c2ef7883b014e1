"""The embedded toy prior's model: a miniature pixel-space Stable Diffusion in diffusers layout.

* a local word-level ``CLIPTokenizer`` (vocab.json + merges.txt written here: no hub) and a tiny
  ``CLIPTextModel`` trained jointly with the U-Net;
* a ``UNet2DConditionModel`` on 32x32 RGB pixels (no VAE), cross-attention only at the two coarse
  levels (attention at full resolution costs 8x at 64x64 on a CPU, text_to_4d.md 5.3), class labels
  = MVDream camera (16) + time features (8), multi-view self-attention over each group;
* ``DDPMScheduler(squaredcos_cap_v2)`` (pixel-space models do better with the cosine schedule).

It is loaded with :class:`~diffusion_prior.multiview.MultiViewPrior`, exactly as a real MVDream-style
checkpoint is. :func:`training_loss` is the epsilon-prediction loss (Ho et al. 2020, eq. 14) with
classifier-free dropout of the text and of the camera (Ho & Salimans 2022).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .multiview import MultiViewPrior
from .schedule import alphas_cumprod

TOY_CONFIG = {
    "kind": "multiview",
    "camera": "mvdream",
    "time_features": 8,
    "num_views": 4,
    "native_size": 32,
    "prediction_type": "epsilon",
    "scheduler": {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                  "clip_sample": False},
}


def write_word_tokenizer(words: Iterable[str], folder: Path, max_length: int = 24) -> Path:
    """A CLIP BPE tokenizer whose merges build each of ``words`` whole (every letter is in the
    vocabulary too, so an unknown word still tokenizes, letter by letter)."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    merges = []
    for w in sorted({w.lower() for w in words}):
        if not w.isalpha():
            raise ValueError(f"toy vocabulary words are letters only, got {w!r}")
        toks = list(w[:-1]) + [w[-1] + "</w>"]
        cur = toks[0]
        for t in toks[1:]:
            new = cur + t
            if new not in vocab:
                vocab[new] = len(vocab)
                merges.append((cur, t))
            cur = new
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        tok = CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"), model_max_length=max_length,
                            pad_token="<|endoftext|>")
    folder = Path(folder)
    tok.save_pretrained(folder)
    return folder


def new_toy_prior(words: Sequence[str], *, size: int = 32, channels: Tuple[int, ...] = (32, 64, 128),
                  text_dim: int = 64, text_layers: int = 2, seed: int = 0, max_length: int = 24,
                  heads: int = 8, prediction_type: str = "epsilon") -> MultiViewPrior:
    """A freshly initialised toy prior (random weights, seeded). ``heads``: attention heads per layer
    (diffusers' ``attention_head_dim`` is, for this U-Net, the head count); one head of the full
    width trains ~3x faster on a CPU than eight of 4-8 channels (the CPU attention kernel is slow
    on narrow heads). ``prediction_type``: "epsilon" (the shipped prior) or "v_prediction"
    (Salimans & Ho 2022: at the top of the schedule v is about the clean image, which an epsilon
    model can only express as its error divided by ~0 -- the time expert's whole range)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as d:
        write_word_tokenizer(words, Path(d) / "tok", max_length)
        tok = CLIPTokenizer.from_pretrained(Path(d) / "tok", local_files_only=True)
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=text_dim, intermediate_size=2 * text_dim, num_hidden_layers=text_layers,
        num_attention_heads=4, max_position_embeddings=max_length, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, projection_dim=text_dim))
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type is epsilon or v_prediction, got {prediction_type!r}")
    cfg = dict(TOY_CONFIG, native_size=size, prediction_type=prediction_type,
               scheduler=dict(TOY_CONFIG["scheduler"], prediction_type=prediction_type))
    unet = UNet2DConditionModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=tuple(channels), layers_per_block=2,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",),
        cross_attention_dim=text_dim, attention_head_dim=heads, norm_num_groups=8,
        class_embed_type="projection", projection_class_embeddings_input_dim=16 + cfg["time_features"])
    prior = MultiViewPrior(tok, te, unet, alphas_cumprod("squaredcos_cap_v2"), cfg)
    return prior


def trainable_parameters(prior: MultiViewPrior):
    return list(prior.unet.parameters()) + list(prior.text_encoder.parameters())


def training_loss(prior: MultiViewPrior, images: Tensor, cameras: Tensor, times: Tensor, prompts: Sequence[str],
                  generator: Optional[torch.Generator] = None, *, p_drop_text: float = 0.1,
                  p_drop_camera: float = 0.1, high_t_share: float = 0.0, high_t_from: float = 0.5) -> Tensor:
    """Epsilon- (or v-, by the prior's ``prediction_type``) prediction MSE on groups: images (B, G, 3, s, s) in [0, 1], cameras (B, G, 4, 4),
    times (B, G), one prompt per group. One timestep per group (the SDS step noises a group at one
    timestep too; ``high_t_share`` of them from ``[high_t_from, 1) x T``). Dropped texts become the
    empty prompt, dropped cameras the zero vector; the
    noise and drops come from ``generator`` (on the CPU) so a resumed run draws the same ones."""
    B, G = images.shape[:2]
    dev = prior.device
    T = len(prior.alphas_cumprod)
    t = torch.randint(0, T, (B,), generator=generator)
    if high_t_share > 0:  # a share of groups from the top of the schedule (no extra draws when off)
        top = torch.randint(int(high_t_from * T), T, (B,), generator=generator)
        t = torch.where(torch.rand(B, generator=generator) < high_t_share, top, t)
    noise = torch.randn(images.shape, generator=generator)
    drop_text = torch.rand(B, generator=generator) < p_drop_text
    drop_cam = torch.rand(B, generator=generator) < p_drop_camera
    noise = noise.to(dev)
    x0 = images.to(dev) * 2 - 1
    a = prior.alphas_cumprod.float()[t].view(B, 1, 1, 1, 1).to(dev)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    texts = ["" if d else p for p, d in zip(prompts, drop_text.tolist())]
    states = prior.text_states(prior.tokenize(texts))  # (B, L, D), trained
    states = states.repeat_interleave(G, dim=0)
    labels = prior.class_labels(cameras.to(dev), times.to(dev), drop_camera=drop_cam.to(dev))
    out = prior.unet_eps(x_t.flatten(0, 1), t.to(dev).repeat_interleave(G), states, labels, G)
    target = noise if prior.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0  # v
    return F.mse_loss(out, target.flatten(0, 1))

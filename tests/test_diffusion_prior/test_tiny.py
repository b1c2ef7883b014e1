"""tiny.py: a local CLIP tokenizer (no hub) and seeded, saved, reloadable tiny folders."""

import json

import pytest
import torch

pytest.importorskip("transformers")


def test_local_tokenizer_whole_words(tmp_path):
    from diffusion_prior.tiny import tiny_tokenizer

    tok = tiny_tokenizer(tmp_path)
    ids = tok("A red ball bouncing, front view").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "red</w>", "ball</w>", "bouncing</w>",
                                              ",</w>", "front</w>", "view</w>", "<|endoftext|>"]
    # unknown words fall back to characters instead of failing
    assert tok.convert_ids_to_tokens(tok("zebra").input_ids)[1:-1] == ["z", "e", "b", "r", "a</w>"]


def test_tiny_folder_is_a_diffusers_folder_and_seeded(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    from diffusion_prior.tiny import tiny_folder

    d = tiny_dir("sd")
    index = json.loads((d / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert (d / "tokenizer").is_dir() and not (d / "_vocab").exists()
    same = tiny_folder("sd", tmp_path / "again", seed=0)
    other = tiny_folder("sd", tmp_path / "other", seed=1)
    w = "unet/diffusion_pytorch_model.safetensors"
    a, b, c = (load_file(str(p / w)) for p in (d, same, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tiny_folder_loads_with_diffusers_pipeline(tiny_dir):
    """Our writer's folder is also what DiffusionPipeline.from_pretrained expects."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_dir("zeroscope"), local_files_only=True)
    assert type(pipe).__name__ == "TextToVideoSDPipeline"

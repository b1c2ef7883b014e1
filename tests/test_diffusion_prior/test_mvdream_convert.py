"""MVDream LDM-layout checkpoint -> diffusers UNet2DConditionModel: a tiny random UNet mapped to LDM
names with the inverse map, saved as MVDream saves it, converted back: bit-identical outputs."""

import pytest
import torch

from diffusion_prior import PriorError
from diffusion_prior.mvdream_convert import convert_mvdream_checkpoint, save_converted, to_ldm_state_dict

diffusers = pytest.importorskip("diffusers")

CFG = dict(block_out_channels=(32, 64, 64), layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
           attention_head_dim=(4, 8, 8),
           down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
           up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
           norm_num_groups=8, use_linear_projection=True, class_embed_type="projection",
           projection_class_embeddings_input_dim=16)


def _unet(**over):
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(**dict(CFG, **over)).eval()


def _same_outputs(a, b):
    g = torch.Generator().manual_seed(0)
    x, e = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 7, 32, generator=g)
    cam = torch.randn(2, 16, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        return torch.equal(a(x, t, e, class_labels=cam).sample, b(x, t, e, class_labels=cam).sample)


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_round_trip_bit_identical(tmp_path, fmt):
    u = _unet()
    ldm = to_ldm_state_dict(u.state_dict(), u.config)
    assert "model.diffusion_model.camera_embed.0.weight" in ldm and "model.diffusion_model.out.2.weight" in ldm
    ldm["first_stage_model.encoder.conv_in.weight"] = torch.zeros(3)  # other parts of the LDM checkpoint: ignored
    path = tmp_path / f"mv.{fmt}"
    if fmt == "pt":
        torch.save({"state_dict": ldm}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in ldm.items()}, str(path))
    sd, cfg = convert_mvdream_checkpoint(path, num_head_channels=8, sample_size=8, norm_num_groups=8)
    assert cfg["class_embed_type"] == "projection" and cfg["projection_class_embeddings_input_dim"] == 16
    assert cfg["attention_head_dim"] == [4, 8, 8] and cfg["use_linear_projection"] is True
    v = diffusers.UNet2DConditionModel.from_config(cfg).eval()
    v.load_state_dict(sd, strict=True)
    assert _same_outputs(u, v)


def test_conv_projection_and_unprefixed_camera(tmp_path):
    """SD 1.x-style 1x1-conv projections; a camera embedding stored outside the UNet prefix."""
    u = _unet(use_linear_projection=False)
    ldm = to_ldm_state_dict(u.state_dict(), u.config)
    for k in [k for k in ldm if ".camera_embed." in k]:
        ldm[k.replace("model.diffusion_model.", "")] = ldm.pop(k)
    sd, cfg = convert_mvdream_checkpoint(ldm, num_head_channels=8, sample_size=8, norm_num_groups=8)
    assert cfg["use_linear_projection"] is False
    v = diffusers.UNet2DConditionModel.from_config(cfg).eval()
    v.load_state_dict(sd, strict=True)
    assert _same_outputs(u, v)
    out = save_converted(ldm, tmp_path / "mv", num_head_channels=8, sample_size=8, norm_num_groups=8)
    w = diffusers.UNet2DConditionModel.from_pretrained(out / "unet", local_files_only=True).eval()
    assert _same_outputs(u, w)


def test_unknown_unet_key_is_an_error():
    u = _unet()
    ldm = to_ldm_state_dict(u.state_dict(), u.config)
    ldm["model.diffusion_model.input_blocks.1.0.mystery.weight"] = torch.zeros(1)
    with pytest.raises(PriorError, match="no diffusers name"):
        convert_mvdream_checkpoint(ldm, num_head_channels=8, sample_size=8, norm_num_groups=8)


class Evil:
    """Stands for any pickled Python object a checkpoint could smuggle in."""


def test_pickled_objects_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(PriorError, match="weights_only"):
        convert_mvdream_checkpoint(p)

"""load_prior / describe_folder: kinds, spec strings, and the one-line errors of bad input."""

import shutil

import pytest
import torch

from diffusion_prior import PriorError
from diffusion_prior.loading import describe_folder, load_prior, parse_prior_spec


def test_parse_spec():
    assert parse_prior_spec("sd:/m/sd21") == ("sd", "/m/sd21")
    assert parse_prior_spec("modelscope:x") == ("zeroscope", "x")
    assert parse_prior_spec("animatediff:/a,/b") == ("animatediff", "/a,/b")
    with pytest.raises(PriorError, match="KIND:PATH"):
        parse_prior_spec("/m/sd21")
    with pytest.raises(PriorError, match="unknown prior kind"):
        parse_prior_spec("dalle:/x")


def test_missing_path(tmp_path):
    hint = "no such folder.*huggingface-cli download .* --local-dir DIR.*--prior sd:DIR"
    with pytest.raises(PriorError, match=hint) as e:
        load_prior("sd", tmp_path / "nope", device="cpu")
    assert "\n" not in str(e.value)


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(PriorError, match="is a file, not a diffusers folder"):
        load_prior("sd", f, device="cpu")


def test_not_a_diffusers_folder(tmp_path):
    with pytest.raises(PriorError, match="model_index.json is missing.*huggingface-cli download"):
        load_prior("sd", tmp_path, device="cpu")


def test_missing_component_file_named(tiny_dir, tmp_path):
    d = tmp_path / "sd"
    shutil.copytree(tiny_dir("sd"), d)
    (d / "text_encoder" / "config.json").unlink()
    with pytest.raises(PriorError, match="text_encoder/config.json is missing"):
        load_prior("sd", d, device="cpu")
    shutil.rmtree(d / "unet")
    with pytest.raises(PriorError, match="unet/config.json is missing"):
        load_prior("sd", d, device="cpu")


def test_missing_weights_named(tiny_dir, tmp_path):
    d = tmp_path / "sd"
    shutil.copytree(tiny_dir("sd"), d)
    (d / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(PriorError, match="unet/diffusion_pytorch_model.safetensors is missing"):
        load_prior("sd", d, device="cpu")


@pytest.mark.parametrize("held,asked,words", [("zeroscope", "sd", "text-to-video prior.*--video-prior zeroscope:"),
                                              ("svd", "sd", "image-to-video prior.*--video-prior svd:"),
                                              ("sd", "zeroscope", "image prior.*--prior sd:"),
                                              ("mvdream", "sd", "multi-view prior.*mvdream:")])
def test_wrong_kind(tiny_dir, held, asked, words):
    with pytest.raises(PriorError, match=words):
        load_prior(asked, tiny_dir(held), device="cpu")


def test_real_size_prior_refused_on_cpu(tmp_path):
    from diffusion_prior.tiny import write_config_only_folder

    d = write_config_only_folder("sd", tmp_path / "sd21")
    refusal = r"real-size prior \(UNet 866M params.*about \d+ s on this CPU.*allow_cpu=True"
    with pytest.raises(PriorError, match=refusal):
        load_prior("sd", d, device="cpu")
    # allowed: the cost check passes and the next problem (no weights here) is named instead
    with pytest.raises(PriorError, match="unet/diffusion_pytorch_model.safetensors is missing"):
        load_prior("sd", d, device="cpu", allow_cpu=True)
    z = write_config_only_folder("zeroscope", tmp_path / "zs")
    with pytest.raises(PriorError, match=r"UNet 1411M params, 16 x 320x576.*about \d+ min on this CPU"):
        load_prior("zeroscope", z, device="cpu", size=(320, 576))


def test_cuda_without_gpu(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(PriorError, match="no CUDA device"):
        load_prior("sd", tiny_dir("sd"), device="cuda")
    with pytest.raises(PriorError, match="fp16 on the CPU"):
        load_prior("sd", tiny_dir("sd"), device="cpu", dtype="fp16")


def test_describe_folder(tiny_dir):
    info = describe_folder(tiny_dir("animatediff"))
    assert info.kind == "animatediff" and info.pipeline == "AnimateDiffPipeline"
    assert info.components["motion_adapter"] == "MotionAdapter" and info.missing == ()
    assert describe_folder(tiny_dir("svd")).kind == "svd"
    assert describe_folder(tiny_dir("mvdream")).kind == "mvdream"
    assert "unet parameters" in str(info)


def test_mvdream_kind_delegates_to_multiview(tiny_dir):
    """mvdream:PATH goes to multiview.MultiViewPrior (the lead's module) when it exists."""
    try:
        from diffusion_prior.multiview import MultiViewPrior  # noqa: F401
    except ImportError:
        with pytest.raises(PriorError, match="multiview"):
            load_prior("mvdream", tiny_dir("mvdream"), device="cpu")
        return
    p = load_prior("mvdream", tiny_dir("mvdream"), device="cpu")
    assert p.needs_cameras and p.group_size == 4


def test_hub_id_offline_is_one_line(monkeypatch):
    """A string that is no path but looks like a hub id goes to diffusers; offline, that fails as a
    PriorError with the download hint (nothing is fetched: HF_HUB_OFFLINE is set)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import by some versions
    with pytest.raises(PriorError, match="hub model id failed.*huggingface-cli download") as e:
        load_prior("sd", "nobody-here/no-such-model", device="cpu")
    assert "\n" not in str(e.value)


def test_no_heavy_imports_until_used():
    """Importing the prior modules pulls in neither diffusers nor transformers (STYLE habit 8)."""
    import subprocess
    import sys

    code = ("import sys, diffusion_prior, diffusion_prior.loading, diffusion_prior.image, diffusion_prior.video, "
            "diffusion_prior.tiny, diffusion_prior.mvdream_convert; "
            "bad = [m for m in ('diffusers', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/tests/", 1)[0])

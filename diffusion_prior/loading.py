"""Load a diffusers-backed prior from a folder (or a hub id), with one-line, actionable errors.

    load_prior(kind, path, *, device=None, dtype=None, allow_cpu=False, **options) -> DiffusionPrior
    parse_prior_spec("sd:DIR") -> ("sd", "DIR")
    describe_folder(path) -> FolderInfo   (what a folder holds, without loading weights)

Kinds (the ``KIND`` of ``--prior KIND:PATH`` / ``--video-prior KIND:PATH``):

    sd | image                   Stable Diffusion layout     -> image.StableDiffusionPrior
    mvdream | multiview          SD layout + camera UNet     -> multiview.MultiViewPrior (the lead's module)
    zeroscope | modelscope | video   UNet3DConditionModel    -> video.TextToVideoPrior
    animatediff                  "DIR" or "SD_DIR,ADAPTER_DIR"   -> video.TextToVideoPrior (UNetMotionModel)
    svd | image_to_video         Stable Video Diffusion      -> video.ImageToVideoPrior

Nothing here imports diffusers or transformers at import time. Local folders are always read with
``local_files_only=True``; a string that is not an existing path but looks like a hub id
(``owner/name``) is handed to diffusers as such, for users with a network.

Before any weight is read, the folder is checked (which file is missing, which kind of prior it
really holds) and, on a machine without a GPU, the cost of one SDS step is estimated from the UNet's
parameter count (built on the meta device from its config) and refused when it is a real-size model,
unless ``allow_cpu=True``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from .base import DiffusionPrior, PriorError

KIND_ALIASES = {
    "sd": "sd", "image": "sd", "stable-diffusion": "sd",
    "mvdream": "mvdream", "multiview": "mvdream", "multi-view": "mvdream",
    "zeroscope": "zeroscope", "modelscope": "zeroscope", "video": "zeroscope",
    "animatediff": "animatediff",
    "svd": "svd", "image_to_video": "svd", "image-to-video": "svd",
}
"""Accepted spellings of each prior kind -> its canonical name."""

UNET_KIND = {
    "UNet2DConditionModel": "sd",
    "UNet3DConditionModel": "zeroscope",
    "UNetMotionModel": "animatediff",
    "UNetSpatioTemporalConditionModel": "svd",
}
"""The kind of prior a folder holds, read from ``unet/config.json``'s ``_class_name``."""

KIND_WORDS = {"sd": "an image prior (Stable Diffusion layout)", "mvdream": "a multi-view prior (MVDream)",
              "zeroscope": "a text-to-video prior (UNet3DConditionModel, ModelScope/zeroscope)",
              "animatediff": "an AnimateDiff video prior (UNetMotionModel / MotionAdapter)",
              "svd": "an image-to-video prior (Stable Video Diffusion)"}

HUB_EXAMPLES = {"sd": "stabilityai/stable-diffusion-2-1-base", "mvdream": "ashawkey/mvdream-sd2.1-diffusers",
                "zeroscope": "cerspense/zeroscope_v2_576w", "animatediff": "guoyww/animatediff-motion-adapter-v1-5-2",
                "svd": "stabilityai/stable-video-diffusion-img2vid"}

# Measured here (research note §2, one torch thread, fp32): SD 2.1-base UNet (865.9M params) at a
# 64x64 latent with CFG (batch 2): 15.5 s; its VAE encoder (34.2M params) forward + backward at 512²:
# 29 s. Cost is taken as proportional to params x pixels x images; these are the two constants.
_UNET_S_PER_PARAM_PX = 15.5 / (865.9e6 * 64 * 64 * 2)
_VAE_S_PER_PARAM_PX = 29.0 / (34.2e6 * 512 * 512)
CPU_REFUSE_SECONDS = 10.0
"""A prior whose estimated SDS step on ONE thread exceeds this is 'real size' and refused on the CPU
(tiny and toy priors take ~0.1 s; SD 2.1-base ~45 s), whatever the thread count."""


def diffusers_modules():
    """``(diffusers, transformers)``, imported on use; a missing one is a PriorError naming the extra."""
    try:
        import diffusers
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise PriorError(f"diffusion priors need diffusers and transformers ({e.name} is missing): "
                         "pip install 'scene4d[diffusion]'") from e
    return diffusers, transformers


# ---------------------------------------------------------------------------------------------- specs
def canonical_kind(kind: str) -> str:
    k = KIND_ALIASES.get(kind.strip().lower())
    if k is None:
        raise PriorError(f"unknown prior kind {kind!r}; choose one of sd, mvdream, zeroscope, animatediff, svd "
                         "(analytic and toy priors are made by scene4d, not loaded from a folder)")
    return k


def parse_prior_spec(spec: str) -> Tuple[str, str]:
    """``"KIND:PATH"`` -> ``(canonical kind, PATH)``; PATH may be ``"SD_DIR,ADAPTER_DIR"`` for animatediff."""
    if ":" not in spec:
        raise PriorError(f"prior {spec!r}: write KIND:PATH, e.g. sd:/models/sd21-base (kinds: sd, mvdream, "
                         "zeroscope, animatediff, svd)")
    kind, path = spec.split(":", 1)
    if not path:
        raise PriorError(f"prior {spec!r}: the path after '{kind}:' is empty")
    return canonical_kind(kind), path


def looks_like_hub_id(path: str) -> bool:
    return (re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", path) is not None and not path.startswith((".", "~"))
            and not os.path.isabs(path))


def _download_hint(kind: str, spec_kind: Optional[str] = None) -> str:
    ex = HUB_EXAMPLES.get(kind, "ID")
    return (f"on a machine with a network run `huggingface-cli download {ex} --local-dir DIR` (or another "
            f"model id), copy DIR here, then use --prior {spec_kind or kind}:DIR")


@dataclass(frozen=True)
class Source:
    """Where a prior's files come from: a local folder (``local``) or a hub id."""

    path: str
    local: bool

    def kwargs(self) -> Dict[str, Any]:
        return {"local_files_only": True} if self.local else {}

    def read_json(self, rel: str) -> Optional[Dict[str, Any]]:
        """A JSON file of the folder, or None where missing (hub ids: fetched through huggingface_hub)."""
        if self.local:
            p = Path(self.path) / rel
            if not p.is_file():
                return None
            try:
                return json.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise PriorError(f"{p}: not readable JSON ({e}); the folder looks damaged, download it again") from e
        try:  # pragma: no cover - needs a network
            from huggingface_hub import hf_hub_download
            return json.loads(Path(hf_hub_download(self.path, rel)).read_text())
        except Exception:  # pragma: no cover
            return None


def resolve_source(path: str | os.PathLike, kind: str) -> Source:
    """An existing folder (local), or a hub id passed through; anything else is a PriorError."""
    s = os.fspath(path)
    p = Path(s).expanduser()
    if p.exists():
        if not p.is_dir():
            raise PriorError(f"{kind}:{s} is a file, not a diffusers folder (model_index.json + unet/ ...); "
                             "a single-file checkpoint must be converted first (diffusers' from_single_file, "
                             f"then save_pretrained), or {_download_hint(kind)}")
        return Source(str(p), True)
    if looks_like_hub_id(s):
        return Source(s, False)
    raise PriorError(f"{kind}:{s}: no such folder; {_download_hint(kind)}")


# --------------------------------------------------------------------------------------- inspection
@dataclass(frozen=True)
class FolderInfo:
    """What a diffusers folder holds, read from its JSON files only (no weights loaded)."""

    path: str
    pipeline: Optional[str]
    """``model_index.json``'s ``_class_name`` (None where the file is missing)."""
    components: Dict[str, str]
    """Component subfolder -> class name (from model_index.json, else from each ``config.json``)."""
    unet_class: Optional[str]
    kind: Optional[str]
    """The prior kind the folder holds (sd, mvdream, zeroscope, animatediff, svd), None if unknown."""
    unet_params: Optional[int] = None
    missing: Tuple[str, ...] = ()
    """Files a prior of this kind needs that are absent."""
    unet_config: Dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        lines = [f"{self.path}: {KIND_WORDS.get(self.kind or '', 'not a known prior')}"
                 + (f" [{self.pipeline}]" if self.pipeline else "")]
        for name, cls in sorted(self.components.items()):
            lines.append(f"  {name}/: {cls}")
        if self.unet_params:
            lines.append(f"  unet parameters: {self.unet_params / 1e6:.1f}M")
        for m in self.missing:
            lines.append(f"  missing: {m}")
        return "\n".join(lines)


_WEIGHT_PATTERNS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin", "model*.safetensors",
                    "pytorch_model*.bin", "diffusion_pytorch_model*.safetensors.index.json")


def _has_weights(folder: Path) -> bool:
    return any(next(folder.glob(pat), None) is not None for pat in _WEIGHT_PATTERNS)


def required_files(kind: str, unet_class: Optional[str] = None) -> Tuple[str, ...]:
    """The files (relative paths) a folder of this kind must hold; weights are checked separately."""
    text = ("text_encoder/config.json", "tokenizer", "scheduler/scheduler_config.json")
    if kind == "svd":
        return ("unet/config.json", "vae/config.json", "image_encoder/config.json", "scheduler/scheduler_config.json")
    if kind in ("zeroscope",):
        return ("unet/config.json", "vae/config.json") + text
    if kind == "animatediff":
        return ("unet/config.json", "vae/config.json") + text
    return ("unet/config.json",) + text  # sd / mvdream: vae/ optional for pixel-space UNets


def describe_folder(path: str | os.PathLike, kind: Optional[str] = None) -> FolderInfo:
    """Read a folder's model_index.json and config files; say which prior kind it holds and, if
    ``kind`` is given, which of that kind's files are missing. Raises PriorError only for a path
    that does not exist or is not a folder."""
    kind = canonical_kind(kind) if kind else None
    src = resolve_source(path, kind or "prior")
    if not src.local:
        raise PriorError(f"{path}: describe_folder reads local folders only; download it first "
                         f"({_download_hint(kind or 'sd')})")
    p = Path(src.path)
    index = src.read_json("model_index.json")
    comps: Dict[str, str] = {}
    if index:
        for k, v in index.items():
            if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[1]:
                comps[k] = v[1]
    for sub in sorted(p.iterdir()):
        cfg = sub / "config.json"
        if sub.is_dir() and sub.name not in comps:
            if cfg.is_file():
                comps[sub.name] = json.loads(cfg.read_text()).get("_class_name", "?")
            elif (sub / "scheduler_config.json").is_file():
                comps[sub.name] = json.loads((sub / "scheduler_config.json").read_text()).get("_class_name", "?")
            elif (sub / "tokenizer_config.json").is_file() or (sub / "vocab.json").is_file():
                comps[sub.name] = "tokenizer"
    unet_cfg = src.read_json("unet/config.json") or {}
    unet_class = unet_cfg.get("_class_name")
    held = UNET_KIND.get(unet_class or "")
    if held == "sd" and (p / "motion_adapter" / "config.json").is_file():
        held = "animatediff"
    elif held == "sd" and unet_cfg.get("class_embed_type") == "projection":
        held = "mvdream"
    missing = []
    want = kind or held
    if index is None and not unet_cfg:
        missing.append("model_index.json")
    if want:
        for rel in required_files(want, unet_class):
            q = p / rel
            if not (q.is_dir() if rel == "tokenizer" else q.is_file()):
                missing.append(rel + ("/ (vocab.json + merges.txt or tokenizer.json)" if rel == "tokenizer" else ""))
        for sub in ("unet", "text_encoder", "vae", "image_encoder"):
            if (p / sub / "config.json").is_file() and not _has_weights(p / sub):
                missing.append(f"{sub}/diffusion_pytorch_model.safetensors" if sub in ("unet", "vae")
                               else f"{sub}/model.safetensors")
    params = None
    if unet_cfg:
        try:
            params = _meta_param_count(unet_cfg)
        except Exception:  # an unknown class or a config this diffusers cannot build: leave it unknown
            params = None
    return FolderInfo(str(p), index.get("_class_name") if index else None, comps, unet_class, held, params,
                      tuple(missing), unet_cfg)


def _meta_model(cfg: Dict[str, Any]):
    diffusers, _ = diffusers_modules()
    cls = getattr(diffusers, cfg["_class_name"])
    with torch.device("meta"):
        return cls.from_config(cfg)


def _meta_param_count(cfg: Dict[str, Any], prefix: str = "") -> int:
    m = _meta_model(cfg)
    return sum(p.numel() for n, p in m.named_parameters() if n.startswith(prefix))


# ---------------------------------------------------------------------------------- cost estimate
def estimate_cpu_step_seconds(unet_params: int, latent_hw: Tuple[int, int], images: int, *,
                              vae_encoder_params: int = 0, pixel_hw: Tuple[int, int] = (0, 0),
                              threads: Optional[int] = None) -> float:
    """Seconds of one SDS step (UNet with CFG, VAE encoder forward + backward) on this CPU, scaled
    from the measured SD 2.1-base figures by params x pixels x images, divided over ``threads``."""
    threads = threads or torch.get_num_threads()
    unet = _UNET_S_PER_PARAM_PX * unet_params * latent_hw[0] * latent_hw[1] * images * 2
    vae = _VAE_S_PER_PARAM_PX * vae_encoder_params * pixel_hw[0] * pixel_hw[1] * images
    return (unet + vae) / max(1, threads) ** 0.8  # threads scale sublinearly (memory bandwidth)


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread" + ("s" if n != 1 else "")


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _cpu_estimate(kind: str, info: FolderInfo, src: Source, options: Dict[str, Any]) -> Tuple[float, float, str]:
    """``(seconds per step on one thread, on this CPU's threads, what was assumed)`` for this folder."""
    ucfg = info.unet_config
    vcfg = src.read_json("vae/config.json")
    factor = 2 ** (len(vcfg.get("block_out_channels", [0])) - 1) if vcfg else 1
    s = ucfg.get("sample_size")
    if s is None:  # the class default (e.g. SVD's 96)
        try:
            s = _meta_model(ucfg).config.sample_size
        except Exception:
            s = None
    s = s or 64
    s = s[0] if isinstance(s, (list, tuple)) else s
    size = options.get("size")
    if size is not None:
        H, W = (size, size) if isinstance(size, int) else tuple(size)
    else:
        H = W = s * factor
    images = {"zeroscope": 16, "animatediff": 16, "svd": int(ucfg.get("num_frames") or 14),
              "mvdream": 4}.get(kind, 1)
    images = int(options.get("frames") or images)
    params = info.unet_params or 0
    if kind == "animatediff" and ucfg.get("_class_name") == "UNet2DConditionModel":
        acfg = src.read_json("motion_adapter/config.json")
        if acfg:
            try:
                params += _meta_param_count(acfg)
            except Exception:
                pass
    venc = 0
    if vcfg:
        try:
            venc = _meta_param_count(vcfg, prefix="encoder.")
        except Exception:
            venc = 0
    shape = dict(unet_params=params, latent_hw=(H // factor, W // factor), images=images, vae_encoder_params=venc,
                 pixel_hw=(H, W))
    what = f"UNet {params / 1e6:.0f}M params, {images} x {H}x{W}"
    return estimate_cpu_step_seconds(**shape, threads=1), estimate_cpu_step_seconds(**shape), what


# ------------------------------------------------------------------------------------------- load
def _resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise PriorError(f"device {device!r}: no CUDA device here (torch.cuda.is_available() is False); use "
                         "--device cpu with a tiny or toy prior")
    return d


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """None -> fp16 on CUDA, fp32 on the CPU; strings 'fp16'/'bf16'/'fp32' accepted. fp16 on the CPU
    is refused (slow and NaN-prone there); bf16 is allowed."""
    names = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in names:
            raise PriorError(f"dtype {dtype!r}: choose fp16, bf16 or fp32")
        dtype = names[dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise PriorError("dtype fp16 on the CPU: use fp32 (default) or bf16 there; fp16 is for GPUs")
    return dtype


def check_folder(kind: str, path: str | os.PathLike, spec_kind: Optional[str] = None, *,
                 weights: bool = True) -> Tuple[Source, FolderInfo]:
    """Check a folder for a prior of ``kind`` before loading: it exists, holds the files the kind
    needs (``weights``: the weight files too), and its UNet is of that kind. Returns its Source and
    FolderInfo (hub ids: a bare info)."""
    kind = canonical_kind(kind)
    spec_kind = spec_kind or kind
    src = resolve_source(path, spec_kind)
    where = f"{spec_kind}:{os.fspath(path)}"
    if not src.local:  # a hub id: only its JSON files are fetched here (where a network exists)
        ucfg = src.read_json("unet/config.json") or {}
        try:
            params = _meta_param_count(ucfg) if ucfg else None
        except Exception:
            params = None
        return src, FolderInfo(src.path, None, {}, ucfg.get("_class_name"), UNET_KIND.get(ucfg.get("_class_name", "")),
                               params, (), ucfg)
    info = describe_folder(src.path)
    if info.pipeline is None and not info.unet_config:
        raise PriorError(f"{where} is not a diffusers folder: model_index.json is missing (and unet/config.json); "
                         f"{_download_hint(kind, spec_kind)}")
    held = info.kind
    if held is not None and held != kind and not (kind == "animatediff" and held == "sd"):
        if kind == "sd" and held == "mvdream":
            raise PriorError(f"{where} holds {KIND_WORDS[held]} (its UNet takes camera class labels); "
                             f"load it as mvdream:{os.fspath(path)}")
        if kind == "mvdream" and held == "sd":
            pass  # an SD folder may carry a converted MVDream UNet elsewhere; the multi-view loader decides
        else:
            flag = "--video-prior" if held in ("zeroscope", "animatediff", "svd") else "--prior"
            raise PriorError(f"{where} holds {KIND_WORDS[held]} (unet is {info.unet_class}), not "
                             f"{KIND_WORDS[kind]}; give it as {flag} {held}:{os.fspath(path)}")
    missing = [m for m in describe_folder(src.path, kind).missing if weights or m.endswith(("config.json", ")"))]
    if missing:
        raise PriorError(f"{where} is not a complete diffusers folder: {missing[0]} is missing; "
                         f"{_download_hint(kind, spec_kind)}")
    return src, info


def load_prior(kind: str, path: str | os.PathLike, *, device=None, dtype=None, allow_cpu: bool = False,
               **options) -> DiffusionPrior:
    """Load a prior of ``kind`` (see the module docstring) from ``path``.

    ``device``: None/"auto" (CUDA when present), "cpu", "cuda[:n]"; ``dtype``: None (fp16 on CUDA,
    fp32 on CPU), "fp16", "bf16", "fp32" or a torch dtype. ``allow_cpu``: run a real-size prior on
    the CPU even though one step takes minutes. ``options`` go to the prior's ``from_pretrained``
    (``attention_slicing``, ``offload``, ``frames``, ``size``, ``view_dependent``, ...).
    """
    spec_kind = kind
    kind = canonical_kind(kind)
    dev = _resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path_s = os.fspath(path)
    adapter = None
    if kind == "animatediff" and "," in path_s:
        path_s, adapter = (s.strip() for s in path_s.split(",", 1))
        asrc = resolve_source(adapter, spec_kind)
        if asrc.local and not (Path(asrc.path) / "config.json").is_file():
            raise PriorError(f"animatediff adapter {adapter}: config.json is missing (a MotionAdapter folder holds "
                             "config.json + diffusion_pytorch_model.safetensors); "
                             f"{_download_hint('animatediff')}")
        adapter = asrc
    src, info = check_folder(kind, path_s, spec_kind, weights=False)
    if kind == "animatediff" and adapter is None and info.unet_class == "UNet2DConditionModel" and src.local \
            and not (Path(src.path) / "motion_adapter" / "config.json").is_file():
        raise PriorError(f"animatediff:{path_s} holds a plain image UNet and no motion_adapter/; give "
                         "animatediff:SD_DIR,ADAPTER_DIR (the MotionAdapter folder) or an AnimateDiff pipeline folder")
    if dev.type == "cpu" and not allow_cpu and info.unet_config:
        est1, est, what = _cpu_estimate(kind, info, src, options)
        if est1 > CPU_REFUSE_SECONDS:
            raise PriorError(f"{spec_kind}:{path_s} is a real-size prior ({what}): one SDS step would take about "
                             f"{_fmt_seconds(est)} on this CPU ({_threads()}), "
                             f"{_fmt_seconds(est * 1000)} for 1000 steps; run it on a GPU (--device cuda), or pass "
                             "allow_cpu=True (--allow-cpu) to start anyway")
    if src.local:
        check_folder(kind, path_s, spec_kind, weights=True)  # the weight files, after the cost check
        return _load(kind, src, dev, dt, adapter, options)
    try:
        return _load(kind, src, dev, dt, adapter, options)
    except PriorError:
        raise
    except Exception as e:  # a hub id that could not be fetched (offline, private, misspelt): one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise PriorError(f"{spec_kind}:{path_s}: not a local folder, and fetching it as a hub model id failed "
                         f"({first}); {_download_hint(kind, spec_kind)}") from e


def _load(kind: str, src: Source, dev: torch.device, dt: torch.dtype, adapter: Optional[Source],
          options: Dict[str, Any]) -> DiffusionPrior:
    if kind == "sd":
        from .image import StableDiffusionPrior
        return StableDiffusionPrior.from_pretrained(src, device=dev, dtype=dt, **options)
    if kind == "mvdream":
        try:
            from .multiview import MultiViewPrior  # written by the lead; guarded until it lands
        except ImportError as e:
            raise PriorError("mvdream priors need diffusion_prior.multiview.MultiViewPrior, which this checkout "
                             f"does not have yet ({e})") from e
        import inspect

        takes = inspect.signature(MultiViewPrior.from_pretrained).parameters
        unknown = sorted(k for k in options if k not in takes)
        if unknown and not any(p.kind == p.VAR_KEYWORD for p in takes.values()):
            raise PriorError(f"mvdream prior: option(s) {', '.join(unknown)} not supported by "
                             "MultiViewPrior.from_pretrained")
        return MultiViewPrior.from_pretrained(src.path, device=dev, dtype=dt, **options)
    if kind in ("zeroscope", "animatediff"):
        from .video import TextToVideoPrior
        return TextToVideoPrior.from_pretrained(src, device=dev, dtype=dt, adapter=adapter, **options)
    from .video import ImageToVideoPrior
    return ImageToVideoPrior.from_pretrained(src, device=dev, dtype=dt, **options)

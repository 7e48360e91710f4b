"""Self-describing checkpoints: the model's architecture + config, the feature config and class list
travel with the weights, so a checkpoint is all `tinyasc evaluate`/`predict` need. Writes are atomic."""
import dataclasses
from pathlib import Path

import torch

from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.models import build_model
from tinyasc.paths import atomic_write  # noqa: F401 (the one home of atomic writes; re-exported)

FORMAT = "tinyasc-checkpoint"
VERSION = 1


def save_checkpoint(path, model, arch, feature_cfg, classes, state_dict=None, **extra):
    """Save weights + everything needed to rebuild and use them. `extra` (train config, metrics,
    epoch, optimizer state, …) is stored as given. `state_dict` replaces model.state_dict() (a
    compressed checkpoint: int8 codes + fp16 tensors, described by extra["quantization"])."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "model_config": dataclasses.asdict(model.cfg),
        "feature_config": feature_cfg.to_dict(),
        "classes": list(classes),
        "state_dict": model.state_dict() if state_dict is None else state_dict,
        **extra,
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path):
    """The checkpoint dict, checked to be a tinyasc checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise TinyascError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TinyascError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TinyascError(f"{path}: not a tinyasc checkpoint")
    if payload.get("version", 0) > VERSION:
        raise TinyascError(f"{path}: checkpoint version {payload['version']} is newer than this tinyasc")
    return payload


def load_checkpoint(path: "str | Path") -> "tuple[torch.nn.Module, FeatureConfig, list, dict]":
    """(model in eval mode, feature config, classes, checkpoint dict)."""
    payload = read_checkpoint(path)
    model = build_model(payload["arch"], payload["model_config"])
    stored = payload.get("quantization")
    try:
        model.load_state_dict(decode_state_dict(payload["state_dict"], stored) if stored else payload["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise TinyascError(f"{path}: weights do not fit the stored model config ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, FeatureConfig.from_dict(payload["feature_config"]), payload["classes"], payload


def decode_state_dict(state, stored):
    """Float32 state dict of a compressed checkpoint (tinyasc.compress.quantize): int8 codes × their
    scales (stored["scales"]: {key: scale}), fp16 tensors → float32, everything else as it is."""
    state = dict(state)
    for key, scale in stored["scales"].items():
        state[key] = state[key].float() * scale
    for key, value in state.items():
        if value.dtype == torch.float16:
            state[key] = value.float()
    return state


def stored_bits(payload):
    """{parameter name: bits} a compressed checkpoint stores its parameters at (None for a float one):
    pass it to complexity.size_report / size_bytes / complexity as `bits`."""
    return (payload.get("quantization") or {}).get("bits")

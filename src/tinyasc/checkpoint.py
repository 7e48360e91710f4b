"""Self-describing checkpoints: the model's architecture + config, the feature config and class list
travel with the weights, so a checkpoint is all `tinyasc evaluate`/`predict` need. Writes are atomic."""
import dataclasses
import hashlib
import io
from pathlib import Path

import torch

from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.models import build_model
from tinyasc.paths import atomic_write, atomic_write_bytes  # noqa: F401 (the one home of atomic writes; re-exported)

FORMAT = "tinyasc-checkpoint"
VERSION = 1
REQUIRED = ("arch", "model_config", "feature_config", "classes", "state_dict")


def weights_sha256(state_dict):
    """SHA-256 over every tensor of a state dict (name, dtype, shape and bytes, in key order): stored in
    the checkpoint and checked on load, because torch does not check the zip's CRC, so a flipped byte
    in the weights would otherwise load silently."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path, model, arch, feature_cfg, classes, state_dict=None, **extra):
    """Save weights + everything needed to rebuild and use them. `extra` (train config, metrics,
    epoch, optimizer state, …) is stored as given. `state_dict` replaces model.state_dict() (a
    compressed checkpoint: int8 codes + fp16 tensors, described by extra["quantization"])."""
    state = model.state_dict() if state_dict is None else state_dict
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "model_config": dataclasses.asdict(model.cfg),
        "feature_config": feature_cfg.to_dict(),
        "classes": list(classes),
        "state_dict": state,
        "weights_sha256": weights_sha256(state),
        **extra,
    }
    # serialised in memory first: torch's own writer reports a full disk as a RuntimeError, Python's file
    # writes as OSError(ENOSPC), which atomic_write turns into one line naming the file
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path):
    """The checkpoint dict, checked to be a tinyasc checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise TinyascError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Weights only load failed" in reason:  # never echo torch's unsafe advice
            reason = "it holds objects other than tensors and plain data"
        raise TinyascError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TinyascError(f"{path}: not a tinyasc checkpoint")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise TinyascError(f"{path}: checkpoint field {missing[0]!r} is missing (hand-edited or foreign file)")
    if payload.get("version", 0) > VERSION:
        raise TinyascError(f"{path}: checkpoint version {payload['version']} is newer than this tinyasc")
    return payload


def load_checkpoint(path: "str | Path") -> "tuple[torch.nn.Module, FeatureConfig, list, dict]":
    """(model in eval mode, feature config, classes, checkpoint dict)."""
    payload = read_checkpoint(path)
    expected = payload.get("weights_sha256")
    if expected is not None and weights_sha256(payload["state_dict"]) != expected:
        raise TinyascError(f"{path}: the weights do not match their stored SHA-256 (file corrupted or edited)")
    try:
        model = build_model(payload["arch"], payload["model_config"])
        feature_cfg = FeatureConfig.from_dict(payload["feature_config"])
    except TinyascError as e:
        raise TinyascError(f"{path}: {e}") from None
    classes = payload["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise TinyascError(f"{path}: checkpoint field 'classes' must be a list of distinct names")
    model_mels = getattr(model.cfg, "n_mels", None)
    if model_mels is not None and model_mels != feature_cfg.n_mels:
        raise TinyascError(f"{path}: feature_config n_mels = {feature_cfg.n_mels} but the model takes {model_mels}")
    stored = payload.get("quantization")
    try:
        model.load_state_dict(decode_state_dict(payload["state_dict"], stored) if stored else payload["state_dict"])
    except (RuntimeError, KeyError, AttributeError, TypeError) as e:
        raise TinyascError(f"{path}: weights do not fit the stored model config ({str(e).splitlines()[0]})") from None
    outputs = _output_width(model, feature_cfg)
    if outputs != len(classes):
        raise TinyascError(f"{path}: the model has {outputs} outputs but field 'classes' lists {len(classes)}")
    model.eval()
    return model, feature_cfg, classes, payload


@torch.no_grad()
def _output_width(model, feature_cfg):
    """Logits per clip, from one forward pass on a short zero input (any architecture)."""
    model.eval()
    return int(model(torch.zeros(1, 1, feature_cfg.n_mels, 64)).shape[-1])


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


def device_models(path, general=None, payload=None):
    """{device: float model in eval mode} of a device-specific checkpoint (`tinyasc finetune-devices`;
    {} for an ordinary one), each checked against its stored SHA-256. `payload`: the checkpoint dict
    already read from `path` (not read again)."""
    import copy

    payload = payload if payload is not None else read_checkpoint(path)
    if not payload.get("device_models"):
        return {}
    general = general if general is not None else load_checkpoint(path)[0]
    models = {}
    for device, state in payload["device_models"].items():
        expected = (payload.get("device_models_sha256") or {}).get(device)
        if expected is not None and weights_sha256(state) != expected:
            raise TinyascError(f"{path}: device model {device!r} does not match its stored SHA-256 (corrupted or edited)")
        model = copy.deepcopy(general)
        try:
            model.load_state_dict(state)
        except (RuntimeError, KeyError) as e:
            raise TinyascError(f"{path}: device model {device!r} does not fit ({str(e).splitlines()[0]})") from None
        models[str(device)] = model.eval()
    return models


def pick_device_model(checkpoint, model, payload, device_model):
    """The model of a device-specific checkpoint (`finetune-devices`' devices.pt) that `device_model` names
    ("general" or a device id), or `model` for an ordinary checkpoint: an exported file holds one network."""
    devices = sorted(payload.get("device_models") or {})
    if not devices:
        if device_model not in (None, "general"):
            raise TinyascError(f"--device-model {device_model}: {checkpoint} has no device-specific models")
        return model
    if device_model is None:
        raise TinyascError(f"{checkpoint}: holds the general model and {len(devices)} device models "
                           f"({', '.join(devices)}); an exported file holds one: export each with --device-model "
                           "general or --device-model ID")
    if device_model == "general":
        return model
    key = str(device_model).strip().lower()
    if key not in devices:
        raise TinyascError(f"--device-model {device_model}: {checkpoint} has models for general, {', '.join(devices)}")
    return device_models(checkpoint, model, payload)[key]


# ---------------------------------------------------------------------------------------------
# Deployment storage: one answer to "at what precision are this model's weights counted and used"

def deploy_storage(payload):
    """The storage a checkpoint's model is deployed at, one of complexity.SCHEMES, or None for a compressed
    checkpoint (its own int8 codes + fp16 tensors, see `stored_bits`). A checkpoint's `storage` field wins;
    else the preset it was trained from decides (rules.PRESET_STORAGE: the fp16 preset → "fp16", the int8
    preset → "dcase", 8-bit convs + fp16 rest); else fp32."""
    from tinyasc.complexity import SCHEMES
    from tinyasc.rules import preset_storage

    if payload.get("quantization"):
        return None
    storage = payload.get("storage") or preset_storage((payload.get("experiment") or {}).get("model"))
    if storage not in SCHEMES:
        raise TinyascError(f"checkpoint field 'storage' = {storage!r}: expected one of {', '.join(SCHEMES)}")
    return storage


INT8_MAX = 127  # symmetric 8-bit grid, codes −127…127: zero (a pruned weight) stays exactly zero


def int8_codes(weight):
    """(int8 codes, float32 scale) of a conv/linear weight, one scale per tensor as `tinyasc compress` does by
    default: s = max|w| / 127 (1 for an all-zero tensor). Per tensor, so the scales (one float per conv, not
    parameters) stay negligible beside the 128,000 B budget; per output channel they would be thousands."""
    w = weight.detach().float()
    amax = w.abs().max()
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    return torch.round(w / scale).clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


@torch.no_grad()
def apply_storage(model, storage):
    """Round `model`'s parameters in place to the values `storage` keeps (still float32 tensors): "fp16"
    rounds every parameter to fp16; "dcase" and "int8" put conv/linear weights on their per-tensor 8-bit
    grid ("int8" puts the rest on a per-tensor 8-bit grid, "dcase" rounds it to fp16); "fp32" or None changes
    nothing. Predicting with the result is predicting with the weights the complexity rules count."""
    from torch import nn

    if storage in (None, "fp32"):
        return model
    from tinyasc.complexity import SCHEMES

    if storage not in SCHEMES:
        raise TinyascError(f"storage {storage!r}: expected one of {', '.join(SCHEMES)}")
    weight_bits, other_bits = SCHEMES[storage]
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))
            bits = weight_bits if is_weight else other_bits
            if bits == 16:
                p.copy_(p.half().float())
            elif bits == 8 and is_weight:
                codes, scale = int8_codes(p)
                p.copy_(codes.float() * scale)
            elif bits == 8:  # per-tensor grid for a norm affine or bias
                amax = p.abs().max()
                scale = amax / INT8_MAX if amax > 0 else torch.ones_like(amax)
                p.copy_(torch.round(p / scale).clamp(-INT8_MAX, INT8_MAX) * scale)
    return model


def deployed_checkpoint(path):
    """(model in eval mode with its weights at the deployment storage, feature config, classes, payload,
    storage) — the model `predict` runs and the DCASE 2025 package ships."""
    model, feature_cfg, classes, payload = load_checkpoint(path)
    storage = deploy_storage(payload)
    return apply_storage(model, storage), feature_cfg, classes, payload, storage

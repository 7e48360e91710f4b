"""The DCASE 2025 Task 1 inference interface, for a submission package to wrap: the organisers call
load_model, load_inputs, get_model_for_device and predict with file paths and recording-device ids and
expect per-file logits plus the class order. A tinyasc device checkpoint (`tinyasc finetune-devices`)
routes each file to its device's model; unknown device ids use the general model. check_complexity
runs the 2025 rules on every device model."""
import os
from pathlib import Path

import numpy as np
import torch

from tinyasc.audio import load_audio
from tinyasc.errors import TinyascError
from tinyasc.predict import CHECKPOINT_EXTENSIONS, Classifier, load

MODEL_ENV = "TINYASC_MODEL"  # where load_model(None) looks, e.g. set by a submission package


def load_model(model_file_path: str | None = None, use_cuda: bool = False) -> Classifier:
    """The model (a tinyasc Classifier with its device-specific models) from a checkpoint or ONNX file;
    None takes $TINYASC_MODEL."""
    path = model_file_path or os.environ.get(MODEL_ENV)
    if not path:
        raise TinyascError(f"load_model: give model_file_path or set ${MODEL_ENV}")
    device = "cuda" if use_cuda and torch.cuda.is_available() else "cpu"
    return load(path, device=device)


def load_inputs(file_paths: list, device_ids: list, model: Classifier) -> tuple:
    """(waveforms at the model's rate, device ids), checked to pair up one to one."""
    if len(file_paths) != len(device_ids):
        raise TinyascError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    return [load_audio(p, model.sample_rate) for p in file_paths], [str(d).lower() for d in device_ids]


def get_model_for_device(model: Classifier, device_id: str) -> Classifier:
    """The device-specific model of `device_id`; the general model for a device it has none for."""
    return model.for_device(device_id)


def predict(file_paths: list, device_ids: list, model_file_path: str | None = None, use_cuda: bool = True,
            model: Classifier | None = None) -> tuple:
    """(per-file logits: a list of (K,) float32 tensors, class order). The logits are the log of the
    (window- and member-averaged) probabilities, so their softmax gives back tinyasc's probabilities."""
    model = model or load_model(model_file_path, use_cuda)
    waves, devices = load_inputs(file_paths, device_ids, model)
    probs = model.predict(waves, device_ids=devices).probabilities
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, None)).astype(np.float32)
    return [torch.from_numpy(row) for row in logits], list(model.classes)


def check_complexity(model_file_path: str, rule_set: str = "dcase2025") -> dict:
    """{"general" or device id: check_rules report} for every model in a tinyasc checkpoint: the 2025
    rules apply to each device-specific model on its own."""
    from tinyasc.checkpoint import device_models, load_checkpoint, stored_bits
    from tinyasc.rules import check_all

    if Path(model_file_path).suffix.lower() not in CHECKPOINT_EXTENSIONS:
        raise TinyascError(f"{model_file_path}: complexity is checked on the checkpoint, not an exported graph")
    general, feature_cfg, _, payload = load_checkpoint(model_file_path)
    from tinyasc.predict import clip_seconds_of

    seconds, bits = clip_seconds_of(payload), stored_bits(payload)
    reports = {"general": check_all(general, feature_cfg, seconds, bits)[rule_set]}
    for device, model in device_models(model_file_path, general).items():
        reports[device] = check_all(model, feature_cfg, seconds, bits)[rule_set]
    return reports

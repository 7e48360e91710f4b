"""Device-specific models (DCASE 2025 Task 1): a general model is trained first; then one copy of it is
fine-tuned on the training clips of each recording device seen in training, as the 2025 baseline does.
All of them are stored in one checkpoint (`devices.pt`: the general model plus `device_models`), and a
recording whose device is unknown falls back to the general model."""
import copy
import json
from pathlib import Path

import numpy as np

from tinyasc.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, weights_sha256
from tinyasc.errors import TinyascError
from tinyasc.experiment import experiment_from_sections
from tinyasc.lock import run_lock
from tinyasc.paths import check_output, content_sha256
from tinyasc.rundir import RunDir
from tinyasc.runs import check_dataset, check_same_run, dataset_fingerprint, load_splits, prepare_run_dir
from tinyasc.train import fit

# The fine-tuning recipe per device (ours; the 2025 baseline fine-tunes briefly at a low rate)
DEVICE_FINETUNE = {"epochs": 10, "lr": 0.005, "warmup_epochs": 0.0}
DEVICES_FILE = "devices.pt"


def device_split(split, device):
    """The clips of `split` recorded by `device`, as a Split."""
    return split.subset(np.flatnonzero(split.devices == device))


def finetune_devices(checkpoint, data_root, out_dir, *, sets=(), min_clips=32, force=False, progress=True,
                     cache_dir=None, train_split=None):
    """Fine-tune a copy of `checkpoint` per training device into OUT/<device>/ and bundle the general and
    device models into OUT/devices.pt. `train_split` (e.g. "split25"; default: the general model's own)
    restricts fine-tuning to a training subset, as the 2025 rules require. Returns {device: metrics on
    that device's evaluate clips}."""
    from tinyasc.experiment import parse_override

    payload = read_checkpoint(checkpoint)
    if payload.get("quantization") or payload.get("device_models"):
        raise TinyascError(f"{checkpoint}: give the float general model (not a compressed or device checkpoint)")
    general, feature_cfg, classes, _ = load_checkpoint(checkpoint)
    teacher_exp = payload.get("experiment")
    if not teacher_exp:
        raise TinyascError(f"{checkpoint}: has no experiment (train it with `tinyasc train`)")
    sections = {"name": f"{teacher_exp['name']}_device", "model": {"preset": teacher_exp["model"],
                **teacher_exp.get("model_overrides", {})}, "features": dict(payload["feature_config"]),
                "train": {**teacher_exp.get("train", {}), **DEVICE_FINETUNE}, "runtime": teacher_exp.get("runtime", {})}
    for keys, value in map(parse_override, sets):
        if len(keys) != 2 or keys[0] not in ("train", "runtime"):
            raise TinyascError(f"bad --set {'.'.join(keys)!r} for device fine-tuning: use train.FIELD or runtime.FIELD")
        sections[keys[0]][keys[1]] = value
    exp = experiment_from_sections(sections, where=str(checkpoint))
    train_split = train_split or payload.get("train_split")
    check_dataset(data_root, train_split)
    out = Path(out_dir)
    check_output(out, kind="dir", force=True)
    check_output(out / DEVICES_FILE, force=force)
    train, validation, evaluate = load_splits(data_root, exp, cache_dir, progress, train_split)
    min_clips = max(min_clips, exp.train.batch_size)  # at least one full batch per device
    devices = [str(d) for d in sorted(set(train.devices)) if (train.devices == d).sum() >= min_clips]
    if not devices:
        raise TinyascError(f"{data_root}: no training device has {min_clips} clips (one batch) to fine-tune on")
    states, results = {}, {}
    general_sha = content_sha256(checkpoint)
    fingerprint = dataset_fingerprint(data_root, train_split)
    with run_lock(out, what="finetune-devices"):
        for device in devices:
            run = RunDir(out / device)
            # the device and the general model are part of the run's identity: `report` keeps each device's
            # fine-tune in its own row, and a re-run reuses a device's run only if nothing changed
            data = {**fingerprint, "train_split": train_split, "device": device, "inputs": {"the general model": general_sha}}
            if run.results.is_file() and not force:  # finished by an earlier, interrupted call: keep it
                check_same_run(run.path, exp, data, doing="re-running finetune-devices (--force retrains)")
                states[device] = {k: v.detach().cpu() for k, v in load_checkpoint(run.last)[0].state_dict().items()}
                results[device] = run.read_results()["last"]
                if progress:
                    print(f"device {device}: finished in {run.path}; kept")
                continue
            resume = run.last.is_file() and not force
            prepare_run_dir(run.path, exp, resume, force, data)
            if progress:
                print(f"{'resuming' if resume else 'fine-tuning'} on device {device}: "
                      f"{int((train.devices == device).sum())} clips")
            evaluate_device = device_split(evaluate, device)
            if len(evaluate_device) == 0:  # a device with no evaluate clips: judge on all of them
                evaluate_device = evaluate
            validation_device = device_split(validation, device) if validation else None
            if validation_device is not None and len(validation_device) == 0:  # no held-out clip of this device
                validation_device = validation
            model = copy.deepcopy(general).train()
            result = fit(model, payload["arch"], device_split(train, device), evaluate_device, exp, run.path,
                         resume=resume, validation=validation_device, progress=progress,
                         extra_checkpoint={"clip_samples": payload.get("clip_samples"), "device": device})
            states[device] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            results[device] = result["last"]
        extra = {k: v for k, v in payload.items() if k not in ("format", "version", "arch", "model_config",
                                                                "feature_config", "classes", "state_dict",
                                                                "weights_sha256", "optimizer", "rng_state")}
        save_checkpoint(out / DEVICES_FILE, general, payload["arch"], feature_cfg, classes,
                        device_models=states,
                        device_models_sha256={d: weights_sha256(s) for d, s in states.items()},
                        device_results=json.loads(json.dumps(results)),
                        **{**extra, "train_split": train_split})
    return results

"""Device-specific models and the DCASE 2025 inference interface: fine-tune per training device into one
checkpoint, route files by device id (unknown ids → the general model), logits + class order out, and
the 2025 complexity rules per device model — tested the way the 2025 template's evaluation calls it."""
import json

import numpy as np
import pytest
import torch

from tinyasc import dcase2025
from tinyasc.cli import main
from tinyasc.data.tau import read_split
from tinyasc.devices import finetune_devices
from tinyasc.experiment import load_experiment
from tinyasc.predict import load
from tinyasc.runs import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(small_benchmark, tmp_path_factory):
    root = tmp_path_factory.mktemp("devices")
    exp = load_experiment(None, ["train.epochs=1", "train.batch_size=8", "train.warmup_epochs=0",
                                 "runtime.extract_workers=0"], base={"model": {"preset": "bc_resnet_asc_1"}})
    run_training(exp, small_benchmark, root / "general", progress=False)
    results = finetune_devices(root / "general" / "last.pt", small_benchmark, root / "dev",
                               sets=["train.epochs=1", "train.batch_size=4"], min_clips=2, progress=False)
    return {"root": root, "data": small_benchmark, "general": root / "general" / "last.pt",
            "devices": root / "dev" / "devices.pt", "results": results}


def test_one_checkpoint_holds_the_general_model_and_one_model_per_training_device(bundle):
    train_devices = {c.device for c in read_split(bundle["data"], "train")}
    clf = load(bundle["devices"])
    assert set(clf.routed_devices) == set(bundle["results"]) and "a" in clf.routed_devices
    assert set(clf.routed_devices) <= train_devices
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    general = clf.predict(x).probabilities
    tuned = clf.for_device("a").predict(x).probabilities
    assert not np.allclose(general, tuned)  # fine-tuning changed the device model
    # the general model inside devices.pt is the checkpoint it was made from
    np.testing.assert_allclose(general, load(bundle["general"]).predict(x).probabilities, atol=1e-6)


def test_the_2025_interface_routes_by_device_and_falls_back_for_unknown_ids(bundle):
    files = [str(bundle["data"] / c.filename) for c in read_split(bundle["data"], "evaluate")[:6]]
    devices = ["a", "b", "s4", "unknown-device", "A", "s1"]
    model = dcase2025.load_model(str(bundle["devices"]), use_cuda=False)
    logits, classes = dcase2025.predict(files, devices, model=model)
    assert len(logits) == 6 and all(t.shape == (10,) and t.dtype == torch.float32 for t in logits)
    assert classes == model.class_order
    general = dcase2025.get_model_for_device(model, "unknown-device")
    assert general is model.model.models["general"] and dcase2025.get_model_for_device(model, "a") is model.model.models["a"]
    clf = load(bundle["devices"])  # tinyasc predict's path gives the same probabilities, device by device
    for i, device in enumerate(devices):
        expected = clf.for_device(device).predict([files[i]]).probabilities[0]
        np.testing.assert_allclose(torch.softmax(logits[i], 0).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(logits[4].numpy(), logits_of(model, files[4], "a"), atol=1e-5)  # ids are case-blind


def logits_of(model, path, device):
    features = dcase2025.load_inputs([path], [device], model)[0]
    return dcase2025.get_model_for_device(model, device)(features)[0].detach().numpy()


def test_complexity_is_checked_per_device_model(bundle):
    reports = dcase2025.check_complexity(str(bundle["devices"]))
    assert set(reports) == {"general", *bundle["results"]}
    assert all(r["pass"] and r["rule_set"] == "dcase2025" for r in reports.values())


def test_predict_command_takes_device_ids_from_meta_csv(bundle, tmp_path):
    out = tmp_path / "s.tsv"
    audio = [str(bundle["data"] / c.filename) for c in read_split(bundle["data"], "evaluate")[:4]]
    assert main(["predict", str(bundle["devices"]), *audio, "--out", str(out), "--device-ids",
                 str(bundle["data"] / "meta.csv"), "--workers", "1"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == 4
    devices = dict(line.split("\t")[0::3] for line in (bundle["data"] / "meta.csv").read_text().splitlines()[1:])
    clf = load(bundle["devices"])
    for row, path in zip(rows, audio):
        device = devices[path[len(str(bundle["data"])) + 1:]]
        expected = clf.for_device(device).predict([path]).probabilities[0]
        np.testing.assert_allclose(np.array(row.split("\t")[2:], dtype=float), expected, atol=1e-5)


def test_evaluate_routes_a_device_checkpoint_by_each_clips_device(bundle):
    from tinyasc.runs import evaluate_checkpoints

    general = evaluate_checkpoints([bundle["general"]], bundle["data"], progress=False)
    routed = evaluate_checkpoints([bundle["devices"]], bundle["data"], progress=False)
    for device in ("s4", "s5", "s6"):  # no device model: the general model's predictions, unchanged
        assert routed["per_device"][device] == general["per_device"][device]
    assert routed["per_device"]["a"]["log_loss"] != general["per_device"]["a"]["log_loss"]


def test_a_rerun_after_an_interruption_keeps_finished_devices_and_refuses_a_changed_general_model(bundle, tmp_path):
    """Issue 25: a re-run of finetune-devices used to retrain every device, overwrite finished ones without
    --force and append epochs 1, 2, 1, 2 to metrics.jsonl."""
    import shutil

    from tinyasc.checkpoint import read_checkpoint
    from tinyasc.errors import TinyascError

    out = tmp_path / "dev"
    shutil.copytree(bundle["root"] / "dev", out)
    (out / "devices.pt").unlink()  # cut before the bundle was written, while the last device was finishing
    cut = sorted(bundle["results"])[-1]
    (out / cut / "results.json").unlink()
    kept = {d: (out / d / "last.pt").stat().st_mtime_ns for d in bundle["results"]}
    args = dict(sets=["train.epochs=1", "train.batch_size=4"], min_clips=2, progress=False)
    with pytest.raises(TinyascError, match="the general model changed"):  # another general model: not this run's devices
        finetune_devices(bundle["root"] / "general" / "best.pt", bundle["data"], out, **args)
    results = finetune_devices(bundle["general"], bundle["data"], out, **args)
    assert results == bundle["results"]
    assert {d: (out / d / "last.pt").stat().st_mtime_ns for d in kept} == kept  # nothing retrained
    for device in bundle["results"]:
        epochs = [json.loads(line)["epoch"] for line in (out / device / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1], (device, epochs)
    before, after = read_checkpoint(bundle["devices"]), read_checkpoint(out / "devices.pt")
    assert after["device_models_sha256"] == before["device_models_sha256"]

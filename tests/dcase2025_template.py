"""A stand-in for the organisers' DCASE 2025 Task 1 inference template, written from what its scripts do
(CPJKU/dcase2025_task1_inference: evaluate_submission.py, test_complexity.py, complexity.py — read at its first
commit, fschmid56 2025-05-12, as kept in the fork turquenite/dcase2025_task1_inference), in their call order,
without pandas/sklearn: import PACKAGE.PACKAGE_N; predict the test split (resources/test.csv without its
scene_label column, merged with the development set's meta.csv on filename, device = source_label) with
model_file_path=None; predict the evaluation set
(evaluation_setup/fold1_test.csv, device = device_id); softmax + write output.csv; save
load_model().model.state_dict(); then per device a…s10 on resources/dummy.wav: load_inputs →
get_model_for_device → torchinfo mult-adds of a float copy at the input's shape, and parameter bytes by dtype.

Run as a script (python dcase2025_template.py PACKAGE INDEX DEV EVAL OUT) or call run(); exits 1 when a
limit fails. It uses nothing of tinyasc itself: the package under test must stand on its own."""
import copy
import csv
import importlib
import importlib.resources as pkg_resources
import json
import os
import sys

import torch
import torchinfo

MAX_MACS = 30_000_000
MAX_PARAMS_MEMORY = 128_000
DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.int8: 1, torch.uint8: 1,
               torch.int32: 4, torch.qint8: 1, torch.quint8: 1}
COMPLEXITY_DEVICES = ["a", "b", "c"] + [f"s{i}" for i in range(1, 11)]


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def parameter_bytes(model):
    """The template's count: Σ numel × bytes of each parameter's dtype (an unknown dtype is an error)."""
    total = 0
    for p in model.parameters():
        if p.dtype not in DTYPE_BYTES:
            raise ValueError(f"Unsupported dtype: {p.dtype}")
        total += p.numel() * DTYPE_BYTES[p.dtype]
    return total


def macs_and_bytes(model, input_size):
    profile = torchinfo.summary(copy.deepcopy(model).float(), input_size=tuple(input_size), verbose=0)
    return profile.total_mult_adds, parameter_bytes(model)


def evaluate_submission(api, package, dev_dir, eval_dir, out_dir):
    use_cuda = torch.cuda.is_available()
    with pkg_resources.path(f"{package}.resources", "test.csv") as test_csv:
        test = read_tsv(test_csv)
    meta = {row["filename"]: row for row in read_tsv(os.path.join(dev_dir, "meta.csv"))}
    test = [meta[row["filename"]] for row in test if row["filename"] in meta]  # the template's inner merge
    file_paths = [os.path.join(dev_dir, row["filename"]) for row in test]
    device_ids = [row["source_label"] for row in test]
    predictions, class_order = api.predict(file_paths=file_paths, device_ids=device_ids, model_file_path=None,
                                           use_cuda=use_cuda)
    label_to_idx = {label: i for i, label in enumerate(class_order)}
    true = [label_to_idx[row["scene_label"]] for row in test]
    pred = [p.argmax().item() for p in predictions]
    accuracy = sum(t == p for t, p in zip(true, pred)) / len(true)

    evaluation = read_tsv(os.path.join(eval_dir, "evaluation_setup", "fold1_test.csv"))
    eval_predictions, eval_class_order = api.predict(
        file_paths=[os.path.join(eval_dir, row["filename"]) for row in evaluation],
        device_ids=[row["device_id"] for row in evaluation], model_file_path=None, use_cuda=use_cuda)
    assert eval_class_order == class_order, "Class order mismatch between test and evaluation prediction"
    os.makedirs(out_dir, exist_ok=True)
    probs = torch.softmax(torch.stack(eval_predictions), dim=1)
    with open(os.path.join(out_dir, "output.csv"), "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filename", "scene_label", *class_order])
        for row, p in zip(evaluation, probs):
            writer.writerow([row["filename"], class_order[int(p.argmax())], *p.tolist()])
    model = api.load_model()
    torch.save(model.model.state_dict(), os.path.join(out_dir, "model_state_dict.pt"))
    with open(os.path.join(out_dir, "test_accuracy.json"), "w") as f:
        json.dump({"Test Accuracy": round(accuracy * 100, 2)}, f)
    return {"accuracy": accuracy, "class_order": class_order, "test_predictions": predictions,
            "eval_predictions": eval_predictions, "test_files": file_paths, "test_devices": device_ids}


def test_complexity(api, package, out_dir):
    model = api.load_model()
    with pkg_resources.path(f"{package}.resources", "dummy.wav") as dummy:
        inputs = api.load_inputs([str(dummy)] * len(COMPLEXITY_DEVICES), COMPLEXITY_DEVICES, model)
    per_device = {}
    for tensor, device_id in zip(inputs, COMPLEXITY_DEVICES):
        submodel = api.get_model_for_device(model, device_id)
        macs, params_bytes = macs_and_bytes(submodel, tensor.shape)
        per_device[device_id] = {"MACs": macs, "Params": params_bytes,
                                 "pass": macs <= MAX_MACS and params_bytes <= MAX_PARAMS_MEMORY}
    with open(os.path.join(out_dir, "complexity.json"), "w") as f:
        json.dump({"per_device": per_device, "max_MACs": max(d["MACs"] for d in per_device.values()),
                   "max_Params": max(d["Params"] for d in per_device.values())}, f, indent=2)
    return per_device


def run(package, index, dev_dir, eval_dir, out_dir):
    api = importlib.import_module(f"{package}.{package}_{index}")
    result = evaluate_submission(api, package, dev_dir, eval_dir, out_dir)
    result["complexity"] = test_complexity(api, package, out_dir)
    result["module_file"] = api.__file__
    return result


if __name__ == "__main__":
    package, index, dev, evaluation, out = sys.argv[1:6]
    r = run(package, int(index), dev, evaluation, out)
    summary = {"accuracy": r["accuracy"], "class_order": r["class_order"], "complexity": r["complexity"],
               "module_file": r["module_file"], "eval_rows": len(r["eval_predictions"])}
    print(json.dumps(summary))
    sys.exit(0 if all(d["pass"] for d in r["complexity"].values()) else 1)

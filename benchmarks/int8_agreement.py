"""Agreement of int8 and float ONNX models on the synthetic benchmark's evaluate split: top-1
agreement with the float ONNX model and accuracy of each, for a trained float checkpoint (static int8,
calibrated on training clips) and, if given, a compressed checkpoint (its own QAT int8 weights).

    python benchmarks/int8_agreement.py DATA FLOAT_CKPT [COMPRESSED_CKPT] → benchmarks/results/int8_agreement.json
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import tinyasc
from tinyasc.data.tau import SCENES, read_split
from tinyasc.export import export

RESULTS = Path(__file__).resolve().parent / "results" / "int8_agreement.json"
CALIBRATION_CLIPS = 256


def top1(model_path, paths):
    clf = tinyasc.load(model_path)
    rows = list(clf.predict_files(paths, workers=2))
    bad = [p for p, probs, _ in rows if probs is None]
    if bad:
        raise SystemExit(f"{model_path}: failed on {len(bad)} files, e.g. {bad[0]}")
    return np.array([SCENES.index(clf.classes[int(np.argmax(probs))]) for _, probs, _ in rows])  # label order


def main(data, float_ckpt, compressed_ckpt=None):
    data = Path(data)
    clips = read_split(data, "evaluate")
    paths = [str(data / c.filename) for c in clips]
    labels = np.array([c.label for c in clips])
    train = read_split(data, "train")
    rng = np.random.default_rng(0)
    results = {"data": str(data), "clips": len(clips), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = tmp / "calibration"  # training clips only: no evaluate clip informs the int8 ranges
        calib.mkdir()
        for i in rng.choice(len(train), CALIBRATION_CLIPS, replace=False):
            (calib / f"{i}.wav").symlink_to((data / train[i].filename).resolve())
        models = {"float checkpoint → ONNX fp32": (float_ckpt, False, None),
                  "float checkpoint → ONNX int8 (static, calibrated)": (float_ckpt, True, calib)}
        if compressed_ckpt:
            models["compressed checkpoint → ONNX int8 (its QAT weights)"] = (compressed_ckpt, True, None)
        preds = {}
        for name, (ckpt, int8, calibrate) in models.items():
            out = tmp / f"m{len(preds)}.onnx"
            export(ckpt, out, int8=int8, calibrate=calibrate, log=lambda _: None)
            preds[name] = top1(out, paths)
            results["models"][name] = {"checkpoint": str(ckpt), "file_kb": out.stat().st_size / 1024}
        if compressed_ckpt:
            preds["compressed checkpoint (PyTorch)"] = top1(compressed_ckpt, paths)
            results["models"]["compressed checkpoint (PyTorch)"] = {"checkpoint": str(compressed_ckpt)}
    reference = preds["float checkpoint → ONNX fp32"]
    print(f"{'model':56s} {'accuracy':>8s} {'top-1 agreement with fp32':>26s}")
    for name, pred in preds.items():
        r = results["models"][name]
        r["accuracy"] = float((pred == labels).mean())
        r["top1_agreement_with_fp32"] = float((pred == reference).mean())
        print(f"{name:56s} {100 * r['accuracy']:7.1f}% {100 * r['top1_agreement_with_fp32']:25.1f}%")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[2])}")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The compressed BC-ResNet-ASC-8 through deployment (issue 11 item 5): each compressed checkpoint → int8
ONNX with its own QAT codes (`tinyasc export --int8`, which checks ONNX Runtime against PyTorch before
writing), then on the evaluate audio: top-1 agreement and max |Δ probability| of ONNX Runtime vs the
PyTorch checkpoint, accuracy of each model, and `tinyasc predict` with all models as one ensemble
(averaged probabilities, the DCASE 2021 submission): accuracy, clips/s (wall time of the whole command,
start-up and audio decoding included), file sizes and DCASE 2021 sizes.

    python benchmarks/c80_deploy.py DATA COMPRESSED.pt [COMPRESSED.pt ...] [--out-dir DIR]
    → benchmarks/results/c80_deploy.json
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tinyasc
from tinyasc.checkpoint import read_checkpoint
from tinyasc.data.tau import SCENES, read_split
from tinyasc.export import export

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "c80_deploy.json"


def probabilities(model_path, paths):
    """(N, classes) probabilities in `paths` order and the model's class list; a checkpoint runs in PyTorch
    (backend "torch": the default "auto" would run it through ONNX Runtime on CPU)."""
    clf = tinyasc.load(model_path, backend="torch" if Path(model_path).suffix == ".pt" else "auto")
    rows = {str(p): probs for p, probs, _ in clf.predict_files(paths, workers=1)}
    missing = [p for p in paths if rows.get(str(p)) is None]
    if missing:
        raise SystemExit(f"{model_path}: no prediction for {len(missing)} files, e.g. {missing[0]}")
    return np.stack([rows[str(p)] for p in paths]), list(clf.classes)


def read_table(path):
    """{filename: predicted scene} from a submission table written by `tinyasc predict`."""
    lines = Path(path).read_text().splitlines()
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines[1:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("checkpoints", nargs="+", help="compressed.pt files (int8 + fp16)")
    ap.add_argument("--out-dir", default="runs/c80/deploy", help="where the .onnx files go (git-ignored)")
    args = ap.parse_args()
    data, out_dir = Path(args.data), Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = read_split(data, "evaluate")
    paths = [(data / c.filename).resolve() for c in clips]  # absolute: a .txt list resolves against its folder
    labels = [SCENES[c.label] for c in clips]  # scene names, as models and tables give them
    results = {"clips": len(clips), "models": []}
    onnx_files = []
    for i, ckpt in enumerate(args.checkpoints):
        onnx = out_dir / f"model{i}.onnx"
        sidecar = export(ckpt, onnx, int8=True, log=print)
        onnx_files.append(onnx)
        p_torch, classes = probabilities(ckpt, paths)
        p_onnx, _ = probabilities(onnx, paths)
        payload = read_checkpoint(ckpt)
        accuracy = {name: float(np.mean([classes[j] == y for j, y in zip(p.argmax(1), labels)]))
                    for name, p in (("torch", p_torch), ("onnx_int8", p_onnx))}
        results["models"].append({
            "checkpoint": "/".join(Path(ckpt).parts[-3:]),  # run/seed/file, no machine path
            "dcase2021_kb": payload["size"]["total_kb"], "onnx_file_kb": onnx.stat().st_size / 1024,
            "onnx_nonzero_param_kb": sidecar["nonzero_param_bytes"] / 1024,
            "export_check": {k: sidecar[k] for k in sidecar if "diff" in k or "agree" in k},
            "top1_agreement_onnx_vs_torch": float((p_torch.argmax(1) == p_onnx.argmax(1)).mean()),
            "max_abs_prob_diff_onnx_vs_torch": float(np.abs(p_torch - p_onnx).max()),
            "accuracy": accuracy})
        print(json.dumps(results["models"][-1], indent=1), flush=True)

    listing = out_dir / "evaluate.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    table = out_dir / "ensemble.tsv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tinyasc", "predict", *map(str, onnx_files), str(listing), "--out", str(table),
                    "--force", "--workers", "1"], check=True, env=env)
    seconds = time.perf_counter() - start
    predicted = read_table(table)
    correct = [predicted[str(p)] == y for p, y in zip(paths, labels)]
    results["ensemble_predict"] = {
        "models": len(onnx_files), "backend": "onnx int8", "workers": 1, "accuracy": float(np.mean(correct)),
        "seconds": round(seconds, 2), "clips_per_second": round(len(paths) / seconds, 1),
        "dcase2021_kb": sum(m["dcase2021_kb"] for m in results["models"]),
        "onnx_files_kb": sum(m["onnx_file_kb"] for m in results["models"])}
    print(json.dumps(results["ensemble_predict"], indent=1))
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

"""fp16 deployment storage against fp32 on a trained model: BC-ResNet-ASC-1 (c = 10, ResNorm) trained a few
epochs on the default synthetic benchmark, then its evaluate split predicted (1) with the fp32 weights, (2) with
the fp16-stored weights as `tinyasc predict` runs them (storage "fp16": every parameter rounded to fp16), and
(3) through the DCASE 2025 interface (tinyasc.dcase2025: fp16 parameters and norm statistics, upcast on CPU).
Reports top-1 agreement with fp32, max and mean |Δp| over all class probabilities, and each accuracy.

    python benchmarks/fp16_agreement.py [--data data/synthetic] [--runs runs/fp16_agreement] [--epochs 5]
The benchmark is generated (`tinyasc synth`, seed 0) when DATA is missing; the run resumes or is reused.
Writes benchmarks/results/fp16_agreement.{json,txt}."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from runner import tinyasc, warmup_sets

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "fp16_agreement"


def ensure_data(data):
    if not (Path(data) / "evaluation_setup").is_dir():
        subprocess.run([sys.executable, "-m", "tinyasc", "synth", str(data), "--seed", "0", "--quiet"], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT / "data" / "synthetic"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "fp16_agreement"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tinyasc import dcase2025
    from tinyasc.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from tinyasc.data.tau import SCENES, read_split
    from tinyasc.predict import Classifier, Member, TorchNet, clip_seconds_of, load

    ensure_data(args.data)
    run = Path(args.runs) / f"seed{args.seed}"
    sets = [f"train.epochs={args.epochs}", "runtime.threads=1", "runtime.extract_workers=0"]
    cmd = ["--config", str(ROOT / "configs" / "bc_resnet_asc_1_resnorm.toml"), "--data", args.data,
           "--seed", str(args.seed), *warmup_sets(args.epochs)]
    for s in sets:
        cmd += ["--set", s]
    tinyasc("train", run, cmd, run.parent / f"seed{args.seed}.log")
    ckpt = run / "last.pt"

    clips = read_split(args.data, "evaluate")
    files = [str(Path(args.data) / c.filename) for c in clips]
    model, feature_cfg, classes, payload = load_checkpoint(ckpt)
    # clip labels index tau.SCENES; probabilities are in the checkpoint's class order
    label_index = np.array([list(classes).index(SCENES[c.label]) for c in clips])
    timings = {}
    start = time.perf_counter()
    fp32 = Classifier([Member(str(ckpt), TorchNet(model), feature_cfg, classes, clip_seconds_of(payload))]
                      ).predict(files).probabilities
    timings["fp32"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        fp16_ckpt = Path(tmp) / "fp16.pt"  # the same weights, deployed at storage fp16
        stored = read_checkpoint(ckpt)
        extra = {k: v for k, v in stored.items() if k not in ("format", "version", "arch", "model_config",
                                                               "feature_config", "classes", "state_dict",
                                                               "weights_sha256", "storage")}
        save_checkpoint(fp16_ckpt, model, stored["arch"], feature_cfg, classes, storage="fp16", **extra)
        start = time.perf_counter()
        member = load(fp16_ckpt, backend="torch")
        assert member.members[0].storage == "fp16"
        predict16 = member.predict(files).probabilities
        timings["fp16_predict"] = time.perf_counter() - start
        start = time.perf_counter()
        api_model = dcase2025.load_model(str(fp16_ckpt))
        logits, order = dcase2025.predict(files, ["a"] * len(files), model=api_model)
        timings["fp16_dcase2025"] = time.perf_counter() - start
        dtypes = sorted({str(p.dtype) for p in dcase2025.get_model_for_device(api_model, "a").parameters()})
    api16 = torch.softmax(torch.stack(logits), dim=1).numpy()[:, [order.index(c) for c in classes]]
    result = {"data": str(Path(args.data).resolve().relative_to(ROOT)) if str(Path(args.data).resolve()).startswith(
        str(ROOT)) else args.data, "clips": len(files), "model": "bc_resnet_asc_1 (c = 10, ResNorm)",
        "epochs": args.epochs, "seed": args.seed, "cpu": cpu_name(), "threads": 1,
        "load_average_at_end": list(os.getloadavg()), "seconds": timings,
        "accuracy_fp32": float((fp32.argmax(1) == label_index).mean()), "rows": {}}
    for name, probs in (("fp16 storage, tinyasc predict (torch)", predict16),
                        ("fp16 storage, DCASE 2025 interface (" + "/".join(dtypes) + " parameters)", api16)):
        diff = np.abs(probs - fp32)
        result["rows"][name] = {"top1_agreement_with_fp32": float((probs.argmax(1) == fp32.argmax(1)).mean()),
                                "max_abs_prob_diff": float(diff.max()), "mean_abs_prob_diff": float(diff.mean()),
                                "accuracy": float((probs.argmax(1) == label_index).mean())}
    lines = [f"fp16 vs fp32 on {result['data']} evaluate split ({len(files)} clips), {result['model']}, "
             f"{args.epochs} epochs, seed {args.seed}; CPU {result['cpu']}, 1 thread",
             f"fp32 accuracy {100 * result['accuracy_fp32']:.2f} %", "",
             f"{'deployment':64s} {'top-1 agree':>11s} {'max |dp|':>10s} {'mean |dp|':>10s} {'accuracy':>9s}"]
    for name, r in result["rows"].items():
        lines.append(f"{name:64s} {100 * r['top1_agreement_with_fp32']:10.2f}% {r['max_abs_prob_diff']:10.2e} "
                     f"{r['mean_abs_prob_diff']:10.2e} {100 * r['accuracy']:8.2f}%")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    RESULTS.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

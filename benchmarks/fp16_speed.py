"""fp16 on this CPU: (1) network time per batch in fp32, with fp16-stored weights upcast to fp32 (what tinyasc
runs on CPU), and in fp16 arithmetic (what model.half() does); (2) agreement of the fp16-stored model with
the fp32 one on a dataset's evaluate split (top-1 agreement, max |Δp|, accuracy of each).

    python benchmarks/fp16_speed.py [--checkpoint CKPT --data DATA] [--reps 5]
writes benchmarks/results/fp16_cpu.{json,txt}."""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tinyasc.checkpoint import apply_storage, load_checkpoint
from tinyasc.models import create_model
from tinyasc.system import describe


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--data")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else create_model("bc_resnet_asc_dcase2024_fp16")
    model.eval()
    x = torch.randn(args.batch, 1, 256, 34)  # a batch of 1 s clips
    stored = apply_storage(load_checkpoint(args.checkpoint)[0] if args.checkpoint else _same(model), "fp16").eval()
    half = _same(stored).half().eval()
    with torch.inference_mode():
        t32 = timed(lambda: model(x), args.reps)
        t_up = timed(lambda: stored(x), args.reps)
        t16 = timed(lambda: half(x.half()), max(1, args.reps // 2))
        diff_arith = float((half(x.half()).float() - stored(x)).abs().max())
    result = {"cpu": cpu_name(), "cpu_flags": describe().get("cpu_flags"), "load_average": os.getloadavg(),
              "threads": 1, "batch": args.batch, "input": "1 s clips (256 x 34)",
              "ms_fp32": 1e3 * t32, "ms_fp16_stored_upcast": 1e3 * t_up, "ms_fp16_arithmetic": 1e3 * t16,
              "fp16_arithmetic_slowdown": t16 / t32, "max_abs_logit_diff_fp16_arith_vs_upcast": diff_arith}
    if args.checkpoint and args.data:
        from tinyasc.predict import load
        from tinyasc.data.tau import read_split

        clips = read_split(args.data, "evaluate")
        files = [str(Path(args.data) / c.filename) for c in clips]
        labels = np.array([c.label for c in clips])
        deployed = load(args.checkpoint, backend="torch").predict(files).probabilities  # fp16-stored weights
        fp32 = _float_classifier(args.checkpoint).predict(files).probabilities
        result.update({"clips": len(files), "top1_agreement": float((deployed.argmax(1) == fp32.argmax(1)).mean()),
                       "max_abs_prob_diff": float(np.abs(deployed - fp32).max()),
                       "accuracy_fp32": float((fp32.argmax(1) == labels).mean()),
                       "accuracy_fp16_stored": float((deployed.argmax(1) == labels).mean())})
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "fp16_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"{k}: {v}" for k, v in result.items()]
    (out / "fp16_cpu.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _same(model):
    import copy

    return copy.deepcopy(model)


def _float_classifier(path):
    """tinyasc's Classifier over the checkpoint's fp32 weights (storage forced to fp32)."""
    from tinyasc.predict import Classifier, Member, TorchNet, clip_seconds_of

    model, feature_cfg, classes, payload = load_checkpoint(path)
    return Classifier([Member(str(path), TorchNet(model), feature_cfg, classes, clip_seconds_of(payload))])


if __name__ == "__main__":
    main()

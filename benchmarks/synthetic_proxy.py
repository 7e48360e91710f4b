"""Proxy check of the synthetic device-shift benchmark: logistic regression on per-clip log-mel statistics.

    python benchmarks/synthetic_proxy.py data/synthetic [--seed 0] [--scale default]

Generates the benchmark into the folder first if it has no meta.csv. Trains on fold1_train, prints
per-device accuracy on fold1_evaluate and writes benchmarks/results/synthetic_proxy.json.
It is a proxy for "is there a device gap, and is A hard enough?", not a model result.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tinyasc.audio import load_audio
from tinyasc.data.synthetic import generate
from tinyasc.dcase import DEVICE_GROUPS as GROUPS
from tinyasc.dcase import DEVICES
from tinyasc.data.tau import read_split
from tinyasc.frontend import LogMel

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic_proxy.json"
# Per-clip statistics over time of the (256, T) log-mel x, per frequency. "freq-IN" statistics are
# taken after subtracting each clip's per-frequency mean (instance normalisation by frequency), so a
# fixed device gain per frequency cancels: std, 10th/90th percentiles, std of frame-to-frame change.
FEATURES = ("mean+std", "freq-IN stats")
C = 0.1  # inverse L2 strength, fixed once (not tuned per feature set) for ~1500 training clips


def clip_statistics(root, clips, batch=64):
    """{feature set name: (N, D) array} of per-clip log-mel statistics."""
    logmel, rows = LogMel(), {name: [] for name in FEATURES}
    for i in range(0, len(clips), batch):
        waves = [torch.from_numpy(load_audio(Path(root) / c.filename)) for c in clips[i:i + batch]]
        with torch.no_grad():
            x = logmel(torch.stack(waves))[:, 0]  # (B, 256, T)
        centred = x - x.mean(dim=2, keepdim=True)
        rows["mean+std"].append(torch.cat([x.mean(dim=2), x.std(dim=2)], dim=1))
        rows["freq-IN stats"].append(torch.cat([centred.std(dim=2), torch.quantile(centred, 0.1, dim=2),
                                                torch.quantile(centred, 0.9, dim=2),
                                                centred.diff(dim=2).std(dim=2)], dim=1))
    return {name: torch.cat(r).numpy() for name, r in rows.items()}


def per_device_accuracy(pred, labels, devices):
    acc = {d: float(np.mean(pred[devices == d] == labels[devices == d])) for d in DEVICES if (devices == d).any()}
    for group, members in GROUPS.items():  # pooled over the group's clips, as tinyasc.evaluate.metrics
        mask = np.isin(devices, members)
        acc[group] = float(np.mean(pred[mask] == labels[mask]))
    acc["overall"] = float(np.mean(pred == labels))
    return acc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="benchmark folder (generated here if it has no meta.csv)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", default="default")
    args = parser.parse_args()
    torch.set_num_threads(2)
    root = Path(args.root)
    if not (root / "meta.csv").is_file():
        summary = generate(root, seed=args.seed, scale=args.scale)
        print(f"generated {summary['clips']} clips in {summary['seconds']:.0f} s, {summary['bytes'] / 1e6:.0f} MB")
    start = time.perf_counter()
    train, evaluate = read_split(root, "train"), read_split(root, "evaluate")
    y_train, y_eval = np.array([c.label for c in train]), np.array([c.label for c in evaluate])
    devices = np.array([c.device for c in evaluate])
    train_stats, eval_stats = clip_statistics(root, train), clip_statistics(root, evaluate)
    results = {}
    for name in FEATURES:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        model.fit(train_stats[name], y_train)
        results[name] = per_device_accuracy(model.predict(eval_stats[name]), y_eval, devices)
        results[name]["train"] = float(model.score(train_stats[name], y_train))  # fit, not generalisation
    columns = ["train"] + list(DEVICES) + list(GROUPS) + ["overall"]
    print(f"proxy: logistic regression (C={C}) on per-clip log-mel statistics; accuracy % on fold1_evaluate "
          f"(train = accuracy on the training clips themselves)")
    print(f"{'features':20s}" + "".join(f"{c:>8s}" for c in columns) + f"{'A-unseen':>10s}")
    for name, acc in results.items():
        gap = 100 * (acc["a"] - acc["unseen"])
        print(f"{name:20s}" + "".join(f"{100 * acc[c]:8.1f}" for c in columns) + f"{gap:10.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(dict(root=root.name, seed=args.seed, scale=args.scale, classifier=f"logistic C={C}",
                                       train_clips=len(train), evaluate_clips=len(evaluate), accuracy=results,
                                       seconds=round(time.perf_counter() - start, 1)), indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[2])}")


if __name__ == "__main__":
    main()

"""Figure 1's question as numbers (issue 11 item 6): how well a 5-NN classifier recovers the recording
device from a model's stage-2 frequency-wise vs channel-wise statistics (`tinyasc figure tsne`), for
several checkpoints. Writes the t-SNE pictures next to RUNS and the scores to
benchmarks/results/figure1_scores.json (keyed by the label you give each checkpoint).

    python benchmarks/figure1_scores.py --data data/synthetic --out runs/figure1 \\
        c10_baseline_seed0=runs/devgen/baseline/seed0/last.pt c80_baseline_seed0=runs/c80/table3/baseline/seed0/last.pt
"""
import argparse
import json
import time
from pathlib import Path

import torch

from tinyasc.figure import tsne_figure

RESULTS = Path(__file__).resolve().parent / "results" / "figure1_scores.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="runs/figure1", help="folder for the t-SNE pictures (git-ignored)")
    ap.add_argument("models", nargs="+", metavar="LABEL=CHECKPOINT")
    args = ap.parse_args()
    torch.set_num_threads(1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for item in args.models:
        label, _, checkpoint = item.partition("=")
        start = time.perf_counter()
        scores = tsne_figure(checkpoint, args.data, Path(args.out) / f"{label}.png", progress=False)
        results[label] = {"checkpoint": "/".join(Path(checkpoint).parts[-3:]), "seconds": round(time.perf_counter() - start, 1),
                          **{k: float(v) for k, v in scores.items()}}
        print(label, results[label], flush=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

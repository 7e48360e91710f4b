"""Does bf16 autocast on CPU reach fp32's accuracy? BC-ResNet-ASC-1 + ResNorm on the default synthetic
benchmark, the same seeds trained in fp32 and with `runtime.amp=bf16`, side by side (alternating runs);
writes benchmarks/results/amp_accuracy.json. Resumable.

    python benchmarks/amp_accuracy.py --data data/synthetic --runs runs/amp --epochs 15 --seeds 0 1 2"""
import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--runs", default="runs/amp")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    from tinyasc.experiment import load_experiment
    from tinyasc.runs import run_training

    rows = []
    for seed in args.seeds:
        for amp in ("off", "bf16"):
            run = Path(args.runs) / f"{amp}_seed{seed}"
            if not (run / "results.json").is_file():
                exp = load_experiment(ROOT / "configs" / "bc_resnet_asc_1_resnorm.toml",
                                      [f"train.epochs={args.epochs}", f"train.seed={seed}", f"runtime.amp='{amp}'"])
                t0 = time.perf_counter()
                run_training(exp, args.data, run, progress=False, resume=(run / "last.pt").is_file())
                print(f"{run.name}: {time.perf_counter() - t0:.0f} s", flush=True)
            results = json.loads((run / "results.json").read_text())
            rows.append({"amp": amp, "seed": seed, "accuracy": results["last"]["accuracy"],
                         "macro_accuracy": results["last"]["macro_accuracy"],
                         "seconds_per_epoch": results["seconds_per_epoch"]})
    summary = {}
    for amp in ("off", "bf16"):
        acc = [100 * r["accuracy"] for r in rows if r["amp"] == amp]
        sec = [r["seconds_per_epoch"] for r in rows if r["amp"] == amp and r["seconds_per_epoch"]]
        summary[amp] = {"accuracy_mean": statistics.mean(acc), "accuracy_std": statistics.pstdev(acc),
                        "seconds_per_epoch_median": statistics.median(sec) if sec else None, "seeds": len(acc)}
        print(f"{amp:5s} accuracy {summary[amp]['accuracy_mean']:.1f} ± {summary[amp]['accuracy_std']:.1f} "
              f"({len(acc)} seeds)")
    out = ROOT / "benchmarks" / "results" / "amp_accuracy.json"
    out.write_text(json.dumps({"epochs": args.epochs, "config": "configs/bc_resnet_asc_1_resnorm.toml",
                               "rows": rows, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()

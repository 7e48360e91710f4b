"""DCASE 2022+ task on the synthetic benchmark in the TAU 2022 layout (1 s snippets): BC-ResNet-ASC-1
without and with ResNorm trained on the split5 / split25 / split100 subsets (seeds as given), per-device,
micro and macro accuracy on the evaluate split; then the general vs device-specific models on split25.
Resumable (finished runs are reused); writes benchmarks/results/tau2022_table.{json,md}.

    python benchmarks/tau2022_table.py --data data/bench22 --runs runs/tau2022 --epochs 15 --seeds 0 1 2"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "tau2022_table"
CONFIGS = {"baseline": {"model.resnorm": "none"}, "resnorm": {"model.resnorm": "all"}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/bench22")
    parser.add_argument("--runs", default="runs/tau2022")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", default=["split5", "split25", "split100"])
    parser.add_argument("--segment-seconds", type=float, default=4.0)
    parser.add_argument("--device-epochs", type=int, default=5)
    args = parser.parse_args()

    from tinyasc.data.synthetic import generate
    from tinyasc.data.tau import read_split
    from tinyasc.devices import finetune_devices
    from tinyasc.experiment import load_experiment
    from tinyasc.predict import load
    from tinyasc.runs import run_training

    data, runs = Path(args.data), Path(args.runs)
    if not (data / "evaluation_setup" / "split25.csv").is_file():
        generate(data, seed=0, scale="default", layout="tau2022", clip_seconds=args.segment_seconds)
    rows = []
    for name, sets in CONFIGS.items():
        for split in args.splits:
            for seed in (args.seeds if split == "split25" else args.seeds[:1]):
                run = runs / f"{name}_{split}_seed{seed}"
                if not (run / "results.json").is_file():
                    exp = load_experiment(None, [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sets.items()]
                                          + [f"train.epochs={args.epochs}", f"train.seed={seed}",
                                             "train.select_on='macro_accuracy'", f"name='{name}'"],
                                          base={"model": {"preset": "bc_resnet_asc_1"}})
                    t0 = time.perf_counter()
                    run_training(exp, data, run, train_split=split, progress=False, resume=(run / "last.pt").is_file())
                    print(f"{run.name}: {time.perf_counter() - t0:.0f} s", flush=True)
                last = json.loads((run / "results.json").read_text())["last"]
                rows.append({"config": name, "split": split, "seed": seed, "accuracy": last["accuracy"],
                             "macro_accuracy": last["macro_accuracy"],
                             "per_device": {d: m["accuracy"] for d, m in last["per_device"].items()},
                             "per_group": {g: m["accuracy"] for g, m in last["per_group"].items()}})
                write(rows, None, args)
    # general vs device-specific (split25, ResNorm, first seed)
    general = runs / f"resnorm_split25_seed{args.seeds[0]}" / "last.pt"
    devdir = runs / "resnorm_split25_devices"
    if not (devdir / "devices.pt").is_file():
        finetune_devices(general, data, devdir, sets=[f"train.epochs={args.device_epochs}"], progress=False, force=True,
                         train_split="split25")
    clips = read_split(data, "evaluate")
    files = [str(data / c.filename) for c in clips]
    labels = np.array([c.label for c in clips])
    devices = [c.device for c in clips]
    comparison = {}
    for label, ids in (("general", None), ("device-specific", devices)):
        clf = load(devdir / "devices.pt")
        probs = clf.predict(files, device_ids=ids).probabilities
        pred = probs.argmax(1)
        per_device = {d: float((pred[np.array(devices) == d] == labels[np.array(devices) == d]).mean())
                      for d in sorted(set(devices))}
        per_class = [float((pred[labels == k] == k).mean()) for k in sorted(set(labels))]
        comparison[label] = {"accuracy": float((pred == labels).mean()), "macro_accuracy": float(np.mean(per_class)),
                             "per_device": per_device, "device_models": clf.routed_devices}
    write(rows, comparison, args)


def write(rows, comparison, args):
    devices = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
    lines = ["| config | split | seeds | " + " | ".join(d.upper() for d in devices) + " | seen | unseen | micro | macro |",
             "|" + "---|" * (len(devices) + 7)]
    groups = {}
    for r in rows:
        groups.setdefault((r["config"], r["split"]), []).append(r)
    for (config, split), rs in groups.items():
        def mean(f):
            return 100 * float(np.mean([f(r) for r in rs]))
        macro = [100 * r["macro_accuracy"] for r in rs]
        cells = [f"{mean(lambda r, d=d: r['per_device'].get(d, np.nan)):.1f}" for d in devices]
        lines.append(f"| {config} | {split} | {len(rs)} | " + " | ".join(cells) +
                     f" | {mean(lambda r: r['per_group']['seen']):.1f} | {mean(lambda r: r['per_group']['unseen']):.1f}"
                     f" | {mean(lambda r: r['accuracy']):.1f} | {np.mean(macro):.1f} ± {np.std(macro):.1f} |")
    if comparison:
        lines += ["", "| split25, ResNorm, seed 0 | " + " | ".join(d.upper() for d in devices) + " | micro | macro |",
                  "|" + "---|" * (len(devices) + 3)]
        for label, c in comparison.items():
            lines.append(f"| {label} | " + " | ".join(f"{100 * c['per_device'].get(d, np.nan):.1f}" for d in devices)
                         + f" | {100 * c['accuracy']:.1f} | {100 * c['macro_accuracy']:.1f} |")
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    RESULTS.with_suffix(".json").write_text(json.dumps({"epochs": args.epochs, "seeds": args.seeds,
                                                         "segment_seconds": args.segment_seconds, "rows": rows,
                                                         "device_specific": comparison}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Pruning study (issue 11): which magnitude-pruning scope keeps BC-ResNet-ASC connected and accurate.

    python benchmarks/pruning_study.py --data data/bench --width 1 --seeds 0 1 2   # c = 10
    python benchmarks/pruning_study.py --data data/bench --width 8 --seeds 0       # c = 80 (other core)
    python benchmarks/pruning_study.py --report                                    # tables only

For every width (BC-ResNet-ASC-1 / -8, + ResNorm) and seed: train a short teacher with `tinyasc train`,
then for every scope (dw_floor, layer, global, global_dw_floor) and ratio (0.5, 0.75, 0.89) run `tinyasc compress` (prune
one-shot, 8-bit QAT fine-tune, no KD) and record the fraction of depthwise filters with a surviving
weight and the evaluate accuracy of compressed.pt (last epoch). Runs live in RUNS (git-ignored); a cell
whose run folder already holds results is skipped, so the study resumes, and two instances on disjoint
widths/seeds can run side by side (one thread each). Every call rewrites
benchmarks/results/pruning_study.{json,md} from all finished runs, plus the alive-filter counts of the
untrained models (no training needed).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tinyasc.checkpoint import load_checkpoint
from tinyasc.compress.prune import DEFAULT_SCOPE, SCOPES, alive_filters, conv_layers, is_depthwise, magnitude_masks
from tinyasc.models import create_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pruning_study"
CONFIGS = {1: "configs/bc_resnet_asc_1_resnorm.toml", 8: "configs/bc_resnet_asc_8_resnorm.toml"}
RATIOS = (0.5, 0.75, 0.89)


def tinyasc(*args):
    """Run the CLI with one torch thread (two studies side by side on a 2-core machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "tinyasc", *args, "--set", "train.threads=1", "--set", "train.extract_workers=1",
           "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def alive(model, ratio, scope):
    """Alive fractions of the depthwise filters and of all conv filters under `scope` at `ratio`."""
    masks = magnitude_masks(model, ratio, scope)
    dw = {n for n, m in conv_layers(model).items() if is_depthwise(m)}
    a, t = alive_filters(masks, dw)
    a_all, t_all = alive_filters(masks)
    return {"dw_alive": a / t, "dw_filters": t, "all_alive": a_all / t_all,
            "kept": sum(int(m.sum()) for m in masks.values()), "weights": sum(m.numel() for m in masks.values())}


def run_cells(args):
    """Teachers first, then the cells ratio by ratio (the highest first), so a cut-off study has whole ratios."""
    runs = Path(args.runs)
    teachers = {}
    for seed in args.seeds:
        teacher = runs / f"c{args.width}" / f"seed{seed}" / "teacher"
        if not (teacher / "results.json").is_file():
            print(f"teacher c{args.width} seed {seed} ...", flush=True)
            tinyasc("train", "--config", CONFIGS[args.width], "--data", args.data, "--out", str(teacher),
                    "--seed", str(seed), "--force", "--set", f"train.epochs={args.teacher_epochs}",
                    "--set", f"train.warmup_epochs={min(5, max(1, args.teacher_epochs // 4))}")
        teachers[seed] = teacher
    for ratio in sorted(args.ratios, reverse=True):
        for seed, teacher in teachers.items():
            model = load_checkpoint(teacher / "last.pt")[0]
            teacher_epochs = json.loads((teacher / "results.json").read_text())["last_epoch"]
            for scope in args.scopes:
                out = teacher.parent / f"{scope}_{ratio}"
                if (out / "study.json").is_file():
                    continue
                print(f"c{args.width} seed {seed} {scope} {ratio} ...", flush=True)
                seconds = tinyasc("compress", str(teacher / "last.pt"), "--data", args.data, "--out", str(out),
                                  "--force", "--prune", str(ratio), "--bits", "8", "--epochs", str(args.epochs),
                                  "--seed", str(seed), "--set", f"compress.prune_scope={scope}")
                results = json.loads((out / "results.json").read_text())
                final = results["compressed"]["compressed.pt"]
                cell = {"width": args.width, "seed": seed, "scope": scope, "ratio": ratio,
                        "teacher_epochs": teacher_epochs, "finetune_epochs": args.epochs,
                        **alive(model, ratio, scope), "accuracy": final["metrics"]["accuracy"],
                        "sparsity": final["sparsity"], "size_kb": final["size"]["total_kb"], "wall_s": round(seconds, 1)}
                (out / "study.json").write_text(json.dumps(cell, indent=1))
                report(args.runs)


def prune_only(args):
    """Evaluate accuracy right after pruning (teacher's weights and norm statistics, float, no fine-tuning)
    of every finished teacher of `args.width`, every scope and ratio: one forward pass per cell."""
    import copy


    from tinyasc.compress.pipeline import compress_experiment
    from tinyasc.compress.prune import prune, recalibrate_batchnorm
    from tinyasc.evaluate import batch_logits, metrics, softmax
    from tinyasc.runs import load_split

    torch.set_num_threads(1)
    for teacher in sorted(Path(args.runs).glob(f"c{args.width}/seed*/teacher")):
        out = teacher.parent / "prune_only.json"
        if not (teacher / "results.json").is_file() or out.is_file():
            continue
        model, _, classes, _ = load_checkpoint(teacher / "last.pt")
        exp, _ = compress_experiment(teacher / "last.pt")
        train = load_split(args.data, "train", exp, progress=False)
        data = load_split(args.data, "evaluate", exp, num_samples=round(train.clip_seconds * exp.features.sample_rate),
                          progress=False)

        def accuracy(m):
            probs = softmax(batch_logits(m, data.features))
            return metrics(probs, data.labels, data.devices, classes)["accuracy"]

        cells = [{"ratio": 0.0, "scope": "none", "accuracy": accuracy(model)}]
        for ratio in sorted(args.ratios, reverse=True):
            for scope in args.scopes:
                student = copy.deepcopy(model)
                prune(student, ratio, scope)
                cell = {"ratio": ratio, "scope": scope, **alive(model, ratio, scope), "accuracy": accuracy(student)}
                # as tinyasc compress does before fine-tuning (it uses up to 2,048 clips)
                recalibrate_batchnorm(student, train.features, max_clips=args.recal_clips)
                cells.append({**cell, "accuracy_recalibrated": accuracy(student), "recal_clips": args.recal_clips})
                print(teacher, cells[-1], flush=True)
        out.write_text(json.dumps(cells, indent=1))
        report(args.runs)


def _mean_std(values):
    if not values:
        return "–"
    mean = 100 * statistics.mean(values)
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def report(runs):
    """Rewrite pruning_study.{json,md} from every finished cell under `runs`."""
    runs = Path(runs)
    cells = [json.loads(p.read_text()) for p in sorted(runs.glob("c*/seed*/*/study.json"))]
    teachers = {}
    for p in sorted(runs.glob("c*/seed*/teacher/results.json")):
        res = json.loads(p.read_text())
        teachers[f"{p.parts[-4]}/{p.parts[-3]}"] = {"accuracy": res["last"]["accuracy"], "epochs": res["last_epoch"],
                                                    "seconds_per_epoch": round(res["seconds_per_epoch"], 1)}
    untrained = []
    for width in (1, 8):
        torch.manual_seed(0)
        model = create_model(f"bc_resnet_asc_{width}", resnorm="all")
        for ratio in RATIOS:
            for scope in SCOPES:
                untrained.append({"width": width, "ratio": ratio, "scope": scope, **alive(model, ratio, scope)})
    pruned = [{"width": int(p.parts[-3][1:]), "seed": int(p.parts[-2][4:]), **c}
              for p in sorted(runs.glob("c*/seed*/prune_only.json")) for c in json.loads(p.read_text())]
    data = {"default_scope": DEFAULT_SCOPE, "untrained_alive": untrained, "teachers": teachers, "cells": cells,
            "prune_only": pruned}
    RESULTS.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")

    lines = ["# Pruning study (benchmarks/pruning_study.py)", "",
             "Alive = fraction of depthwise filters with at least one non-zero weight after pruning. Accuracy =",
             "evaluate accuracy (%) of compressed.pt (8-bit QAT, last fine-tuning epoch, no KD), mean ± std over",
             "seeds. Default synthetic benchmark (`tinyasc synth data/bench --seed 0`), teachers and fine-tuning",
             "short (epochs in the table), one torch thread per run.", "",
             "## Untrained models (seed 0), alive depthwise filters", "",
             "| model | ratio | " + " | ".join(SCOPES) + " |", "|---|---|" + "---|" * len(SCOPES)]
    for width in (1, 8):
        for ratio in RATIOS:
            row = {u["scope"]: u for u in untrained if u["width"] == width and u["ratio"] == ratio}
            lines.append(f"| c={10 * width} | {ratio} | " + " | ".join(f"{row[s]['dw_alive']:.3f}" for s in SCOPES) + " |")
    for width in sorted({c["width"] for c in cells}):
        mine = [c for c in cells if c["width"] == width]
        tkeys = sorted(k for k in teachers if k.startswith(f"c{width}/"))
        tacc = [teachers[k]["accuracy"] for k in tkeys if teachers[k]["accuracy"] is not None]
        lines += ["", f"## BC-ResNet-ASC-{width} (c = {10 * width}) + ResNorm after pruning + fine-tuning", "",
                  f"Teachers: {len(tkeys)} seed(s), {mine[0]['teacher_epochs']} epochs, evaluate accuracy {_mean_std(tacc)} %; "
                  f"fine-tuning {mine[0]['finetune_epochs']} epochs.", "",
                  "| ratio | scope | alive dw filters | alive all filters | accuracy % | seeds | wall s / run |",
                  "|---|---|---|---|---|---|---|"]
        for ratio in RATIOS:
            for scope in SCOPES:
                group = [c for c in mine if c["ratio"] == ratio and c["scope"] == scope]
                if not group:
                    continue
                lines.append(f"| {ratio} | {scope} | {statistics.mean(c['dw_alive'] for c in group):.3f} | "
                             f"{statistics.mean(c['all_alive'] for c in group):.3f} | "
                             f"{_mean_std([c['accuracy'] for c in group])} | "
                             f"{','.join(str(c['seed']) for c in group)} | {statistics.mean(c['wall_s'] for c in group):.0f} |")
    for width in sorted({c["width"] for c in pruned}):
        mine = [c for c in pruned if c["width"] == width]
        seeds = sorted({c["seed"] for c in mine})
        lines += ["", f"## c = {10 * width}: accuracy right after pruning (no fine-tuning, float)", "",
                  f"Seeds {seeds}; unpruned teacher: {_mean_std([c['accuracy'] for c in mine if c['scope'] == 'none'])} %. "
                  "Each cell: pruned with the teacher's BatchNorm statistics → after re-estimating them "
                  "(`recalibrate_batchnorm`) on training clips.", "",
                  "| ratio | " + " | ".join(SCOPES) + " |", "|---|" + "---|" * len(SCOPES)]
        for ratio in RATIOS:
            cells_at = [[c for c in mine if c["ratio"] == ratio and c["scope"] == s] for s in SCOPES]
            lines.append(f"| {ratio} | " + " | ".join(
                f"{_mean_std([c['accuracy'] for c in group])} → "
                f"{_mean_std([c['accuracy_recalibrated'] for c in group if 'accuracy_recalibrated' in c])}"
                for group in cells_at) + " |")
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/bench")
    ap.add_argument("--runs", default="runs/pruning_study", help="run folders (git-ignored)")
    ap.add_argument("--width", type=int, choices=(1, 8), default=1, help="1 = BC-ResNet-ASC-1 (c=10), 8 = c=80")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs per compression")
    ap.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    ap.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=SCOPES)
    ap.add_argument("--report", action="store_true", help="only rewrite the result files")
    ap.add_argument("--recal-clips", type=int, default=2048, help="training clips for the BatchNorm re-estimate "
                    "in --prune-only (compress uses 2,048)")
    ap.add_argument("--prune-only", action="store_true", help="accuracy right after pruning, no fine-tuning "
                    "(every finished teacher of --width)")
    args = ap.parse_args()
    if args.prune_only:
        prune_only(args)
    elif not args.report:
        run_cells(args)
    report(args.runs)


if __name__ == "__main__":
    main()

"""Table 3 for BC-ResNet-ASC-8 (c = 80) on one schedule for every row: baseline, ResNorm, input only, no
shortcut, ResNorm + Freq-MixStyle, SpecAugment on with the recipe's mask fill (train.spec_fill), best.pt
chosen on the validation split; per-seed differences to the baseline (same seed) with mean ± std, and the
per-epoch curves of every run. Parallel 1-thread jobs, seed-major, resumable. Writes
benchmarks/results/c80_table3.{json,md}.

    python benchmarks/c80_table3.py --data data/synthetic --runs runs/c80t3 --epochs 20 --seeds 0 1 2 --jobs 2"""
import argparse
import json
from pathlib import Path

from runner import measured, mean_std, pct, run_all, tinyasc, warmup_sets, write_results

ROOT = Path(__file__).resolve().parent.parent
MIXSTYLE = ["train.freq_mixstyle_p=0.4", "train.freq_mixstyle_alpha=0.3"]
ROWS = {  # row: (config, extra --set, label)
    "baseline": ("bc_resnet_asc_8_baseline", [], "BC-ResNet-ASC-8 (baseline)"),
    "resnorm": ("bc_resnet_asc_8_resnorm", [], "BC-ResNet-ASC-8 + ResNorm"),
    "resnorm_input_only": ("bc_resnet_asc_8_resnorm_input_only", [], "w/o ResNorm in network (input only)"),
    "resnorm_no_shortcut": ("bc_resnet_asc_8_resnorm_no_shortcut", [], "w/o shortcut (λ = 0)"),
    "resnorm_mixstyle": ("bc_resnet_asc_8_resnorm", MIXSTYLE, "ResNorm + Freq-MixStyle"),
}
KEYS = ("eval_accuracy", "eval_unseen", "eval_a", "eval_macro_accuracy", "val_accuracy", "best_eval_accuracy",
        "seconds_per_epoch")
STEPS_PAPER = 13_962 // 64 * 100  # TAU 2020 fold 1: 218 steps per epoch × 100 epochs


def run_dir(args, row, seed):
    return Path(args.runs) / row / f"seed{seed}"


def train(args, row, seed):
    config, extra, _ = ROWS[row]
    cmd = ["--config", f"configs/{config}.toml", "--data", args.data, "--seed", str(seed), *warmup_sets(args.epochs)]
    for s in [f"train.epochs={args.epochs}", "runtime.threads=1", "runtime.extract_workers=0",
              f"runtime.amp='{args.amp}'", f"name='{row}'", *extra, *args.set]:
        cmd += ["--set", s]
    run = run_dir(args, row, seed)
    return tinyasc("train", run, cmd, run.parent / f"seed{seed}.log")


def summarise(args):
    runs = {row: {seed: m for seed in args.seeds if (m := measured(run_dir(args, row, seed)))} for row in ROWS}
    table = {}
    for row, per_seed in runs.items():
        if not per_seed:
            continue
        # the difference to the baseline of the same seed, where both finished
        for seed, m in per_seed.items():
            base = runs["baseline"].get(seed)
            m["minus_baseline"] = None if base is None else m["eval_accuracy"] - base["eval_accuracy"]
            m["unseen_minus_baseline"] = None if base is None else m["eval_unseen"] - base["eval_unseen"]
        table[row] = {"label": ROWS[row][2], "seeds": per_seed,
                      **mean_std(per_seed, (*KEYS, "minus_baseline", "unseen_minus_baseline"))}
    return table


def markdown(args, table, steps):
    lines = [f"# Table 3 for BC-ResNet-ASC-8 ({args.epochs} epochs = {steps:,} steps; the paper: ~{STEPS_PAPER:,})", "",
             "Last epoch, accuracy (%) on the evaluate split, mean ± std over the seeds listed; the epoch for "
             "'best' is chosen on the validation split (held-out training locations). Δ = row − baseline of the "
             "same seed, mean ± std over seeds. SpecAugment on (§3.1) with the recipe's mask fill.", "",
             "| method | seeds | overall | A | unseen | macro | Δ overall | Δ unseen | validation | best (val-chosen) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in table.values():
        lines.append(f"| {t['label']} | {len(t['seeds'])} | {pct(t, 'eval_accuracy')} | {pct(t, 'eval_a')} | "
                     f"{pct(t, 'eval_unseen')} | {pct(t, 'eval_macro_accuracy')} | {pct(t, 'minus_baseline')} | "
                     f"{pct(t, 'unseen_minus_baseline')} | {pct(t, 'val_accuracy')} | {pct(t, 'best_eval_accuracy')} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--runs", default="runs/c80t3")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--amp", default="off", choices=["off", "bf16"], help="bf16 only where the CPU has bf16 instructions")
    parser.add_argument("--set", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--jobs", type=int, default=2, help="parallel 1-thread training jobs")
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--results", default="benchmarks/results/c80_table3", help="results path without suffix")
    args = parser.parse_args()
    if not args.summary_only:
        run_all(args.jobs, [lambda row=row, seed=seed: train(args, row, seed) for seed in args.seeds for row in args.rows])
    table = summarise(args)
    first = next((run_dir(args, row, seed) / "results.json" for seed in args.seeds for row in ROWS
                  if (run_dir(args, row, seed) / "results.json").is_file()), None)
    steps = json.loads(first.read_text()).get("steps", 0) if first else 0
    meta = {"epochs": args.epochs, "steps": steps, "paper_steps": STEPS_PAPER, "seeds": args.seeds, "amp": args.amp,
            "extra_sets": args.set, "data": Path(args.data).name}
    write_results(args.results, meta, table, markdown(args, table, steps))

if __name__ == "__main__":
    main()

"""SpecAugment's mask fill against Residual Normalization: BC-ResNet-ASC + ResNorm trained with each
fill (augment.SPEC_FILLS) under time masks, frequency masks and both, and with SpecAugment off, on the
default synthetic benchmark. Choices are read off the validation split (held-out training locations);
the evaluate split is reported beside it. Runs (row, seed) pairs as parallel 1-thread jobs, seed by seed,
and resumes cut runs. Writes benchmarks/results/fill_study_<name>.{json,md}.

    python benchmarks/fill_study.py --config configs/bc_resnet_asc_1_resnorm.toml --name c10 --epochs 15 --seeds 0 1 2
    python benchmarks/fill_study.py --config configs/bc_resnet_asc_8_resnorm.toml --name c80 --epochs 10 --seeds 0 \\
        --rows off clip_mean/both bin_mean/both bin_noise/both"""
import argparse
from pathlib import Path

from runner import measured, mean_std, pct, run_all, tinyasc, warmup_sets, write_results

ROOT = Path(__file__).resolve().parent.parent
MASKS = {"both": [], "time": ["train.spec_freq_masks=0"], "freq": ["train.spec_time_masks=0"]}
FILLS = ("clip_mean", "bin_mean", "dataset_mean", "bin_noise")
ROWS = {"off": ["train.spec_augment='off'"],
        **{f"{fill}/{masks}": ["train.spec_augment='on'", f"train.spec_fill='{fill}'", *MASKS[masks]]
           for fill in FILLS for masks in MASKS}}
KEYS = ("val_accuracy", "eval_accuracy", "eval_unseen", "eval_macro_accuracy", "best_epoch", "seconds_per_epoch")


def run_dir(args, row, seed):
    return Path(args.runs) / row.replace("/", "_") / f"seed{seed}"


def train(args, row, seed):
    sets = [f"train.epochs={args.epochs}", "runtime.threads=1", "runtime.extract_workers=0",
            f"name='{Path(args.config).stem} {row}'", *ROWS[row], *args.set]
    cmd = ["--config", args.config, "--data", args.data, "--seed", str(seed), *warmup_sets(args.epochs)]
    for s in sets:
        cmd += ["--set", s]
    run = run_dir(args, row, seed)
    return tinyasc("train", run, cmd, run.parent / f"seed{seed}.log")


def summarise(args, rows):
    table = {}
    for row in rows:
        per_seed = {seed: m for seed in args.seeds if (m := measured(run_dir(args, row, seed)))}
        if per_seed:
            table[row] = {"seeds": per_seed, **mean_std(per_seed, KEYS)}
    return table


def markdown(args, table):
    lines = [f"# SpecAugment mask fill × ResNorm ({Path(args.config).stem}, {args.epochs} epochs, last epoch)", "",
             "Validation = held-out training locations (train.validation = 0.1, what choices are made on); "
             "evaluate = the reported split (devices A–S6; unseen = S4–S6). Mean ± std over the seeds listed.", "",
             "| fill / masks | seeds | validation | evaluate | evaluate unseen | evaluate macro |",
             "|---|---|---|---|---|---|"]
    ranked = sorted(table.items(), key=lambda kv: -kv[1]["mean"]["val_accuracy"])
    for row, t in ranked:
        lines.append(f"| {row} | {len(t['seeds'])} | {pct(t, 'val_accuracy')} | {pct(t, 'eval_accuracy')} | "
                     f"{pct(t, 'eval_unseen')} | {pct(t, 'eval_macro_accuracy')} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bc_resnet_asc_1_resnorm.toml")
    parser.add_argument("--name", default="c10", help="results file suffix")
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--runs", help="run folder (default runs/fill_<name>)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--set", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--jobs", type=int, default=2, help="parallel 1-thread training jobs")
    parser.add_argument("--summary-only", action="store_true", help="only write the results from finished runs")
    args = parser.parse_args()
    args.runs = args.runs or f"runs/fill_{args.name}"
    if not args.summary_only:
        run_all(args.jobs, [lambda row=row, seed=seed: train(args, row, seed) for seed in args.seeds for row in args.rows])
    table = summarise(args, args.rows)
    meta = {"config": args.config, "epochs": args.epochs, "seeds": args.seeds, "extra_sets": args.set,
            "data": Path(args.data).name}
    write_results(ROOT / "benchmarks" / "results" / f"fill_study_{args.name}", meta, table, markdown(args, table))


if __name__ == "__main__":
    main()

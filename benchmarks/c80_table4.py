"""Table 4 for BC-ResNet-ASC-8 (c = 80), attributable: each seed's teacher from benchmarks/c80_table3.py (the
ResNorm row with the best mean validation accuracy, unless --teacher-row) is (1) fine-tuned unpruned in fp32
for the same epochs (the control: what the extra epochs alone do), (2) compressed (pruned 0.89, 8-bit QAT,
fp16 elsewhere), (3) compressed with KD from itself; and (4) the ensemble of two compressed models of
independently trained teachers (seed pairs 0+1, 1+2, 2+0). Drops are per seed against the same teacher.
Writes benchmarks/results/c80_table4.{json,md}.

    python benchmarks/c80_table4.py --data data/synthetic --runs runs/c80t3 --out-runs runs/c80t4 --epochs 5 --seeds 0 1 2"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from runner import measured, mean_std, pct, run_all, tinyasc, write_results

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name: (config, extra compress arguments, label)
    "finetune_fp32": ("table4_compressed", ["--prune", "0", "--bits", "0", "--set", "compress.fp16=false"],
                      "control: teacher fine-tuned unpruned, fp32"),
    "compressed": ("table4_compressed", [], "compressed (0.89, int8 + fp16)"),
    "compressed_kd": ("table4_compressed_kd", [], "compressed + KD"),
}


def teacher_row(args):
    if args.teacher_row:
        return args.teacher_row
    path = ROOT / "benchmarks" / "results" / "c80_table3.json"
    if not path.is_file():
        sys.exit(f"{path}: missing; run benchmarks/c80_table3.py first, or name the teacher with --teacher-row")
    table3 = json.loads(path.read_text())["rows"]
    resnorm_rows = {row: t for row, t in table3.items() if row.startswith("resnorm") and "val_accuracy" in t["mean"]}
    return max(resnorm_rows, key=lambda row: resnorm_rows[row]["mean"]["val_accuracy"])  # chosen on validation


def compress(args, row, variant, seed):
    config, extra, _ = VARIANTS[variant]
    teacher = Path(args.runs) / row / f"seed{seed}" / "last.pt"
    cmd = [str(teacher), "--config", f"configs/{config}.toml", "--data", args.data, "--seed", str(seed),
           "--epochs", str(args.epochs), "--set", "runtime.threads=1", *extra]
    run = Path(args.out_runs) / variant / f"seed{seed}"
    return tinyasc("compress", run, cmd, run.parent / f"seed{seed}.log")


def stored_metrics(run):
    """Metrics of the stored compressed checkpoint (compressed.pt), or of last.pt for the fp32 control."""
    r = json.loads((Path(run) / "results.json").read_text())
    packed = r.get("compressed", {}).get("compressed.pt")
    return (packed["metrics"], packed["size"]["total_bytes"]) if packed else (r["last"], None)


def ensemble_metrics(args, a, b):
    from tinyasc.runs import evaluate_checkpoints

    paths = [Path(args.out_runs) / "compressed" / f"seed{s}" / "compressed.pt" for s in (a, b)]
    return evaluate_checkpoints(paths, args.data, progress=False) if all(p.is_file() for p in paths) else None


def summarise(args, row):
    teacher = {s: m for s in args.seeds if (m := measured(Path(args.runs) / row / f"seed{s}"))}
    table = {"teacher": {"label": f"vanilla ({row}, fp32)", "seeds": teacher,
                         **mean_std(teacher, ("eval_accuracy", "eval_unseen"))}}
    for variant, (_, _, label) in VARIANTS.items():
        per_seed = {}
        for s in args.seeds:
            run = Path(args.out_runs) / variant / f"seed{s}"
            if not (run / "results.json").is_file() or s not in teacher:
                continue
            m, size = stored_metrics(run)
            unseen = float(np.mean([m["per_device"][d]["accuracy"] for d in ("s4", "s5", "s6")]))
            per_seed[s] = {"eval_accuracy": m["accuracy"], "eval_unseen": unseen, "size_bytes": size,
                           "drop": teacher[s]["eval_accuracy"] - m["accuracy"],
                           "curve": measured(run)["curve"]}
        if per_seed:
            table[variant] = {"label": label, "seeds": per_seed,
                              **mean_std(per_seed, ("eval_accuracy", "eval_unseen", "drop", "size_bytes"))}
    pairs = sorted({tuple(sorted(p)) for p in zip(args.seeds, args.seeds[1:] + args.seeds[:1]) if p[0] != p[1]})
    per_pair = {f"{a}+{b}": {"eval_accuracy": m["accuracy"]} for a, b in pairs if (m := ensemble_metrics(args, a, b))}
    if per_pair:
        table["ensemble"] = {"label": "ensemble of two compressed models (independent teachers)", "seeds": per_pair,
                             **mean_std(per_pair, ("eval_accuracy",))}
    return table


def markdown(args, row, table):
    lines = [f"# Table 4 for BC-ResNet-ASC-8: teacher row `{row}` (chosen on validation), {args.epochs} fine-tuning "
             "epochs", "", "Accuracy (%) on the evaluate split at the last epoch, of the stored checkpoint; drop = "
             "teacher − row, same seed; mean ± std over seeds (ensemble: over seed pairs).", "",
             "| row | seeds | overall | unseen | drop vs teacher | size (KB) |", "|---|---|---|---|---|---|"]
    for t in table.values():
        size = t["mean"].get("size_bytes")
        lines.append(f"| {t['label']} | {len(t['seeds'])} | {pct(t, 'eval_accuracy')} | {pct(t, 'eval_unseen')} | "
                     f"{pct(t, 'drop')} | {'–' if not size else f'{size / 1024:.1f}'} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--runs", default="runs/c80t3", help="benchmarks/c80_table3.py's run folder (the teachers)")
    parser.add_argument("--out-runs", default="runs/c80t4")
    parser.add_argument("--teacher-row", help="Table 3 row to compress (default: best ResNorm row on validation)")
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs for every variant")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--results", default="benchmarks/results/c80_table4", help="results path without suffix")
    args = parser.parse_args()
    row = teacher_row(args)
    if not args.summary_only:
        run_all(args.jobs, [lambda v=v, s=s: compress(args, row, v, s) for s in args.seeds for v in VARIANTS])
    table = summarise(args, row)
    meta = {"teacher_row": row, "epochs": args.epochs, "seeds": args.seeds, "data": Path(args.data).name}
    write_results(args.results, meta, table, markdown(args, row, table))

if __name__ == "__main__":
    main()

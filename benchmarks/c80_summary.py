"""Tables 3 and 4 for BC-ResNet-ASC-8 (issue 11) from the runs of benchmarks/c80_tables.sh and the ensemble
figures of benchmarks/c80_deploy.py: accuracy per device, groups, the A − unseen gap, wall time per run;
for Table 4 also the DCASE 2021 size, the drop against the vanilla model and the fine-tuning curve.

    python benchmarks/c80_summary.py runs/c80   → benchmarks/results/c80_tables.{md,json}
"""
import json
import statistics
import sys
from pathlib import Path

from tinyasc.checkpoint import load_checkpoint
from tinyasc.complexity import size_report

RESULTS = Path(__file__).resolve().parent / "results" / "c80_tables"
DEVICES = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"]
TABLE3 = {"resnorm": "BC-ResNet-ASC-8 + ResNorm", "baseline": "BC-ResNet-ASC-8 (baseline)",
          "resnorm_input_only": "w/o ResNorm in network (input only)", "resnorm_no_shortcut": "w/o shortcut (λ = 0)"}


def row(name, metrics, extra):
    groups = metrics["per_group"]
    return {"name": name, "accuracy": metrics["accuracy"], "macro_accuracy": metrics["macro_accuracy"],
            "per_device": {d: metrics["per_device"][d]["accuracy"] for d in DEVICES},
            "groups": {g: groups[g]["accuracy"] for g in ("real", "seen", "unseen")},
            "gap_a_unseen": metrics["per_device"]["a"]["accuracy"] - groups["unseen"]["accuracy"], **extra}


def mean_rows(rows):
    """One row over seeds: means, plus the std of overall accuracy."""
    first = rows[0]
    out = {**first, "seeds": [r["seed"] for r in rows], "accuracy": statistics.mean(r["accuracy"] for r in rows),
           "accuracy_std": statistics.pstdev(r["accuracy"] for r in rows),
           "macro_accuracy": statistics.mean(r["macro_accuracy"] for r in rows),
           "per_device": {d: statistics.mean(r["per_device"][d] for r in rows) for d in DEVICES},
           "groups": {g: statistics.mean(r["groups"][g] for r in rows) for g in first["groups"]},
           "gap_a_unseen": statistics.mean(r["gap_a_unseen"] for r in rows),
           "wall_s": statistics.mean(r["wall_s"] for r in rows)}
    return out


def markdown(rows, extra_cols):
    head = ["method", "seeds", *[d.upper() for d in DEVICES], "overall", "real", "seen", "unseen", "A − unseen",
            *[c for c, _ in extra_cols], "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        overall = f"{100 * r['accuracy']:.1f}" + (f" ± {100 * r['accuracy_std']:.1f}" if len(r["seeds"]) > 1 else "")
        cells = [r["name"], str(len(r["seeds"])), *[f"{100 * r['per_device'][d]:.1f}" for d in DEVICES], overall,
                 *[f"{100 * r['groups'][g]:.1f}" for g in ("real", "seen", "unseen")], f"{100 * r['gap_a_unseen']:+.1f}",
                 *[f(r) for _, f in extra_cols], f"{r['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(runs):
    runs = Path(runs)
    table3, vanilla = [], None
    for key, name in TABLE3.items():
        rows = []
        for res in sorted((runs / "table3" / key).glob("seed*/results.json")):
            r = json.loads(res.read_text())
            rows.append(row(name, r["last"], {"seed": int(res.parent.name[4:]), "epochs": r["last_epoch"],
                                              "wall_s": r["seconds_per_epoch"] * r["last_epoch"]}))
        if rows:
            table3.append(mean_rows(rows))
            if key == "resnorm":
                vanilla = {r["seed"]: r for r in rows}
    checks = []  # runs/c80/<check>/<row>/seed*: a Table 3 row with one recipe change
    for check, label in (("fp32_check", "fp32, no autocast"), ("specaug_off_check", "SpecAugment off")):
        for res in sorted((runs / check).glob("*/seed*/results.json")):
            r = json.loads(res.read_text())
            checks.append(mean_rows([row(f"{res.parent.parent.name} ({label})", r["last"], {
                "seed": int(res.parent.name[4:]), "epochs": r["last_epoch"],
                "wall_s": r["seconds_per_epoch"] * r["last_epoch"]})]))
    table4 = []
    for res in sorted((runs / "table4").glob("*/seed*/results.json")):
        r = json.loads(res.read_text())
        variant, seed = res.parent.parent.name, int(res.parent.name[4:])
        c = r["compressed"]["compressed.pt"]
        drop = (vanilla[seed]["accuracy"] - c["metrics"]["accuracy"]) if vanilla and seed in vanilla else None
        table4.append(row(f"{variant} (teacher seed {seed})", c["metrics"], {
            "seed": seed, "seeds": [seed], "variant": variant, "finetune_epochs": r["last_epoch"],
            "wall_s": r["seconds_per_epoch"] * r["last_epoch"], "size_kb": c["size"]["total_kb"],
            "nonzero_8bit": c["size"]["by_bits"]["8"]["nonzero"], "nonzero_16bit": c["size"]["by_bits"]["16"]["nonzero"],
            "sparsity": c["sparsity"], "drop_vs_vanilla": drop, "accuracy_std": 0.0,
            "curve": [json.loads(line)["eval_accuracy"] for line in (res.parent / "metrics.jsonl").read_text().splitlines()]}))
    deploy = Path(__file__).resolve().parent / "results" / "c80_deploy.json"
    ensemble = json.loads(deploy.read_text()) if deploy.is_file() else None

    lines = ["# BC-ResNet-ASC-8 (c = 80) on the default synthetic benchmark (benchmarks/c80_tables.sh, c80_summary.py)", "",
             "Accuracy (%) on the evaluate split at the last epoch; wall s = seconds per epoch × epochs, one torch thread,",
             "bf16 autocast, next to other jobs.", "", "## Table 3", ""]
    lines += markdown(table3 + checks, [("epochs", lambda r: str(r["epochs"]))])
    lines += ["", "## Table 4 (compressed from the ResNorm run; pruned 0.89, 8-bit convs, fp16 elsewhere)", ""]
    if vanilla:
        van = [mean_rows(list(vanilla.values()))]
        van[0]["name"] = "vanilla (BC-ResNet-ASC-8 + ResNorm, fp32)"
        model = load_checkpoint(runs / "table3" / "resnorm" / f"seed{van[0]['seeds'][0]}" / "last.pt")[0]
        van[0]["size_kb"] = size_report(model)["total_bytes"] / 1024  # fp32, no zeros
        lines += markdown(van + table4, [
            ("fine-tune epochs", lambda r: str(r.get("finetune_epochs", "–"))),
            ("size KB", lambda r: f"{r['size_kb']:.1f}"),
            ("drop vs vanilla", lambda r: f"{100 * r['drop_vs_vanilla']:.1f}" if r.get("drop_vs_vanilla") is not None else "–")])
        lines += ["", "Fine-tuning curve (evaluate accuracy % after each fine-tuning epoch):", ""]
        lines += [f"- {r['name']}: " + " → ".join(f"{100 * a:.1f}" for a in r["curve"]) for r in table4]
    if ensemble:
        e = ensemble["ensemble_predict"]
        lines += ["", "## The two-model ensemble through deployment (benchmarks/c80_deploy.py)", "",
                  f"int8 ONNX (own QAT codes) of {', '.join(m['checkpoint'] for m in ensemble['models'])}; "
                  f"`tinyasc predict` with both models on the {ensemble['clips']} evaluate clips, one worker: accuracy "
                  f"{100 * e['accuracy']:.1f} %, {e['clips_per_second']} clips/s ({e['seconds']} s, start-up included), "
                  f"DCASE 2021 size {e['dcase2021_kb']:.1f} KB (sum of the members), ONNX files {e['onnx_files_kb']:.0f} KB.", ""]
        for m in ensemble["models"]:
            lines.append(f"- {m['checkpoint']}: {m['dcase2021_kb']:.1f} KB; accuracy PyTorch {100 * m['accuracy']['torch']:.1f} % / "
                         f"ONNX int8 {100 * m['accuracy']['onnx_int8']:.1f} %; ONNX vs PyTorch top-1 agreement "
                         f"{100 * m['top1_agreement_onnx_vs_torch']:.1f} %, max |Δ probability| {m['max_abs_prob_diff_onnx_vs_torch']:.1e}")
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")
    RESULTS.with_suffix(".json").write_text(json.dumps({"table3": table3, "fp32_check": checks, "table4": table4, "ensemble": ensemble},
                                                       indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/c80")

"""Shared by the table scripts in benchmarks/: run `tinyasc train` / `tinyasc compress` commands as parallel
1-thread jobs (seed-major, so a cut session leaves whole seeds), resume a cut run, skip a finished one, and
read back what a run measured (last / best / validation metrics, per-epoch curves)."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

UNSEEN = ("s4", "s5", "s6")


def tinyasc(command, run, args, log):
    """Run `tinyasc COMMAND ... --out RUN` (args without --out) unless RUN is finished; --resume a cut run.
    One torch thread; output appended to LOG."""
    run = Path(run)
    if (run / "results.json").is_file():
        return run
    cmd = [sys.executable, "-m", "tinyasc", command, *args, "--out", str(run), "--quiet"]
    if (run / "last.pt").is_file():
        cmd.append("--resume")
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


def run_all(jobs, tasks):
    """Call each zero-argument task, `jobs` at a time, in the order given; re-raise the first failure."""
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


def warmup_sets(epochs):
    """The recipe's 5 warm-up epochs, capped at a quarter of a short schedule."""
    return ["--set", f"train.warmup_epochs={min(5.0, epochs / 4)}"] if epochs < 20 else []


def measured(run):
    """What a finished run measured, as plain numbers (None if it is not finished): last-epoch evaluate
    accuracy (overall, unseen S4–S6, macro), last-epoch validation accuracy, the best epoch and its
    evaluate accuracy, the split that chose it, seconds per epoch, and the per-epoch curves."""
    path = Path(run) / "results.json"
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    last = r["last"]
    history = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"eval_accuracy": last["accuracy"], "eval_macro_accuracy": last["macro_accuracy"],
            "eval_unseen": float(np.mean([last["per_device"][d]["accuracy"] for d in UNSEEN])),
            "eval_a": last["per_device"]["a"]["accuracy"],
            "val_accuracy": (r.get("last_validation") or {}).get("accuracy"),
            "best_epoch": r["best_epoch"], "best_eval_accuracy": r["best"]["accuracy"],
            "chosen_on": r.get("selected_on", {}).get("split", "evaluate"),
            "seconds_per_epoch": r["seconds_per_epoch"],
            "curve": {"val_accuracy": [h.get("val_accuracy") for h in history],
                      "eval_accuracy": [h["eval_accuracy"] for h in history],
                      "train_loss": [h["train_loss"] for h in history]}}


def mean_std(per_seed, keys):
    """{"mean": {k: …}, "std": {k: …}} over the seeds' dicts (population std), numbers only."""
    out = {"mean": {}, "std": {}}
    for k in keys:
        values = [s[k] for s in per_seed.values() if s.get(k) is not None]
        if values:
            out["mean"][k], out["std"][k] = float(np.mean(values)), float(np.std(values))
    return out


def pct(summary, key):
    """'72.3 ± 1.1' (percent) from a mean_std summary, '–' if absent."""
    if key not in summary["mean"]:
        return "–"
    return f"{100 * summary['mean'][key]:.1f} ± {100 * summary['std'][key]:.1f}"


def write_results(path, meta, table, text):
    """Write PATH.json ({**meta, "rows": table}) and PATH.md (text) and print the text; refuse, with one
    line, a table without a finished run, so a wrong --runs never overwrites committed results."""
    if not table:
        sys.exit(f"no finished run to summarise (check --runs); {path}.json and .md left as they were")
    path = Path(path)
    path.with_suffix(".json").write_text(json.dumps({**meta, "rows": table}, indent=2) + "\n")
    path.with_suffix(".md").write_text(text)
    print(text)

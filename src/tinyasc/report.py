"""Reports: aggregate runs (seeds) into the paper's Table 3 layout with mean ± std per column, for the
last epoch and for the best epoch (chosen on the validation split, or on the evaluate split as the paper's
'early stopping' figure: each row says which); plots."""
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from tinyasc.errors import TinyascError
from tinyasc.experiment import recipe_of
from tinyasc.rundir import RunDir
from tinyasc.dcase import DEVICE_GROUPS, DEVICES

COLUMNS = [d.upper() for d in DEVICES] + ["Overall", "real", "seen", "unseen", "macro"]


def load_run(run_dir):
    """(config dict, results dict) of a finished run directory."""
    run = RunDir(run_dir)
    loaded = []
    for path in (run.config, run.results):
        try:
            loaded.append(json.loads(path.read_text()))
        except FileNotFoundError:
            raise TinyascError(f"{run.path}: not a finished run (missing {path.name})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TinyascError(f"{path}: unreadable ({e})") from None
    config, results = loaded
    for path, d, keys in ((run.config, config, ("name", "model")), (run.results, results, ("last", "best"))):
        if not isinstance(d, dict) or any(k not in d for k in keys):
            raise TinyascError(f"{path}: not a tinyasc run file (needs {', '.join(keys)})")
    return config, results


def columns_of(m):
    """Accuracy (%) per Table 3 column of one metrics dict; NaN where a device is absent."""
    values = [m["per_device"].get(d, {}).get("accuracy", np.nan) for d in DEVICES]
    values.append(m["accuracy"])
    values += [m["per_group"].get(g, {}).get("accuracy", np.nan) for g in DEVICE_GROUPS]
    values.append(m.get("macro_accuracy", np.nan))  # class-wise mean; absent from runs written before it
    return 100 * np.array(values, dtype=float)


def run_metrics(results, which):
    """(metrics, DCASE size in bytes or None) of a run: for a compressed run, those of the stored
    int8 + fp16 checkpoint (compressed.pt for "last", compressed_best.pt for "best")."""
    packed = results.get("compressed", {}).get("compressed.pt" if which == "last" else "compressed_best.pt")
    if packed:
        return packed["metrics"], packed["size"]["total_bytes"]
    return results[which], None


def config_digest(config):
    """Short hash of a run's recipe (runtime settings left out) without its seed: runs with equal digests
    are seeds of one experiment; a name reused with other settings (e.g. --set overrides) gets its own row."""
    import hashlib

    recipe = recipe_of(config)
    recipe["train"].pop("seed", None)
    blob = json.dumps(recipe, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:6]


def data_identity(run_dir):
    """(dataset fingerprint, training subset, device) a run trained on, from its data.json ((None, None, None)
    for runs that have none): with the recipe, what makes runs seeds of one experiment."""
    path = RunDir(run_dir) / "data.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as e:
        raise TinyascError(f"{path}: unreadable ({e})") from None
    return data.get("sha256"), data.get("train_split"), data.get("device")


def aggregate(run_dirs, which="best", repeated=None):
    """{experiment name: {"mean", "std" (per column, %), "seeds", "log_loss", "size_kb"}} over runs. Runs
    are seeds of one row when their recipe, dataset fingerprint, training subset and device are equal;
    a seed repeated within a row counts once (the first run; the others are appended to `repeated`)."""
    groups, seeds = defaultdict(list), defaultdict(set)
    for run_dir in run_dirs:
        config, results = load_run(run_dir)
        m, size = run_metrics(results, which)
        chosen_on = results.get("selected_on", {}).get("split", "evaluate")  # runs before validation splits
        fingerprint, subset, device = data_identity(run_dir)
        digest = config_digest({**config, "data": [fingerprint, subset, device]}) if fingerprint else config_digest(config)
        label = config["name"] + (f" on {subset}" if subset else "") + (f" (device {device})" if device else "")
        seed = config.get("train", {}).get("seed")
        if seed is not None and seed in seeds[(label, digest)]:
            if repeated is not None:
                repeated.append(f"{run_dir} repeats seed {seed} of {label}")
            continue
        seeds[(label, digest)].add(seed)
        groups[(label, digest)].append((columns_of(m), m["log_loss"], config, size, chosen_on))
    names = [name for name, _ in groups]
    groups = {(name if names.count(name) == 1 else f"{name} [{digest}]"): rows for (name, digest), rows in groups.items()}
    table = {}
    for name, rows in groups.items():
        values = np.stack([r[0] for r in rows])
        losses = np.array([r[1] for r in rows])
        with warnings.catch_warnings():  # a device absent from every run is NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
        table[name] = {"mean": mean.tolist(), "std": std.tolist(),
                       "seeds": len(rows), "log_loss": [float(losses.mean()), float(losses.std())],
                       "model": rows[0][2]["model"], "chosen_on": "/".join(sorted({r[4] for r in rows})),
                       "size_kb": None if rows[0][3] is None else float(np.mean([r[3] for r in rows])) / 1024}
    return table


def format_aggregate(table, title, chosen_on=False):
    """Markdown Table 3: mean per device, Overall as mean ± std (population std over seeds); with
    `chosen_on`, the split each row's epoch was chosen on."""
    sized = any(row.get("size_kb") for row in table.values())
    header = (["Method", "seeds"] + (["epoch chosen on"] if chosen_on else []) + COLUMNS + ["log loss"]
              + (["size (KB)"] if sized else []))
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.items():
        cells = [name, str(row["seeds"])] + ([row.get("chosen_on", "evaluate")] if chosen_on else [])
        for i, col in enumerate(COLUMNS):
            mean, std = row["mean"][i], row["std"][i]
            cells.append("–" if np.isnan(mean) else (f"{mean:.1f} ± {std:.1f}" if col == "Overall" else f"{mean:.1f}"))
        cells.append(f"{row['log_loss'][0]:.3f}")
        if sized:
            cells.append("–" if row.get("size_kb") is None else f"{row['size_kb']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(run_dirs):
    """Markdown with both Table 3 variants, and the data behind them. A run given twice (or inside two
    given folders) counts once."""
    run_dirs = list(dict.fromkeys(Path(r).resolve() for r in run_dirs))
    repeated = []
    data = {which: aggregate(run_dirs, which, repeated if which == "last" else None) for which in ("last", "best")}
    data["duplicates"] = repeated
    text = (format_aggregate(data["last"], "Last epoch — accuracy (%) on the evaluate split, mean over seeds")
            + "\n\n" + format_aggregate(data["best"], "Best epoch — accuracy (%) on the evaluate split at the epoch "
                                        "chosen on the split named per row: validation (held-out training "
                                        "locations) or evaluate (the paper's 'early stopping'; optimistic)",
                                        chosen_on=True))
    if repeated:
        text += "\n\n" + "\n".join(f"(counted once: {line})" for line in repeated)
    return text, data


def plot_confusion(m, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.array(m["confusion"], dtype=float)
    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    classes = m["classes"]
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if confusion[i, j]:
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised colour, counts)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_devices(named_metrics, path, title="accuracy per device"):
    """Grouped bars: accuracy (%) per device for each (name, metrics) pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(named_metrics))
    x = np.arange(len(DEVICES) + 1)
    for k, (name, m) in enumerate(named_metrics):
        ax.bar(x + (k - (len(named_metrics) - 1) / 2) * width, columns_of(m)[: len(x)], width, label=name)
    ax.set_xticks(x, [d.upper() for d in DEVICES] + ["Overall"])
    ax.axvspan(5.5, 8.5, color="grey", alpha=0.12, label="unseen devices")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

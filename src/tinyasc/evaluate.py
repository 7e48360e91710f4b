"""Evaluation (paper Table 3): accuracy, DCASE multi-class log loss, per-device / per-class tables, the
device groups real (A, B, C) / seen simulated (S1–S3) / unseen (S4–S6), confusion matrix, ensembles;
and the one function that turns cached features into logits (training, `evaluate`, compression and
Figure 1 all use it)."""
import numpy as np
import torch

from tinyasc.dcase import DEVICE_GROUPS, DEVICES, softmax  # noqa: F401 (softmax: re-exported)

# Clips per forward pass in evaluation: larger batches are slower per clip on CPU (activations fall
# out of cache: c = 80, 10 s clips, 181 ms per clip at 16 vs 357 ms at 128; benchmarks/train_speed_micro.py)
EVAL_BATCH = 32


@torch.no_grad()
def batch_logits(model, features, indices=None, batch_size=EVAL_BATCH, device="cpu", channels_last=False,
                 progress=False):
    """Logits (len(indices), classes) of eval-mode `model` for rows `indices` (default: all) of a
    (N, F, T) feature array (a memory map is read batch by batch), in the order of `indices`."""
    from tqdm.auto import tqdm

    model.eval()
    indices = np.arange(len(features)) if indices is None else np.asarray(indices)
    out = []
    for start in tqdm(range(0, len(indices), batch_size), desc="evaluate", unit="batch", leave=False,
                      disable=not progress, dynamic_ncols=True):
        x = torch.from_numpy(np.asarray(features[indices[start:start + batch_size]], dtype=np.float32)).unsqueeze(1)
        x = x.to(device, memory_format=torch.channels_last) if channels_last else x.to(device)
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def log_loss(probs, labels):
    """DCASE multi-class log loss: mean over clips of −log p(true class), with probabilities clipped to
    [eps, 1 − eps] (eps = float64 machine epsilon) and rows renormalised, as sklearn.metrics.log_loss."""
    p = np.clip(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)
    p /= p.sum(axis=1, keepdims=True)
    return float(-np.log(p[np.arange(len(labels)), labels]).mean())


def _subset(probs, labels, mask):
    n = int(mask.sum())
    if n == 0:
        return None
    return {"accuracy": float((probs[mask].argmax(1) == labels[mask]).mean()),
            "log_loss": log_loss(probs[mask], labels[mask]), "clips": n}


def metrics(probs: np.ndarray, labels: np.ndarray, devices: np.ndarray, classes: "list | tuple") -> dict:
    """All Table-3 figures of one prediction: overall accuracy and log loss, per device, per device group
    (pooled over the group's clips), per class, the class-wise mean ("macro") accuracy that DCASE ranks
    by since 2022, and the confusion matrix."""
    probs, labels, devices = np.asarray(probs), np.asarray(labels), np.asarray(devices)
    result = _subset(probs, labels, np.ones(len(labels), bool)) or {"accuracy": float("nan"), "clips": 0}
    result["per_device"] = {d: s for d in DEVICES if (s := _subset(probs, labels, devices == d))}
    result["per_group"] = {g: s for g, ds in DEVICE_GROUPS.items() if (s := _subset(probs, labels, np.isin(devices, ds)))}
    result["per_class"] = {c: s for i, c in enumerate(classes) if (s := _subset(probs, labels, labels == i))}
    per_class = [s["accuracy"] for s in result["per_class"].values()]
    result["macro_accuracy"] = float(np.mean(per_class)) if per_class else float("nan")
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, probs.argmax(1)), 1)
    result["confusion"] = confusion.tolist()
    result["classes"] = list(classes)
    return result


def ensemble(prob_list):
    """Average the class probabilities of several models (the paper's two-model submission)."""
    return np.mean(np.stack(prob_list), axis=0)


def _cell(d, key="accuracy"):
    return f"{100 * d[key]:.1f}" if d else "–"


def format_table(rows, title=None):
    """Markdown table in the Table 3 layout: one row per (name, metrics) pair, columns A … S6, Overall,
    the groups real / seen / unseen (accuracy pooled over the group's clips), log loss and macro
    (class-wise mean) accuracy."""
    header = ["Method"] + [d.upper() for d in DEVICES] + ["Overall", "real", "seen", "unseen", "log loss", "macro"]
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |",
                                                      "|" + "---|" * len(header)]
    for name, m in rows:
        cells = [name] + [_cell(m["per_device"].get(d)) for d in DEVICES] + [_cell(m)]
        cells += [_cell(m["per_group"].get(g)) for g in DEVICE_GROUPS] + [f"{m.get('log_loss', float('nan')):.3f}"]
        cells += [_cell(m, "macro_accuracy") if "macro_accuracy" in m else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

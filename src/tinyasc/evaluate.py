"""Evaluation (paper Table 3): accuracy, DCASE multi-class log loss, per-device / per-class tables, the
device groups real (A, B, C) / seen simulated (S1–S3) / unseen (S4–S6), confusion matrix, ensembles."""
import numpy as np
import torch

DEVICE_ORDER = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
DEVICE_GROUPS = {"real": ("a", "b", "c"), "seen": ("s1", "s2", "s3"), "unseen": ("s4", "s5", "s6")}


@torch.no_grad()
def predict(model, batches, device="cpu"):
    """Logits (N, classes) of `model` over an iterable of feature batches (B, 1, F, T)."""
    model.eval()
    out = [model(x.to(device)).float().cpu() for x in batches]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


def metrics(probs, labels, devices, classes):
    """All Table-3 figures of one prediction: overall, per device, per group, per class, confusion."""
    probs, labels, devices = np.asarray(probs), np.asarray(labels), np.asarray(devices)
    result = _subset(probs, labels, np.ones(len(labels), bool)) or {"accuracy": float("nan"), "clips": 0}
    result["per_device"] = {d: s for d in DEVICE_ORDER if (s := _subset(probs, labels, devices == d))}
    result["per_group"] = {g: s for g, ds in DEVICE_GROUPS.items() if (s := _subset(probs, labels, np.isin(devices, ds)))}
    result["per_class"] = {c: s for i, c in enumerate(classes) if (s := _subset(probs, labels, labels == i))}
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
    then the group means real / seen / unseen."""
    header = ["Method"] + [d.upper() for d in DEVICE_ORDER] + ["Overall", "real", "seen", "unseen", "log loss"]
    lines = ([f"**{title}**", ""] if title else []) + ["| " + " | ".join(header) + " |",
                                                      "|" + "---|" * len(header)]
    for name, m in rows:
        cells = [name] + [_cell(m["per_device"].get(d)) for d in DEVICE_ORDER] + [_cell(m)]
        cells += [_cell(m["per_group"].get(g)) for g in DEVICE_GROUPS] + [f"{m.get('log_loss', float('nan')):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Knowledge distillation from a precomputed teacher-logits file.

File format (.npz, written by `write_logits`, read by `load_teacher_logits`):
  filenames   (N,) str      — the dataset's relative file names (the key; rows are never matched by
                              position, so a reordered or filtered file cannot silently misalign)
  logits      (N, K) float32 — teacher logits (pre-softmax), finite
  classes     (K,) str      — class names in the column order of `logits`
  temperature ()  float     — optional: the temperature the producer suggests (informational)
  source      ()  str       — optional: free text naming the teacher
Extra rows (files not in the training list) are allowed and ignored.

Augmentation consistency: with mixup the student sees λ·x + (1−λ)·x[perm]; its KD target is the
λ-mix of the teacher's *probabilities* (softmax(z/τ)), matching how the hard labels are mixed
(mixup_loss mixes the two cross-entropies), so the target is the expected teacher output under the
label mixture; mixing logits instead would give a sharper, geometric-mean target that is not
what mixup's label interpolation means. Time roll (±1.5 s with wrap-around) is assumed to be
label-preserving for scenes, so the teacher logits of the unrolled clip are used unchanged.
"""
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as nnf

from tinyasc.errors import TinyascError


def write_logits(path, filenames, logits, classes, temperature=None, source=None):
    """Write teacher logits keyed by filename to `path` (.npz)."""
    logits = np.asarray(logits, dtype=np.float32)
    filenames = np.asarray([str(f) for f in filenames])
    classes = np.asarray([str(c) for c in classes])
    if logits.ndim != 2 or logits.shape != (len(filenames), len(classes)):
        raise TinyascError(f"{path}: logits shape {logits.shape} does not match "
                           f"{len(filenames)} files × {len(classes)} classes")
    if len(set(filenames.tolist())) != len(filenames):
        raise TinyascError(f"{path}: duplicate file names")
    extra = {}
    if temperature is not None:
        extra["temperature"] = np.float32(temperature)
    if source is not None:
        extra["source"] = np.asarray(str(source))
    with open(path, "wb") as f:  # open ourselves so numpy does not append .npz to the name
        np.savez(f, filenames=filenames, logits=logits, classes=classes, **extra)


def load_teacher_logits(path, filenames, classes):
    """Teacher logits for `filenames` (in that order) with columns in `classes` order → float32
    tensor (len(filenames), len(classes)). One TinyascError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise TinyascError(f"{path}: no such teacher-logits file")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(s) for s in z["filenames"]]
            logits = np.asarray(z["logits"], dtype=np.float32)
            file_classes = [str(s) for s in z["classes"]]
    except KeyError as e:
        raise TinyascError(f"{path}: teacher-logits file lacks the array {e}") from None
    except Exception as e:
        raise TinyascError(f"{path}: not a readable .npz teacher-logits file "
                           f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if logits.ndim != 2 or logits.shape != (len(names), len(file_classes)):
        raise TinyascError(f"{path}: logits shape {logits.shape} does not match "
                           f"{len(names)} filenames × {len(file_classes)} classes")
    if len(set(names)) != len(names):
        raise TinyascError(f"{path}: duplicate file names in 'filenames'")
    classes = [str(c) for c in classes]
    if set(file_classes) != set(classes) or len(file_classes) != len(classes):
        raise TinyascError(f"{path}: classes {file_classes} differ from the dataset's {classes}")
    col = [file_classes.index(c) for c in classes]  # reorder columns if the order differs
    row_of = {n: i for i, n in enumerate(names)}
    missing = [str(f) for f in filenames if str(f) not in row_of]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise TinyascError(f"{path}: {len(missing)} training file(s) have no teacher logits: {shown}")
    out = logits[[row_of[str(f)] for f in filenames]][:, col]
    if not np.isfinite(out).all():
        bad = [str(f) for f, ok in zip(filenames, np.isfinite(out).all(axis=1)) if not ok]
        raise TinyascError(f"{path}: non-finite teacher logits for {', '.join(bad[:5])}")
    return torch.from_numpy(np.ascontiguousarray(out))


def kd_targets(teacher_logits, temperature, lam=None, perm=None):
    """Soft targets softmax(z/τ) (B, K); with mixup's (λ (B,), perm (B,)) the probabilities are
    mixed with the same λ and partner as the student's inputs: λ·p + (1−λ)·p[perm]."""
    p = nnf.softmax(teacher_logits.float() / temperature, dim=-1)
    if lam is not None:
        lam = lam.to(p.dtype).view(-1, 1)
        p = lam * p + (1 - lam) * p[perm]
    return p


def kd_loss(student_logits, targets, temperature):
    """τ²·KL(targets ‖ softmax(student/τ)), batch mean (Hinton et al.'s scaling)."""
    logq = nnf.log_softmax(student_logits.float() / temperature, dim=-1)
    return nnf.kl_div(logq, targets, reduction="batchmean") * temperature ** 2

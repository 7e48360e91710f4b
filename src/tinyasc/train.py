"""Training (paper §3.1): SGD with momentum, linear warm-up then cosine decay to zero, mixup, time roll
and SpecAugment, in one explicit loop over batches of cached log-mel features. DDP-aware (torchrun),
deterministic on CPU for a seed, and resumable to the same final weights."""
import dataclasses
import errno
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from tinyasc.augment import (SPEC_FILLS, bin_means, freq_mixstyle, mixup_loss, mixup_with_partner, seconds_to_frames,
                             spec_augment, time_roll)
from tinyasc.checkpoint import read_checkpoint, save_checkpoint
from tinyasc.config import SEED_MAX, check_fields, rule
from tinyasc.errors import TinyascError
from tinyasc.evaluate import EVAL_BATCH, batch_logits, metrics, softmax
from tinyasc.models.norm import GlobalFreqNorm
from tinyasc.paths import atomic_write_text, write_json
from tinyasc.rundir import RunDir
from tinyasc.system import check_amp


@dataclass(frozen=True)
class TrainConfig:
    """The recipe: everything that identifies an experiment's training (a run's seed included). Each field's
    rule (type, range, choices) sits beside it; tinyasc.config.check_fields walks them."""
    # optimiser and schedule (§3.1): SGD, momentum 0.9, weight decay 1e-3, batch 64, lr 0 → 0.06 over
    # 5 warm-up epochs, then cosine annealing to 0; 100 epochs
    epochs: int = rule(100, ">= 1")
    batch_size: int = rule(64, ">= 2")  # global batch; each of N DDP ranks takes batch_size / N
    lr: float = rule(0.06, "> 0")
    warmup_epochs: float = rule(5.0, ">= 0")
    momentum: float = rule(0.9, "[0, 1)")
    weight_decay: float = rule(1e-3, ">= 0")
    # augmentation (§3.1): mixup α=0.3, time roll ±1.5 s with wrap-around, SpecAugment (2 frequency
    # masks ≤ 40 bins, 2 time masks ≤ 80 frames) only for the large model (the c = 80 configs say "on");
    # 0 disables mixup / roll
    mixup_alpha: float = rule(0.3, ">= 0")
    roll_seconds: float = rule(1.5, ">= 0")
    spec_augment: str = rule("off", choices=("on", "off"))
    # widths that follow the clip length (DCASE 2022+ uses 1 s clips): each time mask spans up to this
    # fraction of the clip's frames (80 of 334 for a 10 s clip, as §3.1; 8 of 34 for 1 s); frequency
    # masks up to spec_freq_width bins; the roll never exceeds the clip's own length
    spec_time_width: float = rule(0.24, "(0, 1]")
    spec_freq_width: int = rule(40, ">= 0")
    spec_time_masks: int = rule(2, ">= 0")
    spec_freq_masks: int = rule(2, ">= 0")
    # what masked bins take (augment.spec_augment): "bin_mean", the clip's own per-bin mean, so ResNorm's
    # frequency-wise instance norm sees no trace of the clip's spectrum at masked frames (chosen on the
    # validation split, benchmarks/results/fill_study_c10.json); "bin_noise", "dataset_mean", and
    # "clip_mean" (the original fill, kept so that runs made with it reproduce)
    spec_fill: str = rule("bin_mean", choices=SPEC_FILLS)
    # device generalisation beyond ResNorm (DCASE 2022+ systems; all off by default, as the paper):
    # Freq-MixStyle mixes per-frequency mean/std between examples with probability p per batch
    # (the published baselines: p = 0.4, α = 0.3); device responses add a random response's mel-band
    # log-gain (tinyasc.device_response, a folder of impulse-response WAVs) to each clip with probability p
    freq_mixstyle_p: float = rule(0.0, "[0, 1]")
    freq_mixstyle_alpha: float = rule(0.3, "> 0")
    dir_folder: str = rule("", path=True)
    dir_p: float = rule(0.6, "[0, 1]")
    # distillation from precomputed teacher logits (a tinyasc.distill .npz keyed by file name):
    # loss = (1 − w)·mixup CE + w·T²·KL(mixed teacher ‖ student), teacher probabilities mixed with the same λ
    teacher_logits: str = rule("", path=True)
    kd_weight: float = rule(0.5, "[0, 1]")
    kd_temperature: float = rule(2.0, "> 0")
    # model selection: best.pt is the epoch with the highest `select_on` — "accuracy" (micro, the
    # paper's) or "macro_accuracy" (class-wise mean, DCASE's ranking metric since 2022) — on `select_split`:
    # "validation", a location-disjoint part of the training split (whole recording locations, every
    # device of their segments, about `validation` of each scene's clips, drawn from `validation_seed`),
    # or "evaluate", the paper's protocol (optimistic: the reported split also picks the epoch).
    # validation = 0 trains on the whole training split and needs select_split = "evaluate".
    select_on: str = rule("accuracy", choices=("accuracy", "macro_accuracy"))
    select_split: str = rule("validation", choices=("validation", "evaluate"))
    validation: float = rule(0.1, "[0, 1)")
    validation_seed: int = rule(0, f"[0, {SEED_MAX}]")
    seed: int = rule(0, f"[0, {SEED_MAX}]")

    def __post_init__(self):
        check_fields(self, "train", lambda: [
            (self.validation > 0 or self.select_split == "evaluate",
             "select_split = 'validation' needs validation > 0 (or select_split = 'evaluate', the paper's protocol)"),
        ])


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run executes, not what it computes: may differ between a run and its --resume, and is not
    part of an experiment's identity in reports. (Set with `--set runtime.FIELD=…`; `train.FIELD`
    still works for these, as in configs written before the split.)"""
    device: str = rule("auto", choices=("auto", "cpu", "cuda"))  # "auto": CUDA if available
    amp: str = rule("off", choices=("off", "bf16", "fp16"))  # mixed precision; bf16 also CPU autocast, fp16 CUDA only
    channels_last: bool = False  # NHWC: neutral at c = 10, slower at c = 80 once the allocator is fixed (issue 15)
    # feature cache storage ("float16" halves disk/memory for real TAU)
    cache_dtype: str = rule("float32", choices=("float32", "float16"))
    extract_workers: int = rule(2, ">= 0")  # processes for feature extraction
    threads: int = rule(0, ">= 0")  # torch intra-op threads, set by the caller (the CLI); 0 keeps torch's default

    def __post_init__(self):
        check_fields(self, "runtime")


RUNTIME_FIELDS = tuple(RuntimeConfig.__dataclass_fields__)


class Rows:
    """Rows `index` of a (N, F, T) array without copying it: fancy indexing maps to the parent."""

    def __init__(self, array, index):
        self.array, self.index = array, np.asarray(index)
        self.shape = (len(self.index), *array.shape[1:])

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return self.array[self.index[i]]


@dataclass(frozen=True)
class Split:
    """One split's cached features and labels, as `fit` consumes them."""
    features: object  # (N, F, T) float array or memory map
    labels: np.ndarray  # (N,) class indices into `classes`
    devices: np.ndarray  # (N,) device names ("a", …, "s6")
    classes: tuple  # class names, in label order
    clip_seconds: float  # every clip's length (features are padded / cropped to it)
    filenames: tuple = ()  # dataset-relative file names (the keys of a teacher-logits file)
    locations: tuple = ()  # recording location of each clip ("lisbon-1000"), "" where unknown

    def __len__(self):
        return len(self.labels)

    def subset(self, index):
        """The clips `index` (ascending for fast memory-map reads) as a Split, features not copied."""
        index = np.asarray(index, dtype=np.int64)
        pick = (lambda names: tuple(names[i] for i in index) if names else ())
        return dataclasses.replace(self, features=Rows(self.features, index), labels=self.labels[index],
                                   devices=self.devices[index], filenames=pick(self.filenames),
                                   locations=pick(self.locations))


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK), read once."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self):
        return self.rank == 0


def dist_env():
    return DistEnv(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))


def lr_at(step, steps_per_epoch, cfg):
    """Linear warm-up from 0 to cfg.lr over warmup_epochs, then cosine annealing to 0 at the end."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, progress)))


class Distributed:
    """Collective operations over the ranks of a torchrun launch; no-ops in a single process."""

    def __init__(self, device, env=None):
        env = env or dist_env()
        self.rank, self.world, self.main = env.rank, env.world, env.main
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def sum(self, *values):
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return tuple(t.tolist())

    def gather(self, obj):
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def resolve_device(name, local_rank=0):
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TinyascError("runtime.device=cuda but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class FeatureBatches:
    """Batches of cached features (N, F, T) with labels: a fixed order per epoch, sharded across ranks,
    the next batch read from the memory map by a background thread while the model computes."""

    def __init__(self, features, labels, batch_size, drop_last):
        self.features, self.labels = features, torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.wait_seconds = 0.0  # time the consumer spent blocked on data in the last pass

    def _read(self, index):
        index = np.sort(index)  # ascending reads from the memory map
        x = torch.from_numpy(np.asarray(self.features[index], dtype=np.float32)).unsqueeze(1)
        return x, self.labels[index], index

    def __call__(self, order):
        """Yield (x (B, 1, F, T), y (B,), index (B,)) over `order` (indices into the array)."""
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        chunks = [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]
        self.wait_seconds = 0.0
        if not chunks:
            return
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._read, chunks[0])
            for k in range(len(chunks)):
                t0 = time.perf_counter()
                batch = pending.result()
                self.wait_seconds += time.perf_counter() - t0
                if k + 1 < len(chunks):
                    pending = pool.submit(self._read, chunks[k + 1])
                yield batch


def shard(order, rank, world):
    """Equal-length shard of `order` for `rank` (all ranks must take the same number of steps)."""
    per_rank = len(order) // world
    return order[rank::world][:per_rank]


def augmentation_sizes(cfg, feature_cfg, clip_seconds):
    """(roll in frames, SpecAugment time-mask width in frames) for clips of `clip_seconds`: ±1.5 s and 80
    frames for the paper's 10 s clips, ±1 s and 8 frames for 1 s clips (never more than the clip)."""
    frames = feature_cfg.num_frames(round(clip_seconds * feature_cfg.sample_rate))
    roll = seconds_to_frames(min(cfg.roll_seconds, clip_seconds), feature_cfg)
    return min(roll, frames), max(1, round(cfg.spec_time_width * frames))


def evaluate_split(model, split, device, ctx, channels_last):
    """Metrics of `model` on every clip of `split`: each rank predicts its share, rank 0's view is
    complete after the gather (every rank gets the same metrics)."""
    index = np.arange(len(split))[ctx.rank::ctx.world]
    logits = batch_logits(model, split.features, index, EVAL_BATCH, device, channels_last)
    parts = ctx.gather((logits.reshape(len(index), -1), index))
    full = np.empty((len(split), parts[0][0].shape[1]), dtype=np.float32)
    for part_logits, part_index in parts:
        full[part_index] = part_logits
    return metrics(softmax(full), split.labels, split.devices, split.classes)


def fit(model: torch.nn.Module, arch: str, train: Split, evaluate: Split, exp, run_dir, *, resume: bool = False,
        validation: Split | None = None, loss_fn=None, after_step=None, on_epoch_end=None, progress: bool = True,
        extra_checkpoint: dict | None = None) -> dict:
    """Train `model` with the recipe exp.train on `train`, evaluating on `validation` (when given) and
    `evaluate` after every epoch; best.pt is chosen on exp.train.select_split.

    Writes the run folder's metrics.jsonl (one JSON line per epoch), last.pt, best.pt and results.json
    (see tinyasc.rundir). `loss_fn(logits, x, y_a, y_b, lam)` replaces the mixup cross-entropy
    (knowledge distillation); `after_step(model)` runs after each optimiser step (pruning masks);
    `on_epoch_end(epoch)` after each epoch's checkpoint. The caller seeds the model's initialisation
    and sets torch's thread count. Returns the results dict."""
    # ---- set-up --------------------------------------------------------------------------------
    cfg, runtime, run = exp.train, exp.runtime, RunDir(run_dir)
    if cfg.select_split == "validation" and (validation is None or len(validation) == 0):
        raise TinyascError("train.select_split = 'validation' but there is no validation split "
                           "(set train.validation > 0, or train.select_split = 'evaluate' for the paper's protocol)")
    env = dist_env()
    device = resolve_device(runtime.device, env.local_rank)
    check_amp(runtime.amp, device.type)
    ctx = Distributed(device, env)
    # NHWC pays off only where the convolution kernels prefer it (measured: not on this CPU once the
    # allocator is fixed, issue 15), so it is a runtime switch, off by default
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    roll_frames, time_width = augmentation_sizes(cfg, exp.features, train.clip_seconds)
    # the recipe's batch is global: each of N ranks takes batch / N clips, so N ranks take the same
    # optimiser steps as one process would (up to the gradient all-reduce)
    per_rank_batch = max(2, cfg.batch_size // ctx.world)
    steps_per_epoch = (len(train) // ctx.world) // per_rank_batch
    if steps_per_epoch == 0:
        raise TinyascError(f"train.batch_size={cfg.batch_size} is larger than the {len(train)} training clips "
                           f"(per rank {per_rank_batch}); no training step would run")
    batches = FeatureBatches(train.features, train.labels, per_rank_batch, drop_last=True)
    responses = teacher = None
    if cfg.dir_folder:  # (R, F) mel log-gains of the user's device responses
        from tinyasc.device_response import device_response, load_impulse_responses, response_table

        responses = response_table(load_impulse_responses(cfg.dir_folder, exp.features), exp.features).to(device)
    if cfg.teacher_logits:  # (N, K) teacher logits in the training split's order, checked by file name
        from tinyasc.distill import kd_loss, kd_targets, load_teacher_logits

        teacher = load_teacher_logits(cfg.teacher_logits, train.filenames, train.classes)
    fill_mean = None
    if cfg.spec_augment == "on" and cfg.spec_fill == "dataset_mean":  # (F,) per-bin mean of the training split
        fill_mean = bin_means(train.features).to(device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16 if device.type == "cuda" else None}.get(runtime.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start_epoch, best, history, result = 0, {"accuracy": -1.0, "epoch": 0}, [], None
    if resume:
        state = read_checkpoint(run.last)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_state"])
        start_epoch, best, history, result = state["epoch"], state["best"], state["history"], state.get("metrics")
        if ctx.main:  # one line per epoch of last.pt, whatever an interrupted write left behind
            atomic_write_text(run.metrics, "".join(json.dumps(record) + "\n" for record in history))
    else:
        torch.manual_seed(cfg.seed + 1)  # the dropout stream, apart from the caller's initialisation stream
        fit_global_freq_norm(model, batches, len(train), device)
    net = model
    if ctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(start_epoch, cfg.epochs):
        # ---- one epoch ---------------------------------------------------------------------------
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)  # shuffle + augmentation stream
        order = shard(torch.randperm(len(train), generator=g).numpy(), ctx.rank, ctx.world)
        model.train()
        loss_sum = correct = seen = 0.0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (progress and ctx.main), dynamic_ncols=True)
        for step, (x, y, index) in enumerate(batches(order)):
            for group in opt.param_groups:  # the schedule is per step, not per epoch
                group["lr"] = lr_at(epoch * steps_per_epoch + step, steps_per_epoch, cfg)
            x, y = x.to(device), y.to(device)
            x = time_roll(x, roll_frames, g)  # assumed label-preserving (also for teacher logits)
            if responses is not None:  # a recording device's colouring, before the clips are mixed
                x = device_response(x, responses, cfg.dir_p, generator=g)
            if cfg.spec_augment == "on":
                x = spec_augment(x, g, freq_masks=cfg.spec_freq_masks, freq_width=cfg.spec_freq_width,
                                 time_masks=cfg.spec_time_masks, time_width=time_width, fill=cfg.spec_fill,
                                 dataset_mean=fill_mean)
            if cfg.mixup_alpha > 0:
                x, lam, perm = mixup_with_partner(x, cfg.mixup_alpha, generator=g)
            else:
                lam, perm = torch.ones(len(y), device=device), torch.arange(len(y), device=device)
            y_a, y_b = y, y[perm]
            if cfg.freq_mixstyle_p > 0:
                x = freq_mixstyle(x, cfg.freq_mixstyle_p, cfg.freq_mixstyle_alpha, generator=g)
            x = x.contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = net(x)
                loss = loss_fn(logits, x, y_a, y_b, lam) if loss_fn else mixup_loss(logits, y_a, y_b, lam)
                if teacher is not None:
                    targets = kd_targets(teacher[torch.as_tensor(index)].to(device), cfg.kd_temperature, lam, perm)
                    loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * kd_loss(logits.float(), targets, cfg.kd_temperature)
            if not torch.isfinite(loss):  # stop before a NaN reaches the weights; last.pt stays the last good epoch
                raise TinyascError(f"training diverged at epoch {epoch + 1}, step {step + 1}: loss is {loss.item()}"
                                   f"{_kept(run, epoch)}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if after_step:
                after_step(model)
            with torch.no_grad():  # a mixed clip counts as λ·[pred = y_a] + (1 − λ)·[pred = y_b] correct
                pred = logits.argmax(1)
                correct += float((lam * (pred == y_a) + (1 - lam) * (pred == y_b)).sum())
            loss_sum += loss.item() * len(y)
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        train_time = time.perf_counter() - t0
        loss_sum, correct, seen = ctx.sum(loss_sum, correct, seen)

        # ---- evaluation ----------------------------------------------------------------------------
        result = evaluate_split(model, evaluate, device, ctx, runtime.channels_last)
        val = evaluate_split(model, validation, device, ctx, runtime.channels_last) if validation else None
        record = {"epoch": epoch + 1, "lr": lr_at((epoch + 1) * steps_per_epoch - 1, steps_per_epoch, cfg),
                  "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                  "eval_accuracy": result["accuracy"], "eval_macro_accuracy": result["macro_accuracy"],
                  "eval_log_loss": result["log_loss"],
                  "eval_per_device": {d: m["accuracy"] for d, m in result["per_device"].items()},
                  **({"val_accuracy": val["accuracy"], "val_macro_accuracy": val["macro_accuracy"],
                      "val_log_loss": val["log_loss"]} if val else {}),
                  "train_seconds": train_time, "epoch_seconds": time.perf_counter() - t0,
                  "data_wait_fraction": batches.wait_seconds / max(train_time, 1e-9)}
        history.append(record)
        # "best" = highest train.select_on on train.select_split: the held-out validation locations, or
        # the evaluate split (the paper's early-stopping figure, optimistic: it also reports that split)
        chosen = val if cfg.select_split == "validation" else result
        improved = chosen[cfg.select_on] > best.get("value", best["accuracy"])
        if improved:
            best = {"accuracy": result["accuracy"], "epoch": epoch + 1, "metric": cfg.select_on,
                    "split": cfg.select_split, "value": chosen[cfg.select_on]}

        # ---- checkpoint ----------------------------------------------------------------------------
        bad = non_finite_tensors(model)  # a step can overflow the weights while its loss was still finite
        if bad:
            raise TinyascError(f"training diverged in epoch {epoch + 1}: non-finite weights ({', '.join(bad[:3])})"
                               f"{_kept(run, epoch)}")
        if ctx.main:
            common = dict(experiment=exp.resolved(), epoch=epoch + 1, history=history, best=best,
                          metrics=result, validation_metrics=val, **(extra_checkpoint or {}))
            # best.pt before last.pt: a write that fails between them repeats this epoch on --resume, which
            # rewrites the same best.pt; metrics.jsonl follows last.pt and is rebuilt from it on --resume
            try:
                if improved:
                    save_checkpoint(run.best, model, arch, exp.features, list(train.classes), **common)
                save_checkpoint(run.last, model, arch, exp.features, list(train.classes), optimizer=opt.state_dict(),
                                rng_state=torch.get_rng_state(), **common)
                with open(run.metrics, "a") as f:
                    f.write(json.dumps(record) + "\n")
            except (OSError, TinyascError) as e:  # paths.OutputError: disk full, read-only
                full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
                reason = str(e) if isinstance(e, TinyascError) else \
                    f"cannot write {run.metrics} ({'disk full' if full else e.strerror or e})"
                raise TinyascError(f"{reason}; the run stays resumable: free space, then rerun with --resume"
                                   ) from None
            if progress:
                devs = " ".join(f"{d.upper()} {100 * a:.0f}" for d, a in record["eval_per_device"].items())
                held = f"val {100 * val['accuracy']:.1f}% " if val else ""
                tqdm.write(f"epoch {epoch + 1:3d}/{cfg.epochs} loss {record['train_loss']:.3f} "
                           f"train {100 * record['train_accuracy']:.1f}% {held}eval {100 * result['accuracy']:.1f}% "
                           f"({devs}) {record['epoch_seconds']:.1f}s")
        ctx.barrier()
        if on_epoch_end:
            on_epoch_end(epoch + 1)

    # ---- results (also when --resume finds every epoch done but results.json missing) --------------
    if result is None:
        result = evaluate_split(model, evaluate, device, ctx, runtime.channels_last)
    best_state = read_checkpoint(run.best) if ctx.main else {}
    last_val = history[-1] if history and validation else {}
    results = {"last": result, "last_epoch": cfg.epochs, "best_epoch": best["epoch"],
               "best": best_state.get("metrics"),
               # the protocol: which split chose best.pt, and what that split held
               "selected_on": {"split": cfg.select_split, "metric": cfg.select_on,
                               "validation_clips": len(validation) if validation else 0,
                               "validation_locations": len(set(validation.locations)) if validation else 0},
               "best_validation": best_state.get("validation_metrics"),
               "train_clips": len(train), "steps": cfg.epochs * steps_per_epoch,
               "last_validation": {k[4:]: v for k, v in last_val.items() if k.startswith("val_")} or None,
               "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in history])) if history else None,
               "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in history])) if history else None}
    if ctx.main:
        write_json(run.results, results)
    ctx.barrier()
    return results


def _kept(run, epoch):
    """What a diverged run leaves: '; RUN/last.pt holds epoch N, the last finite one' (or that none was saved)."""
    if epoch == 0 or not run.last.is_file():
        return "; no epoch finished, so no checkpoint was saved (lower train.lr or train.weight_decay)"
    return f"; {run.last} holds epoch {epoch}, the last finite one (lower train.lr or train.weight_decay)"


def non_finite_tensors(model):
    """Names of the model's parameters and buffers that hold a NaN or an infinity."""
    return [name for name, t in model.state_dict().items()
            if torch.is_floating_point(t) and not bool(torch.isfinite(t).all())]


@torch.no_grad()
def fit_global_freq_norm(model, batches, n, device):
    """Fit any unfitted GlobalFreqNorm on the (unaugmented) training features before training."""
    for m in model.modules():
        if isinstance(m, GlobalFreqNorm) and not bool(m.fitted):
            m.fit(x.to(device) for x, _, _ in batches(np.arange(n)))



"""Training (paper §3.1): SGD with momentum, linear warm-up then cosine decay to zero, mixup, time roll
and SpecAugment, in one explicit loop over batches of cached log-mel features. DDP-aware (torchrun),
deterministic on CPU for a seed, and resumable to the same final weights."""
import dataclasses
import json
import math
import os
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from tinyasc.augment import mixup, mixup_loss, seconds_to_frames, spec_augment, time_roll
from tinyasc.checkpoint import atomic_write, read_checkpoint, save_checkpoint
from tinyasc.data.tau import SCENES
from tinyasc.errors import TinyascError
from tinyasc.evaluate import metrics, softmax
from tinyasc.features import FeatureConfig
from tinyasc.models import config_from_dict, model_config
from tinyasc.models.norm import GlobalFreqNorm


# evaluation batch: per clip, no-grad BC-ResNet on CPU is fastest in small batches (32 clips: 17 vs 33 ms
# per 10 s clip at c = 10 with batches of 128; benchmarks/results/train_speed.txt)
EVAL_BATCH = 32


@dataclass(frozen=True)
class TrainConfig:
    # optimiser and schedule (§3.1): SGD, momentum 0.9, weight decay 1e-3, batch 64, lr 0 → 0.06 over
    # 5 warm-up epochs, then cosine annealing to 0; 100 epochs
    epochs: int = 100
    batch_size: int = 64  # global batch; each of N DDP ranks takes batch_size / N
    lr: float = 0.06
    warmup_epochs: float = 5.0
    momentum: float = 0.9
    weight_decay: float = 1e-3
    # augmentation (§3.1): mixup α=0.3, time roll ±1.5 s with wrap-around, SpecAugment (2 frequency
    # masks ≤ 40 bins, 2 time masks ≤ 80 frames) only for the large model; 0 disables mixup / roll
    mixup_alpha: float = 0.3
    roll_seconds: float = 1.5
    spec_augment: str = "auto"  # "auto": on for c ≥ 80 (BC-ResNet-ASC-8), as the paper; "on"; "off"
    # machinery
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda"
    amp: str = "off"  # mixed precision: "off", "bf16" (CUDA, or CPU autocast), "fp16" (CUDA only)
    channels_last: bool = False  # NHWC: neutral at c = 10, slower at c = 80 once the allocator is fixed (issue 15)
    cache_dtype: str = "float32"  # feature cache storage ("float16" halves disk/memory for real TAU)
    extract_workers: int = 2  # processes for feature extraction
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default (one per core)

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"), (self.batch_size >= 2, "batch_size must be >= 2"),
            (self.lr > 0, "lr must be positive"), (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"), (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.mixup_alpha >= 0, "mixup_alpha must be >= 0"), (self.roll_seconds >= 0, "roll_seconds must be >= 0"),
            (self.spec_augment in ("auto", "on", "off"), "spec_augment must be 'auto', 'on' or 'off'"),
            (self.device in ("auto", "cpu", "cuda"), "device must be 'auto', 'cpu' or 'cuda'"),
            (self.amp in ("off", "bf16", "fp16"), "amp must be 'off', 'bf16' or 'fp16'"),
        ]
        for ok, message in checks:
            if not ok:
                raise TinyascError(f"bad train config: {message}")


@dataclass(frozen=True)
class Experiment:
    """One paper-table row: a model preset with config overrides, a front end and a training recipe."""
    name: str
    model: str
    model_overrides: dict = field(default_factory=dict)
    features: FeatureConfig = FeatureConfig()
    train: TrainConfig = TrainConfig()
    description: str = ""

    def resolved(self):
        """Plain dict with every field resolved (written next to results and into checkpoints)."""
        arch, cfg = model_config(self.model, **self.model_overrides)
        return {"name": self.name, "description": self.description, "model": self.model, "arch": arch,
                "model_config": dataclasses.asdict(cfg), "model_overrides": dict(self.model_overrides),
                "features": self.features.to_dict(), "train": dataclasses.asdict(self.train)}


def parse_override(text):
    """'train.epochs=10' → (("train", "epochs"), 10); values parse as TOML, else as plain strings."""
    if "=" not in text:
        raise TinyascError(f"bad --set {text!r}: expected SECTION.FIELD=VALUE, e.g. train.epochs=10")
    key, value = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        pass  # a bare word such as none or pcen
    return tuple(key.strip().split(".")), value


def read_toml(path):
    """The dict of a TOML file, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise TinyascError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TinyascError(f"{path}: not valid TOML ({e})") from None


def load_experiment(path=None, overrides=(), base=None):
    """Experiment from a TOML file (sections [model] with `preset` + config fields, [features], [train])
    and `--set` overrides. `base` is a dict used when no file is given."""
    data = {"model": {}, "features": {}, "train": {}}
    if path is not None:
        data.update({k: dict(v) if isinstance(v, dict) else v for k, v in read_toml(path).items()})
        data.setdefault("name", Path(path).stem)
    for k, v in (base or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    for keys, value in map(parse_override, overrides):
        if len(keys) == 1 and keys[0] in ("name", "description"):
            data[keys[0]] = value
        elif len(keys) == 2 and keys[0] in ("model", "features", "train"):
            data[keys[0]][keys[1]] = value
        else:
            raise TinyascError(f"bad --set key {'.'.join(keys)!r}: use name, model.FIELD, features.FIELD or train.FIELD")
    # [compress] belongs to `tinyasc compress` (tinyasc.compress.pipeline); training ignores it
    unknown = set(data) - {"name", "description", "model", "features", "train", "compress"}
    if unknown:
        raise TinyascError(f"{path}: unknown config section(s) {sorted(unknown)}")
    model = dict(data["model"])
    preset = model.pop("preset", None)
    if not preset:
        raise TinyascError(f"{path or 'config'}: [model] needs a preset, e.g. preset = \"bc_resnet_asc_1\"")
    exp = Experiment(name=str(data.get("name", preset)), model=preset, model_overrides=model,
                     features=FeatureConfig.from_dict(data["features"]),
                     train=config_from_dict(TrainConfig, data["train"]), description=data.get("description", ""))
    exp.resolved()  # validates the model preset and overrides now, with a clear message
    return exp


def lr_at(step, steps_per_epoch, cfg):
    """Linear warm-up from 0 to cfg.lr over warmup_epochs, then cosine annealing to 0 at the end."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, progress)))


class Distributed:
    """Rank/world of a torchrun launch (WORLD_SIZE, RANK, LOCAL_RANK), or a single process."""

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.main = self.rank == 0

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


def resolve_device(name, dist_local_rank=0):
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TinyascError("train.device=cuda but no CUDA device is available")
        return torch.device("cuda", dist_local_rank)
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


def evaluate_split(model, batches, n, labels, devices, classes, device, ctx, channels_last):
    """Metrics of `model` on all n clips (each rank predicts its shard; predictions are gathered)."""
    index = np.arange(n)[ctx.rank::ctx.world]
    logits, order = [], []
    model.eval()
    with torch.no_grad():
        for x, _, idx in batches(index):
            x = x.to(device, memory_format=torch.channels_last) if channels_last else x.to(device)
            logits.append(model(x).float().cpu().numpy())
            order.append(idx)
    parts = ctx.gather((np.concatenate(logits) if logits else np.zeros((0, len(classes))),
                        np.concatenate(order) if order else np.zeros(0, dtype=int)))
    all_logits = np.concatenate([p[0] for p in parts])
    all_index = np.concatenate([p[1] for p in parts])
    full = np.empty_like(all_logits)
    full[all_index] = all_logits
    return metrics(softmax(full), np.asarray(labels), np.asarray(devices), classes)


def fit(model, arch, train_data, eval_data, exp, run_dir, *, resume=False, loss_fn=None, after_step=None,
        on_epoch_end=None, progress=True, extra_checkpoint=None):
    """Train `model` with exp.train on train_data and evaluate on eval_data after every epoch.

    train_data / eval_data: dicts with "features" (N, F, T) array-like, "labels", "devices".
    Writes RUN_DIR/metrics.jsonl (one JSON line per epoch), last.pt and best.pt (best evaluate
    accuracy: the paper's 'early stopping' figure), and results.json. `loss_fn(logits, x, y_a, y_b,
    lam)` replaces the mixup cross-entropy (knowledge distillation); `after_step(model)` runs after each
    optimiser step (pruning masks); `on_epoch_end(epoch)` after each epoch's checkpoint.
    Returns the results dict."""
    cfg, run_dir = exp.train, Path(run_dir)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = Distributed(device)
    classes = list(SCENES)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    use_spec = cfg.spec_augment == "on" or (cfg.spec_augment == "auto" and getattr(model.cfg, "base_channels", 0) >= 80)
    roll_frames = seconds_to_frames(cfg.roll_seconds, exp.features)
    per_rank_batch = max(2, cfg.batch_size // ctx.world)
    train_batches = FeatureBatches(train_data["features"], train_data["labels"], per_rank_batch, drop_last=True)
    eval_batches = FeatureBatches(eval_data["features"], eval_data["labels"], EVAL_BATCH, drop_last=False)
    n_train = len(train_data["labels"])
    steps_per_epoch = max(1, (n_train // ctx.world) // per_rank_batch)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16 if device.type == "cuda" else None}.get(cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start_epoch, best = 0, {"accuracy": -1.0, "epoch": 0}
    history = []
    if resume:
        state = read_checkpoint(run_dir / "last.pt")
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_state"])
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
    else:
        torch.manual_seed(cfg.seed + 1)  # dropout stream, independent of the initialisation stream
        fit_global_freq_norm(model, train_batches, n_train, device)

    net = model
    if ctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)  # shuffle + augmentation stream
        order = shard(torch.randperm(n_train, generator=g).numpy(), ctx.rank, ctx.world)
        model.train()
        loss_sum = correct = seen = 0.0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (progress and ctx.main), dynamic_ncols=True)
        for step, (x, y, _) in enumerate(train_batches(order)):
            global_step = epoch * steps_per_epoch + step
            for group in opt.param_groups:
                group["lr"] = lr_at(global_step, steps_per_epoch, cfg)
            x, y = x.to(device), y.to(device)
            x = time_roll(x, roll_frames, g)
            if use_spec:
                x = spec_augment(x, g)
            if cfg.mixup_alpha > 0:
                x, y_a, y_b, lam = mixup(x, y, cfg.mixup_alpha, generator=g)
            else:
                y_a, y_b, lam = y, y, torch.ones(len(y), device=device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = net(x)
                loss = loss_fn(logits, x, y_a, y_b, lam) if loss_fn else mixup_loss(logits, y_a, y_b, lam)
            if not torch.isfinite(loss):
                raise TinyascError(f"training diverged at epoch {epoch + 1}, step {step + 1}: loss is {loss.item()}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if after_step:
                after_step(model)
            with torch.no_grad():
                pred = logits.argmax(1)
                correct += float((lam * (pred == y_a) + (1 - lam) * (pred == y_b)).sum())
            loss_sum += loss.item() * len(y)
            seen += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        train_time = time.perf_counter() - t0
        loss_sum, correct, seen = ctx.sum(loss_sum, correct, seen)
        result = evaluate_split(model, eval_batches, len(eval_data["labels"]), eval_data["labels"],
                                eval_data["devices"], classes, device, ctx, cfg.channels_last)
        record = {"epoch": epoch + 1, "lr": lr_at((epoch + 1) * steps_per_epoch - 1, steps_per_epoch, cfg),
                  "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                  "eval_accuracy": result["accuracy"], "eval_log_loss": result["log_loss"],
                  "eval_per_device": {d: m["accuracy"] for d, m in result["per_device"].items()},
                  "train_seconds": train_time, "epoch_seconds": time.perf_counter() - t0,
                  "data_wait_fraction": train_batches.wait_seconds / max(train_time, 1e-9)}
        history.append(record)
        improved = result["accuracy"] > best["accuracy"]
        if improved:
            best = {"accuracy": result["accuracy"], "epoch": epoch + 1}
        if ctx.main:
            common = dict(experiment=exp.resolved(), epoch=epoch + 1, history=history, best=best,
                          metrics=result, **(extra_checkpoint or {}))
            save_checkpoint(run_dir / "last.pt", model, arch, exp.features, classes, optimizer=opt.state_dict(),
                            rng_state=torch.get_rng_state(), **common)
            if improved:
                save_checkpoint(run_dir / "best.pt", model, arch, exp.features, classes, **common)
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if progress:
                devs = " ".join(f"{d.upper()} {100 * a:.0f}" for d, a in record["eval_per_device"].items())
                tqdm.write(f"epoch {epoch + 1:3d}/{cfg.epochs} loss {record['train_loss']:.3f} "
                           f"train {100 * record['train_accuracy']:.1f}% eval {100 * result['accuracy']:.1f}% "
                           f"({devs}) {record['epoch_seconds']:.1f}s")
        ctx.barrier()
        if on_epoch_end:
            on_epoch_end(epoch + 1)

    results = {"last": result, "last_epoch": cfg.epochs, "best_epoch": best["epoch"],
               "best": read_checkpoint(run_dir / "best.pt")["metrics"] if ctx.main else None,
               "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in history])),
               "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in history]))}
    if ctx.main:
        write_json(run_dir / "results.json", results)
    ctx.barrier()
    return results


def write_json(path, obj):
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2)))


@torch.no_grad()
def fit_global_freq_norm(model, batches, n, device):
    """Fit any unfitted GlobalFreqNorm on the (unaugmented) training features before training."""
    for m in model.modules():
        if isinstance(m, GlobalFreqNorm) and not bool(m.fitted):
            m.fit(x.to(device) for x, _, _ in batches(np.arange(n)))



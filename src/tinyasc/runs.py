"""Running experiments on a dataset folder: feature caches, run directories, seeds (sweeps), evaluating
checkpoints and ensembles on a split. Glue between data, train and evaluate."""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from tinyasc.checkpoint import load_checkpoint
from tinyasc.data.cache import FeatureCache
from tinyasc.data.tau import read_split
from tinyasc.errors import TinyascError
from tinyasc.evaluate import ensemble, metrics, predict, softmax
from tinyasc.models import build_model
from tinyasc.train import Distributed, fit, resolve_device, write_json


def load_split_features(root, split, exp, cache_dir=None, num_samples=None, progress=True):
    """{"features": memmap (N, F, T), "labels", "devices", "clips", "num_samples"} of one split."""
    clips = read_split(root, split)
    cache = FeatureCache.build_or_load(root, clips, exp.features, cache_dir=cache_dir, num_samples=num_samples,
                                       dtype=exp.train.cache_dtype, workers=exp.train.extract_workers,
                                       progress=progress)
    return {"features": cache.features, "labels": [c.label for c in clips], "devices": [c.device for c in clips],
            "clips": clips, "num_samples": cache.num_samples}


def check_dataset(data_root):
    """Validate the train and evaluate splits (CSVs, labels, audio present) with one-line errors."""
    for split in ("train", "evaluate"):
        read_split(data_root, split)


def prepare_run_dir(run_dir, exp, resume, force):
    """Create RUN_DIR for a new run, or check it for --resume. Never clobbers a run unless --force."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if resume:
        if not (run_dir / "last.pt").is_file():
            raise TinyascError(f"{run_dir}: nothing to resume (no last.pt)")
        saved = json.loads(config_path.read_text()) if config_path.is_file() else None
        if saved != json.loads(json.dumps(exp.resolved())):
            raise TinyascError(f"{run_dir}: --resume with a different config than the run was started with")
        if (run_dir / "results.json").is_file():
            raise TinyascError(f"{run_dir}: the run is finished (results.json); nothing to resume")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise TinyascError(f"{run_dir}: already holds files; use --resume to continue the run or --force to start over")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "results.json", "last.pt", "best.pt"):
        (run_dir / name).unlink(missing_ok=True)  # --force: a fresh run replaces the old run's files only
    write_json(config_path, exp.resolved())
    return run_dir


def run_training(exp, data_root, run_dir, *, resume=False, force=False, cache_dir=None, progress=True, **fit_kwargs):
    """Prepare the run dir and feature caches, build the model from the seed, and fit. Returns results."""
    ctx_rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    check_dataset(data_root)  # before the run dir exists: a typo in --data must not leave a run behind
    if ctx_rank == 0:
        prepare_run_dir(run_dir, exp, resume, force)
        from tinyasc.system import describe

        write_json(Path(run_dir) / "system.json", describe())  # allocator, threads, torch, CPU: speed context
    if world > 1:
        Distributed(resolve_device(exp.train.device, int(os.environ.get("LOCAL_RANK", "0")))).barrier()
    # rank 0 builds the caches first; the others then find them complete and reuse them
    for turn in ([0, 1] if world > 1 else [0]):
        if (ctx_rank == 0) == (turn == 0):
            train = load_split_features(data_root, "train", exp, cache_dir, progress=progress and ctx_rank == 0)
            evaluate = load_split_features(data_root, "evaluate", exp, cache_dir, num_samples=train["num_samples"],
                                           progress=progress and ctx_rank == 0)
        if world > 1:
            dist.barrier()
    resolved = exp.resolved()
    torch.manual_seed(exp.train.seed)
    model = build_model(resolved["arch"], resolved["model_config"])
    return fit(model, resolved["arch"], train, evaluate, exp, run_dir, resume=resume, progress=progress,
               extra_checkpoint={"clip_samples": train["num_samples"]}, **fit_kwargs)


def sweep(exp, data_root, out_dir, seeds, *, cache_dir=None, progress=True):
    """Train and evaluate `exp` once per seed into OUT/seed<N>; finished seeds are skipped and
    interrupted ones resumed. Returns the run dirs."""
    runs = []
    for seed in seeds:
        run_dir = Path(out_dir) / f"seed{seed}"
        seeded = dataclasses.replace(exp, train=dataclasses.replace(exp.train, seed=seed))
        if (run_dir / "results.json").is_file():
            print(f"{run_dir}: finished, skipped")
        else:
            resume = (run_dir / "last.pt").is_file()
            print(f"{run_dir}: {'resuming' if resume else 'training'} {exp.name} seed {seed}")
            run_training(seeded, data_root, run_dir, resume=resume, cache_dir=cache_dir, progress=progress)
        runs.append(run_dir)
    return runs


def evaluate_checkpoints(paths, data_root, split="evaluate", cache_dir=None, progress=True, batch_size=32):
    """Metrics of one checkpoint, or of the ensemble of several (averaged probabilities), on a split."""
    clips = read_split(data_root, split)
    if any(c.label < 0 for c in clips):
        raise TinyascError(f"{data_root}: the {split} split has no labels; use `tinyasc predict` on it")
    probs, classes = [], None
    for path in paths:
        model, feature_cfg, model_classes, payload = load_checkpoint(path)
        if classes is not None and model_classes != classes:
            raise TinyascError(f"{path}: its classes differ from {paths[0]}'s; cannot ensemble")
        classes = model_classes
        cache = FeatureCache.build_or_load(data_root, clips, feature_cfg, cache_dir=cache_dir,
                                           num_samples=payload.get("clip_samples"), progress=progress)
        batches = (torch.from_numpy(np.array(cache.features[i:i + batch_size], dtype=np.float32)).unsqueeze(1)
                   for i in range(0, len(clips), batch_size))
        probs.append(softmax(predict(model, batches)))
    return metrics(ensemble(probs), np.array([c.label for c in clips]), np.array([c.device for c in clips]), classes)


DEMO_EPOCHS = 20


def demo_experiments(epochs):
    from tinyasc.train import Experiment, TrainConfig

    train = TrainConfig(epochs=epochs, warmup_epochs=min(5.0, epochs / 4))
    return [Experiment("BC-ResNet-ASC-1 (baseline)", "bc_resnet_asc_1", {"resnorm": "none"}, train=train),
            Experiment("BC-ResNet-ASC-1 + ResNorm", "bc_resnet_asc_1", {"resnorm": "all"}, train=train)]


def demo(data_dir="data/synthetic", out_dir="reports/demo", epochs=None, seed=0, progress=True):
    """The main job: make (or reuse) the default synthetic benchmark, train BC-ResNet-ASC-1 without and
    with ResNorm, print them side by side in the Table 3 layout and write a report folder."""
    import time

    from tinyasc.data.synthetic import generate
    from tinyasc.evaluate import format_table
    from tinyasc.report import plot_confusion, plot_devices

    t0 = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if (data_dir / "evaluation_setup" / "fold1_evaluate.csv").is_file():
        print(f"reusing the benchmark in {data_dir}")
    else:
        print(f"generating the default synthetic benchmark in {data_dir}")
        generate(data_dir, seed=0, scale="default", progress=progress)
    rows = []
    for exp in demo_experiments(epochs or DEMO_EPOCHS):
        slug = "resnorm" if exp.model_overrides["resnorm"] == "all" else "baseline"
        run_dir = sweep(exp, data_dir, out_dir / "runs" / slug, [seed], progress=progress)[0]
        rows.append((exp.name, json.loads((run_dir / "results.json").read_text())["last"], slug))
    table = format_table([(name, m) for name, m, _ in rows],
                         title="Accuracy (%) per device on the synthetic benchmark's evaluate split (last epoch)")
    print("\n" + table)
    for name, m, slug in rows:
        plot_confusion(m, out_dir / f"confusion_{slug}.png", title=name)
    plot_devices([(name, m) for name, m, _ in rows], out_dir / "devices.png")
    minutes = (time.perf_counter() - t0) / 60
    (out_dir / "report.md").write_text(
        f"# tinyasc demo\n\nData: `{data_dir}` (synthetic device-shift benchmark, TAU layout). "
        f"Seed {seed}, {epochs or DEMO_EPOCHS} epochs per model. Wall time {minutes:.1f} min.\n\n{table}\n\n"
        "![per-device accuracy](devices.png)\n\n"
        + "".join(f"![{name}](confusion_{slug}.png)\n" for name, _, slug in rows))
    write_json(out_dir / "results.json", {name: m for name, m, _ in rows})
    print(f"\nreport: {out_dir}/report.md (+ results.json, devices.png, confusion_*.png); {minutes:.1f} min")

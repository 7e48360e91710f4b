"""Running experiments on a dataset folder: feature caches, run directories, seeds (sweeps), evaluating
checkpoints and ensembles on a split. Glue between data, train and evaluate."""
import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from tinyasc.checkpoint import apply_storage, deployed_checkpoint, device_models
from tinyasc.data.cache import FeatureCache, typical_length
from tinyasc.data.tau import check_disjoint, read_split, read_train_subset
from tinyasc.dcase import SCENES, device_groups
from tinyasc.errors import TinyascError
from tinyasc.evaluate import batch_logits, ensemble, metrics, softmax
from tinyasc.experiment import check_input_fits, recipe_of
from tinyasc.lock import run_lock
from tinyasc.models import build_model
from tinyasc.paths import check_output, content_sha256, write_json
from tinyasc.rundir import RunDir
from tinyasc.system import check_amp
from tinyasc.train import Distributed, Split, dist_env, fit, resolve_device

DATA_FILE = "data.json"  # the dataset a run was started on (checked by --resume)


def split_clips(root, split, train_split=None):
    """Clips of `split`; for "train", a training subset (e.g. "split25") when `train_split` names one."""
    if split == "train" and train_split:
        return read_train_subset(root, train_split)
    return read_split(root, split)


def load_split(root, split, exp, cache_dir=None, num_samples=None, progress=True, train_split=None):
    """The Split (cached features, labels, devices, classes, clip length) of one dataset split."""
    clips = split_clips(root, split, train_split)
    cache = FeatureCache.build_or_load(root, clips, exp.features, cache_dir=cache_dir, num_samples=num_samples,
                                       dtype=exp.runtime.cache_dtype, workers=exp.runtime.extract_workers,
                                       progress=progress)
    return Split(cache.features, np.array([c.label for c in clips]), np.array([c.device for c in clips]),
                 SCENES, cache.num_samples / exp.features.sample_rate, tuple(c.filename for c in clips),
                 tuple(c.identifier for c in clips))


def recording_groups(split, by="location"):
    """Each clip's recording location ("lisbon-1000", meta.csv's identifier), or with by="segment" (or no
    identifier) its segment: the file name without the device suffix. Either keeps the devices of one
    recording together. (N,) array of names."""
    segments = [Path(name).stem.rsplit("-", 1)[0] for name in split.filenames] or [str(i) for i in range(len(split))]
    if by == "segment" or not split.locations:
        return np.array(segments)
    return np.array([loc or seg for loc, seg in zip(split.locations, segments)])


def hold_out_locations(train, fraction, seed):
    """(train part, validation part) of a training Split: for each scene, whole recording locations drawn
    in a seeded order until about `fraction` of that scene's clips are held out, at least one location
    always staying for training. Where a scene's locations are all much larger than its share (a toy
    dataset), its recordings (segments, every device) are held out instead."""
    if fraction <= 0:
        return train, None
    rng = np.random.default_rng(seed)
    held = np.zeros(len(train), dtype=bool)
    by_location, by_segment = recording_groups(train, "location"), recording_groups(train, "segment")
    for label in np.unique(train.labels):
        in_class = train.labels == label
        target = fraction * in_class.sum()
        for groups in (by_location, by_segment):
            names, counts = np.unique(groups[in_class], return_counts=True)
            total = 0
            for k in rng.permutation(len(names))[:-1]:  # at least one recording stays for training
                if abs(total + counts[k] - target) < abs(total - target):  # closer to the target with it
                    held |= in_class & (groups == names[k])
                    total += counts[k]
            if total:
                break
    if not held.any():
        raise TinyascError(f"train.validation = {fraction}: too few training recordings to hold one out; "
                           "set train.validation = 0 and train.select_split = 'evaluate'")
    return train.subset(np.flatnonzero(~held)), train.subset(np.flatnonzero(held))


def load_splits(data_root, exp, cache_dir=None, progress=True, train_split=None):
    """(train, validation or None, evaluate) Splits of a run: the training split (or subset) less the
    held-out validation locations (exp.train.validation), and the evaluate split at the training clips'
    length."""
    train = load_split(data_root, "train", exp, cache_dir, progress=progress, train_split=train_split)
    evaluate = load_split(data_root, "evaluate", exp, cache_dir,
                          num_samples=round(train.clip_seconds * exp.features.sample_rate), progress=progress)
    train, validation = hold_out_locations(train, exp.train.validation, exp.train.validation_seed)
    return train, validation, evaluate


def dataset_fingerprint(root, train_split=None):
    """{"root", clip counts, "sha256"} of the train and evaluate lists (name, label, file size): a run
    resumed on another dataset, or on one whose files changed, is refused."""
    h, counts = hashlib.sha256(), {}
    for split in ("train", "evaluate"):
        clips = split_clips(root, split, train_split)
        counts[f"{split}_clips"] = len(clips)
        for c in clips:
            path = Path(root) / c.filename
            h.update(f"{split}\t{c.filename}\t{c.label}\t{path.stat().st_size if path.exists() else -1}\n".encode())
    return {"root": str(Path(root).resolve()), **counts, "sha256": h.hexdigest()}


def input_digests(train_cfg, **paths):
    """{name: content SHA-256} of a run's input files besides the dataset (train.teacher_logits,
    train.dir_folder, and `paths`, e.g. a compress teacher): --resume refuses a run whose inputs changed."""
    named = {"train.teacher_logits": train_cfg.teacher_logits, "train.dir_folder": train_cfg.dir_folder, **paths}
    return {name: content_sha256(path) for name, path in named.items() if path and Path(path).exists()}


def check_dataset(data_root, train_split=None):
    """Validate the train and evaluate splits (CSVs, labels, audio present, no clip or recording location
    in both) with one-line errors. Returns the (train, evaluate) clips."""
    train, evaluate = (split_clips(data_root, split, train_split) for split in ("train", "evaluate"))
    check_disjoint(read_split(data_root, "train", check_audio=False) if train_split else train, evaluate, data_root)
    return train, evaluate


def check_same_run(run_dir, exp, data=None, doing="--resume"):
    """Refuse, with one line, to continue or reuse the run in RUN_DIR for `exp` on `data` unless it was
    started with the same recipe (runtime settings such as threads may differ), the same dataset and the
    same input files."""
    run = RunDir(run_dir)
    try:
        saved = json.loads(run.config.read_text())
    except (OSError, ValueError) as e:
        raise TinyascError(f"{run.config}: unreadable run config ({e})") from None
    if recipe_of(saved) != recipe_of(exp.resolved()):
        raise TinyascError(f"{run.path}: {doing} with a different config than the run was started with")
    saved_data = run / DATA_FILE
    if data and saved_data.is_file():
        try:
            before = json.loads(saved_data.read_text())
        except (OSError, ValueError) as e:
            raise TinyascError(f"{saved_data}: unreadable ({e})") from None
        for name, digest in (before.get("inputs") or {}).items():  # runs started before input digests have none
            if (data.get("inputs") or {}).get(name) != digest:
                raise TinyascError(f"{run.path}: {doing}, but {name} changed (its content differs from when "
                                   "the run started); start a new run, or restore the file")
        if before.get("sha256") != data["sha256"]:
            raise TinyascError(f"{run.path}: {doing} on other data than the run was started with "
                               f"({before.get('root')}, {before.get('train_clips')} train clips; now {data['root']}, "
                               f"{data['train_clips']}) or its files changed")


def prepare_run_dir(run_dir, exp, resume, force, data=None):
    """Create RUN_DIR for a new run, or check it for --resume: the same recipe (runtime settings such as
    threads may differ) on the same dataset. Never clobbers a run unless --force."""
    run = RunDir(run_dir)
    if resume:
        if not run.last.is_file():
            raise TinyascError(f"{run.path}: nothing to resume (no {run.LAST})")
        check_same_run(run_dir, exp, data)
        if run.results.is_file():
            raise TinyascError(f"{run.path}: the run is finished ({run.RESULTS}); nothing to resume")
        return run.path
    check_output(run.path, kind="dir", force=True)  # under a file, not a folder, not writable: one line
    # a folder holding only what a run writes before its first epoch (a run that failed early) is reused
    unstarted = {".lock", run.CONFIG, DATA_FILE, "system.json"}
    if any(p.name not in unstarted for p in run.path.iterdir()) and not force:
        raise TinyascError(f"{run.path}: already holds files; use --resume to continue the run or --force to start over")
    for path in run.run_files():
        path.unlink(missing_ok=True)  # --force: a fresh run replaces the old run's files only
    write_json(run.config, exp.resolved())
    if data:
        write_json(run / DATA_FILE, data)
    return run.path


@contextlib.contextmanager
def discard_if_unstarted(run_dir, keep=False):
    """On failure before the first epoch's checkpoint, remove what the run wrote (its config, data and
    system files), so a failed start leaves nothing behind; the lock then removes the folder it made."""
    try:
        yield
    except BaseException:
        run = RunDir(run_dir)
        if not keep and not run.last.exists():
            for path in (run.config, run / DATA_FILE, run / "system.json", run.compress_settings):
                path.unlink(missing_ok=True)
        raise


def run_training(exp, data_root, run_dir, *, resume=False, force=False, cache_dir=None, progress=True,
                 train_split=None, **fit_kwargs):
    """Prepare the run dir and feature caches, build the model from the seed, and fit. Returns results.
    Rank 0 holds the run folder's lock for the whole run: a second writer is refused with one line."""
    env = dist_env()
    # before the run dir exists: a typo in --data or a config the data cannot feed must not leave a run behind
    check_amp(exp.runtime.amp, resolve_device(exp.runtime.device, env.local_rank).type)
    train_clips, _ = check_dataset(data_root, train_split)
    check_input_fits(exp, typical_length(data_root, train_clips, exp.features.sample_rate), SCENES,
                     where=f"--data {data_root}")
    lock = run_lock(run_dir, what="train") if env.main else contextlib.nullcontext()
    with lock, discard_if_unstarted(run_dir, resume or not env.main):
        if env.main:
            prepare_run_dir(run_dir, exp, resume, force,
                            {**dataset_fingerprint(data_root, train_split), "train_split": train_split,
                             "inputs": input_digests(exp.train)})
            from tinyasc.system import describe

            write_json(RunDir(run_dir) / "system.json", describe())  # allocator, threads, torch, CPU: speed context
        if env.world > 1:
            Distributed(resolve_device(exp.runtime.device, env.local_rank), env).barrier()
        # rank 0 builds the caches first; the others then find them complete and reuse them
        for turn in ([0, 1] if env.world > 1 else [0]):
            if env.main == (turn == 0):
                train, validation, evaluate = load_splits(data_root, exp, cache_dir, progress and env.main,
                                                          train_split)
            if env.world > 1:
                dist.barrier()
        resolved = exp.resolved()
        torch.manual_seed(exp.train.seed)  # the initialisation stream (fit seeds its own dropout stream)
        model = build_model(resolved["arch"], resolved["model_config"])
        extra = {"clip_samples": round(train.clip_seconds * exp.features.sample_rate), "train_split": train_split}
        results = fit(model, resolved["arch"], train, evaluate, exp, run_dir, resume=resume, progress=progress,
                      validation=validation, extra_checkpoint=extra, **fit_kwargs)
        if env.main:  # the DCASE complexity rules, as trained (float): recorded beside the accuracy
            from tinyasc.rules import check_all, preset_storage

            results["rules"] = check_all(model.cpu(), exp.features, train.clip_seconds, scheme=preset_storage(exp.model))
            write_json(RunDir(run_dir).results, results)
        return results


def sweep(exp, data_root, out_dir, seeds, *, cache_dir=None, progress=True, train_split=None):
    """Train and evaluate `exp` once per seed into OUT/seed<N>; finished seeds are skipped and
    interrupted ones resumed. Returns the run dirs (a seed given twice runs once)."""
    runs = []
    for seed in dict.fromkeys(seeds):
        run_dir = Path(out_dir) / f"seed{seed}"
        seeded = dataclasses.replace(exp, train=dataclasses.replace(exp.train, seed=seed))
        if RunDir(run_dir).results.is_file():
            why = finished_run_differs(run_dir, seeded, data_root, train_split)
            if why:
                raise TinyascError(f"{run_dir}: holds a finished run of {why}; it is not this sweep's seed {seed} "
                                   "(use another --out, or remove that run)")
            print(f"{run_dir}: finished with the same recipe and data, skipped")
        else:
            resume = RunDir(run_dir).last.is_file()
            print(f"{run_dir}: {'resuming' if resume else 'training'} {exp.name} seed {seed}")
            run_training(seeded, data_root, run_dir, resume=resume, cache_dir=cache_dir, progress=progress,
                         train_split=train_split)
        runs.append(run_dir)
    return runs


def _differences(a, b, prefix=""):
    """'train.epochs 1 ≠ 4'-style list of the leaves where two nested dicts differ."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key} {x!r} ≠ {y!r}")
    return out


def finished_run_differs(run_dir, exp, data_root, train_split=None):
    """Why the finished run in `run_dir` is not `exp` on this data ("another recipe (train.epochs 1 ≠ 4)",
    "other data"), or None when its recipe and dataset fingerprint are equal."""
    run = RunDir(run_dir)
    try:
        saved = recipe_of(json.loads(run.config.read_text()))
    except (OSError, ValueError) as e:
        return f"an unreadable config ({e})"
    differ = _differences(saved, recipe_of(exp.resolved()))
    if differ:
        return f"another recipe ({', '.join(differ[:3])}{', …' if len(differ) > 3 else ''})"
    if (run / DATA_FILE).is_file():
        before = json.loads((run / DATA_FILE).read_text())
        if before.get("sha256") != dataset_fingerprint(data_root, train_split)["sha256"]:
            return f"other data ({before.get('root')}, {before.get('train_clips')} train clips)"
    return None


def evaluate_checkpoints(paths, data_root=None, split="evaluate", cache_dir=None, progress=True, data=None):
    """Metrics of one checkpoint, or of the ensemble of several (averaged probabilities), on a split of
    `data_root` — or on `data`, a Split already loaded with the checkpoints' feature config."""
    clips = read_split(data_root, split) if data is None else None
    if clips is not None and any(c.label < 0 for c in clips):
        raise TinyascError(f"{data_root}: the {split} split has no labels; use `tinyasc predict` on it")
    if data is not None:
        labels, devices = data.labels, data.devices
    else:
        labels, devices = np.array([c.label for c in clips]), np.array([c.device for c in clips])
    probs, classes, general_probs, routed = [], None, [], False
    for path in paths:
        # the weights at the deployment storage (the fp16 preset in fp16, …): the weights a submission runs
        model, feature_cfg, model_classes, payload, storage = deployed_checkpoint(path)
        if classes is not None and model_classes != classes:
            raise TinyascError(f"{path}: its classes differ from {paths[0]}'s; cannot ensemble")
        classes = model_classes
        if data is not None:
            x = data.features
        else:
            cache = FeatureCache.build_or_load(data_root, clips, feature_cfg, cache_dir=cache_dir,
                                               num_samples=payload.get("clip_samples"), progress=progress)
            x = cache.features
        logits = batch_logits(model, x, progress=progress)
        general_probs.append(softmax(logits))
        routed = routed or bool(payload.get("device_models"))
        routes = device_models(path, model, payload)  # a devices.pt routes each clip by its device
        for device, rows in device_groups(devices):
            if device in routes:
                logits[rows] = batch_logits(apply_storage(routes[device], storage), x, np.array(rows))
        probs.append(softmax(logits))
    if labels.max(initial=-1) >= len(classes):
        raise TinyascError(f"{paths[0]}: the model knows {len(classes)} classes but the data has labels up to "
                           f"{labels.max()} ({SCENES[labels.max()] if labels.max() < len(SCENES) else labels.max()})")
    result = metrics(ensemble(probs), labels, devices, classes)
    if routed:  # DCASE 2025 reports both: device-specific and general
        result["general"] = metrics(ensemble(general_probs), labels, devices, classes)
    return result


DEMO_EPOCHS = 20


def demo_experiments(epochs):
    from tinyasc.experiment import Experiment
    from tinyasc.train import TrainConfig

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
        rows.append((exp.name, json.loads(RunDir(run_dir).results.read_text())["last"], slug))
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

"""`tinyasc compress` (paper §3.3, Table 4): a trained teacher checkpoint → a student copy, pruned one-shot,
fine-tuned with 8-bit QAT (and knowledge distillation from the teacher) by train.fit, written as an
int8 + fp16 checkpoint (`compressed.pt`) that `tinyasc evaluate` and `tinyasc info` load like any other."""
import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


from tinyasc.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, stored_bits
from tinyasc.complexity import size_report
from tinyasc.compress.distill import KD_ALPHA, KD_TEMPERATURE, Teacher, distillation_loss
from tinyasc.compress.prune import DEFAULT_SCOPE, SCOPES, prune, recalibrate_batchnorm, sparsity, zero_pruned
from tinyasc.compress.quantize import compressed_state_dict, finalize, prepare_qat
from tinyasc.errors import TinyascError
from tinyasc.config import check_fields, config_from_dict, rule
from tinyasc.experiment import compress_sections, load_experiment
from tinyasc.lock import run_lock
from tinyasc.models import MODELS, canonical_arch
from tinyasc.paths import write_json
from tinyasc.rundir import RunDir
from tinyasc.runs import (check_dataset, dataset_fingerprint, discard_if_unstarted, evaluate_checkpoints, input_digests,
                          load_splits, prepare_run_dir)
from tinyasc.train import fit, resolve_device


@dataclass(frozen=True)
class CompressConfig:
    # §3.3: prune the convolutions to 89% zeros, store their weights at 8 bits and the rest at 16 bits
    prune: float = rule(0.89, "[0, 1)")  # fraction of conv weights set to zero; 0 = no pruning
    # "global_dw_floor" (default), "global", "dw_floor" or "layer": see prune.magnitude_masks
    prune_scope: str = rule(DEFAULT_SCOPE, choices=SCOPES)
    prune_exclude: tuple = rule((), of=str)  # conv module names not to prune; () = all convs, the 1×1 head too (paper)
    # the global scopes' per-layer floor: every conv keeps at least ceil(prune_min_keep · its weights)
    prune_min_keep: float = rule(0.02, "[0, 1]")
    # re-estimate the BatchNorm statistics of the pruned, quantized student on (up to 2,048) training
    # clips before fine-tuning: without it a heavily pruned network starts near chance (README, Compression)
    recalibrate_bn: bool = True
    bits: int = rule(8, "[0, 8]")  # conv weight bits (symmetric, QAT); 0 = no quantization
    per_channel: bool = False  # per-tensor by default: 1 scale per conv, where per-channel scales
    # (4,690 for BC-ResNet-ASC-8, many for 3-weight depthwise filters) would add ~18 KB at fp32
    fp16: bool = True  # store all other parameters (norm affines, biases) as fp16
    # knowledge distillation (§2.3): Table 4's 'Compressed' rows without / with KD
    distill: bool = False
    kd_alpha: float = rule(KD_ALPHA, "[0, 1]")
    kd_temperature: float = rule(KD_TEMPERATURE, "> 0")
    kd_teachers: tuple = rule((), path=True, of=str)  # checkpoints whose ensemble teaches; () = the one compressed

    def __post_init__(self):
        check_fields(self, "compress", lambda: [(self.bits != 1, "bits must be 0 (off) or 2…8, not 1")])


LEGACY_SETTINGS = {"prune_min_keep": 0.02}  # compress.json of runs started before these fields


# Fine-tuning recipe, applied over the teacher's own training config (same augmentation, batch, SGD):
# the paper only says 'additional training'. We restart at lr 0.01 (1/6 of the training peak, the usual
# ~1/10 for retraining a pruned net, a little more because 89% of the weights are gone) with a 1-epoch
# warm-up and cosine decay over a quarter of the teacher's epochs (25 for the paper's 100): measured on
# BC-ResNet-ASC-8 at 0.89, 10% of the teacher's epochs lost 4.1 points and 25% lost 1.1 (README, Compression).
FINETUNE = {"lr": 0.01, "warmup_epochs": 1.0}
FINETUNE_FRACTION = 0.25


def finetune_epochs(teacher_train):
    """Default fine-tuning length: FINETUNE_FRACTION of the teacher's epochs (100 if it does not say), ≥ 1."""
    return max(1, round(FINETUNE_FRACTION * teacher_train.get("epochs", 100)))


def _teacher_model_section(payload):
    """[model] section (preset + overrides) that rebuilds the teacher's architecture."""
    exp = payload.get("experiment")
    if exp:
        return {"preset": exp["model"], **exp.get("model_overrides", {})}
    preset = next((name for name, (arch, _, _) in MODELS.items() if arch == canonical_arch(payload["arch"])), None)
    if preset is None:
        raise TinyascError(f"no model preset for architecture {payload['arch']!r}")
    return {"preset": preset, **payload["model_config"]}


def compress_experiment(teacher_path, config=None, sets=(), **flags):
    """(fine-tuning Experiment, CompressConfig) for compressing `teacher_path`.

    Precedence, lowest first: the teacher's experiment (model, features, training config) → FINETUNE →
    the TOML file `config` ([model] must describe the teacher's architecture; [compress] holds
    CompressConfig fields; [train]/[features] as for `tinyasc train`) → `sets` ("train.lr=0.005",
    "compress.prune=0.8") → `flags` (CompressConfig fields; None = not given)."""
    payload = read_checkpoint(teacher_path)
    if payload.get("quantization"):
        raise TinyascError(f"{teacher_path}: already a compressed checkpoint; compress its float teacher instead")
    teacher_exp = payload.get("experiment") or {}
    base = {"name": f"{teacher_exp.get('name', Path(teacher_path).stem)}_compressed",
            "description": f"compressed from {teacher_path}", "model": _teacher_model_section(payload),
            "features": dict(payload["feature_config"]), "train": {**teacher_exp.get("train", {}), **FINETUNE,
                      "epochs": finetune_epochs(teacher_exp.get("train", {}))},
            "runtime": dict(teacher_exp.get("runtime", {}))}
    data, compress, other_sets = compress_sections(base, config, sets)
    compress.update({k: v for k, v in flags.items() if v is not None})
    ccfg = config_from_dict(CompressConfig, compress, "compress config")
    exp = load_experiment(None, other_sets, base=data)
    resolved = json.loads(json.dumps(exp.resolved()))  # tuples → lists on both sides
    teacher_arch = canonical_arch(payload["arch"])
    if (resolved["arch"], resolved["model_config"]) != (teacher_arch, json.loads(json.dumps(payload["model_config"]))):
        raise TinyascError(f"{config or 'config'}: its [model] differs from the teacher's ({teacher_path}); the student "
                           "is a copy of the teacher")
    if resolved["features"] != json.loads(json.dumps(payload["feature_config"])):
        raise TinyascError("the student must use the teacher's feature config ([features] differs)")
    return exp, ccfg


def build_student(teacher, ccfg):
    """A copy of `teacher`, pruned one-shot by |w| and prepared for QAT (every conv quantized, the
    paper's 'all convolution layers')."""
    student = copy.deepcopy(teacher).requires_grad_(True)
    if ccfg.prune > 0:
        prune(student, ccfg.prune, ccfg.prune_scope, exclude=ccfg.prune_exclude, min_keep=ccfg.prune_min_keep)
    if ccfg.bits:
        prepare_qat(student, ccfg.bits, ccfg.per_channel)
    return student


def size_summary(model, bits=None):
    """DCASE size of a finalized model as stored (`bits`: finalize's mapping): totals and the 8-bit /
    16-bit groups."""
    report = size_report(model, bits=bits)
    return {"total_bytes": report["total_bytes"], "total_kb": report["total_bytes"] / 1024,
            "by_bits": {str(bits): {"nonzero": g["nonzero"], "bytes": g["bytes"], "kb": g["bytes"] / 1024}
                        for bits, g in sorted(report["by_bits"].items())}}


def save_compressed(path, model, arch, feature_cfg, classes, ccfg, **extra):
    """Finalize `model` in place and write it as an int8 + fp16 checkpoint. Returns the size summary."""
    bits = finalize(model, ccfg.fp16)
    state, stored = compressed_state_dict(model, ccfg.fp16)
    size = size_summary(model, bits)
    save_checkpoint(path, model, arch, feature_cfg, classes, state_dict=state, quantization=stored,
                    size=size, sparsity=sparsity(model)["ratio"], **extra)
    return size


def run_compression(teacher_path, data_root, run_dir, exp, ccfg, *, resume=False, force=False, cache_dir=None,
                    progress=True, train_split=None, **fit_kwargs):
    """Compress `teacher_path` into RUN_DIR: fit's usual files (config.json, metrics.jsonl, last.pt and
    best.pt — float latent weights, pruned — results.json) plus compress.json (settings),
    compressed.pt (int8 + fp16, last epoch) and compressed_best.pt (best evaluate epoch, the paper's
    early-stopping figure). Single process. `fit_kwargs` go to train.fit (e.g. on_epoch_end). Returns
    results.json's dict, with a "compressed" entry."""
    teacher, feature_cfg, classes, payload = load_checkpoint(teacher_path)
    run = RunDir(run_dir)
    settings = json.loads(json.dumps({"teacher": str(teacher_path), **dataclasses.asdict(ccfg)}))
    for path in ccfg.kd_teachers:  # a teacher must see what the student sees (the same features, classes)
        _, teacher_features, teacher_classes, _ = load_checkpoint(path)
        if teacher_features != feature_cfg or teacher_classes != classes:
            differ = [f"{k} {getattr(teacher_features, k)} vs {getattr(feature_cfg, k)}"
                      for k in feature_cfg.to_dict() if getattr(teacher_features, k) != getattr(feature_cfg, k)]
            what = f"features ({', '.join(differ[:3])})" if differ else f"classes ({len(teacher_classes)})"
            raise TinyascError(f"--kd-teacher {path}: trained on other {what} than the student ({teacher_path}); "
                               "teach with a model of the same front end and classes")
    check_dataset(data_root, train_split)  # before the run dir exists
    with run_lock(run.path, what="compress"), discard_if_unstarted(run.path, resume):
        return _compress_locked(teacher, feature_cfg, classes, payload, settings, data_root, run, exp, ccfg,
                                resume, force, cache_dir, progress, train_split, fit_kwargs)


def _compress_locked(teacher, feature_cfg, classes, payload, settings, data_root, run, exp, ccfg, resume, force,
                     cache_dir, progress, train_split, fit_kwargs):
    if resume:
        saved = json.loads(run.compress_settings.read_text()) if run.compress_settings.is_file() else None
        if saved is not None:  # a run started before a field existed ran at its default
            saved = {**LEGACY_SETTINGS, **saved}
        if saved != settings:
            raise TinyascError(f"{run.path}: --resume with different compression settings than the run was started with")
    teachers = {"the teacher": settings["teacher"], **{f"--kd-teacher {p}": p for p in ccfg.kd_teachers}}
    prepare_run_dir(run.path, exp, resume, force, {**dataset_fingerprint(data_root, train_split),
                                                   "inputs": input_digests(exp.train, **teachers)})
    if not resume:
        write_json(run.compress_settings, settings)
    train, validation, evaluate = load_splits(data_root, exp, cache_dir, progress, train_split)

    student = build_student(teacher, ccfg)  # masks depend only on the teacher: a resumed run rebuilds the same
    if ccfg.recalibrate_bn and ccfg.prune > 0 and not resume:  # a resumed run loads its own statistics
        device = resolve_device(exp.runtime.device)  # compress is single-process
        recalibrate_batchnorm(student.to(device), train.features, device=device)
    loss_fn = None
    if ccfg.distill:
        teachers = [load_checkpoint(p)[0] for p in ccfg.kd_teachers] if ccfg.kd_teachers else [teacher]
        loss_fn = distillation_loss(Teacher(teachers), ccfg.kd_alpha, ccfg.kd_temperature)
    arch = payload["arch"]
    extra = {"clip_samples": round(train.clip_seconds * exp.features.sample_rate), "compression": settings}
    results = fit(student, arch, train, evaluate, exp, run.path, resume=resume, validation=validation, loss_fn=loss_fn,
                  after_step=zero_pruned, progress=progress, extra_checkpoint=extra, **fit_kwargs)

    best = read_checkpoint(run.best)
    best_student = build_student(teacher, ccfg)
    best_student.load_state_dict(best["state_dict"])
    compressed = {}
    for name, model, epoch in ((run.COMPRESSED, student.cpu().eval(), exp.train.epochs),
                               (run.COMPRESSED_BEST, best_student.eval(), best["epoch"])):
        size = save_compressed(run / name, model, arch, feature_cfg, classes, ccfg,
                               experiment=exp.resolved(), epoch=epoch, **extra)
        compressed[name] = {"epoch": epoch, "size": size, "sparsity": sparsity(model)["ratio"],
                            "metrics": evaluate_checkpoints([run / name], data=evaluate)}
    results["compressed"] = compressed
    from tinyasc.rules import check_all  # the DCASE complexity rules of the stored int8 + fp16 model

    packed, _, _, packed_payload = load_checkpoint(run.compressed)
    results["rules"] = check_all(packed, feature_cfg, train.clip_seconds, bits=stored_bits(packed_payload))
    write_json(run.results, results)
    return results

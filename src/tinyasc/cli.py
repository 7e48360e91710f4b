"""The `tinyasc` command: one subcommand per job. Nothing imports this module."""
import argparse
import json
import sys
from pathlib import Path

from tinyasc.errors import TinyascError


def positive_int(text):
    """argparse type: an integer >= 1 (one error line otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {value}")
    return value


def clip_seconds(text):
    """argparse type: seconds of audio in (0, 3600]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], not {text}")
    return value


def _kb(nbytes):
    return f"{nbytes / 1024:.1f} KB"


def _load_target(target):
    """A preset name or a checkpoint path → (label, model, feature config, checkpoint or None)."""
    from tinyasc.features import FeatureConfig
    from tinyasc.models import MODELS, create_model

    if target in MODELS:
        model = create_model(target)
        return target, model, FeatureConfig(n_mels=model.cfg.n_mels), None
    if Path(target).exists() or target.endswith((".pt", ".ckpt")):
        from tinyasc.checkpoint import load_checkpoint

        model, feature_cfg, _, payload = load_checkpoint(target)
        return target, model, feature_cfg, payload
    create_model(target)  # raises the 'unknown model … available: …' error


def cmd_info(args):
    from tinyasc.complexity import complexity, size_report

    if args.system:
        return _print_system(args.json)
    if args.target is None:
        raise TinyascError("info needs a model name or checkpoint (or --system)")
    label, model, feature_cfg, payload = _load_target(args.target)
    frames = feature_cfg.num_frames(int(args.seconds * feature_cfg.sample_rate))
    from tinyasc.checkpoint import deploy_storage, stored_bits
    from tinyasc.rules import preset_storage

    bits = stored_bits(payload) if payload else None
    # --rules counts parameters at --storage, else at the preset's / checkpoint's deployment storage
    storage = args.storage or (deploy_storage(payload) if payload else preset_storage(label))
    info = complexity(model, (1, 1, feature_cfg.n_mels, frames), bits)
    info["model"] = label
    if hasattr(model, "resnorm_lambdas"):
        info["resnorm_lambdas"] = model.resnorm_lambdas()
    if args.rules:
        from tinyasc.rules import check_rules

        one_second = (1, 1, feature_cfg.n_mels, feature_cfg.num_frames(feature_cfg.sample_rate))
        info["rules"] = check_rules(model, args.rules, clip_seconds=args.seconds, input_shape=one_second,
                                    scheme=storage, bits=bits)
    if args.json:
        print(json.dumps(info, indent=2))
        return 1 if args.check and args.rules and not info["rules"]["pass"] else 0
    rf = info.get("receptive_field")
    print(f"model            {label}")
    print(f"parameters       {info['params']:,}")
    print(f"non-zero params  {info['nonzero_params']:,}")
    print(f"MACs             {info['macs'] / 1e6:.1f} M for input {tuple(info['input_shape'])} ({args.seconds:g} s)")
    if rf:
        print(f"receptive field  {rf[0]}×{rf[1]} (frequency × time bins of the input)")
    sizes = info["size_bytes"]
    print("size (DCASE rule: non-zero params × bytes; 1 KB = 1024 B):")
    print(f"  as stored {_kb(info['size_bytes_stored'])} | fp32 {_kb(sizes['fp32'])} | fp16 {_kb(sizes['fp16'])}"
          f" | int8 {_kb(sizes['int8'])} | 8-bit convs + fp16 rest {_kb(sizes['dcase'])}")
    lambdas = info.get("resnorm_lambdas") or {}
    for name, values in lambdas.items():
        shown = f"{values[0]:.4f}" if len(values) == 1 else f"mean {sum(values) / len(values):.4f} over {len(values)} bins"
        print(f"  ResNorm λ {name or 'input'}: {shown}")
    if args.layers:
        report = size_report(model, bits=bits)
        print(f"{'tensor':48s} {'shape':>18s} {'nonzero':>9s} {'bits':>4s} {'bytes':>9s}")
        for row in report["rows"]:
            print(f"{row['name']:48s} {str(tuple(row['shape'])):>18s} {row['nonzero']:>9,} {row['bits']:>4} {row['bytes']:>9.0f}")
        for bits, group in sorted(report["by_bits"].items()):
            print(f"  {bits:>2}-bit: {group['nonzero']:,} non-zero, {_kb(group['bytes'])}")
    if args.rules:
        from tinyasc.rules import format_report

        print(format_report(info["rules"]))
        if args.check and not info["rules"]["pass"]:
            return 1
    return 0


def cmd_models(args):
    from tinyasc.complexity import count_params
    from tinyasc.models import MODELS, create_model

    from tinyasc.rules import passing_rule_sets, preset_storage

    for name in sorted(MODELS):
        model = create_model(name)
        passes = ",".join(passing_rule_sets(model, scheme=preset_storage(name))) or "none"
        print(f"{name:28s} {count_params(model):>10,} params  passes ({preset_storage(name)}): {passes}  "
              f"{MODELS[name][2]}")
    return 0


def cmd_synth(args):
    from tinyasc.data.synthetic import generate

    summary = generate(args.out, seed=args.seed, scale=args.scale, clip_seconds=args.clip_seconds,
                       sample_rate=args.sample_rate, workers=args.workers, progress=not args.quiet,
                       layout=args.layout, snippet_seconds=args.snippet_seconds)
    print(json.dumps(summary, indent=2) if args.json else f"wrote {args.out}")
    return 0


def cmd_data_info(args):
    from tinyasc.data.tau import count_clips, format_counts

    print(format_counts(count_clips(args.root, check_audio=not args.no_check)))
    return 0


def _experiment(args):
    from tinyasc.experiment import load_experiment

    sets = list(args.set or [])
    if getattr(args, "seed", None) is not None:
        sets.append(f"train.seed={args.seed}")
    exp = load_experiment(args.config, sets, base=None if args.config else {"model": {"preset": "bc_resnet_asc_1"}})
    _apply_threads(exp)
    return exp


def _apply_threads(exp):
    """Process state belongs to the command, not to the training loop: torch's intra-op threads."""
    if exp.runtime.threads > 0:
        import torch

        torch.set_num_threads(exp.runtime.threads)


def _print_system(as_json):
    from tinyasc.system import describe, worker_describe

    info = describe()
    info["worker_allocator"] = worker_describe()["allocator"]  # what a spawned extraction worker runs with
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        print(f"{key:22s} {' '.join(value) if isinstance(value, list) else value}")
    return 0


def _print_rules(results):
    if results.get("rules"):
        storage = next(iter(results["rules"].values())).get("storage", "as stored")
        print(f"DCASE complexity rules (parameters at {storage}): " + ", ".join(
            f"{name} {'PASS' if r['pass'] else 'FAIL'}" for name, r in results["rules"].items()))


def cmd_train(args):
    from tinyasc.runs import run_training

    exp = _experiment(args)
    from tinyasc.train import dist_env

    results = run_training(exp, args.data, args.out, resume=args.resume, force=args.force,
                           cache_dir=args.cache_dir, progress=not args.quiet, train_split=args.train_split)
    if results and dist_env().main:
        from tinyasc.evaluate import format_table

        print(format_table([(f"{exp.name} (last epoch)", results["last"]),
                            (f"{exp.name} (best epoch {results['best_epoch']}, chosen on {results['selected_on']['split']})", results["best"])]))
        _print_rules(results)
    return 0


def cmd_evaluate(args):
    from tinyasc.checkpoint import load_checkpoint
    from tinyasc.complexity import size_bytes
    from tinyasc.evaluate import format_table
    from tinyasc.paths import atomic_write_text, check_output, write_json
    from tinyasc.runs import evaluate_checkpoints

    outputs = []
    if args.out:  # checked before the long work: nothing is overwritten without --force
        check_output(args.out, kind="dir", force=True)
        outputs = [Path(args.out) / name for name in ("metrics.json", "table.md", "confusion.png")]
        for path in outputs:
            check_output(path, force=args.force)
    m = evaluate_checkpoints(args.checkpoints, args.data, args.split, cache_dir=args.cache_dir, progress=not args.quiet)
    name = args.checkpoints[0] if len(args.checkpoints) == 1 else f"ensemble of {len(args.checkpoints)}"
    table = format_table([(name, m)])
    print(table)
    print(f"accuracy {100 * m['accuracy']:.2f}%  log loss {m['log_loss']:.4f}  clips {m['clips']}")
    from tinyasc.checkpoint import stored_bits

    loaded = [load_checkpoint(path) for path in args.checkpoints]  # an ensemble's size is the sum
    m["size_bytes"] = sum(size_bytes(model, bits=stored_bits(payload)) for model, _, _, payload in loaded)
    members = f"; sum of {len(args.checkpoints)} models" if len(args.checkpoints) > 1 else ""
    print(f"size {_kb(m['size_bytes'])} (DCASE rule, as stored{members})")
    if args.out:
        write_json(outputs[0], {"checkpoints": args.checkpoints, "split": args.split, **m})
        atomic_write_text(outputs[1], table + "\n")
        from tinyasc.report import plot_confusion

        plot_confusion(m, outputs[2], title=name)
        print(f"wrote {args.out}/metrics.json, table.md, confusion.png")
    return 0


def cmd_compress(args):
    from tinyasc.compress.pipeline import compress_experiment, run_compression
    from tinyasc.evaluate import format_table

    sets = list(args.set or [])
    sets += [f"train.{k}={v}" for k, v in (("seed", args.seed), ("epochs", args.epochs)) if v is not None]
    exp, ccfg = compress_experiment(args.teacher, args.config, sets, prune=args.prune, bits=args.bits,
                                    per_channel=args.per_channel, distill=args.distill, kd_alpha=args.kd_alpha,
                                    kd_temperature=args.kd_temperature,
                                    kd_teachers=tuple(args.kd_teacher) if args.kd_teacher else None)
    _apply_threads(exp)
    results = run_compression(args.teacher, args.data, args.out, exp, ccfg, resume=args.resume, force=args.force,
                              cache_dir=args.cache_dir, progress=not args.quiet, train_split=args.train_split)
    out = results["compressed"]
    print(format_table([(f"{exp.name}: {name} (epoch {c['epoch']})", c["metrics"]) for name, c in out.items()]))
    size = out["compressed.pt"]["size"]
    groups = ", ".join(f"{g['nonzero']:,} non-zero at {bits} bits = {_kb(g['bytes'])}" for bits, g in size["by_bits"].items())
    print(f"pruned {100 * out['compressed.pt']['sparsity']:.1f}% of conv weights; size {_kb(size['total_bytes'])} ({groups})")
    print(f"wrote {args.out}/compressed.pt and compressed_best.pt (int8 + fp16)")
    _print_rules(results)
    return 0


def cmd_sweep(args):
    from tinyasc.report import report
    from tinyasc.runs import sweep

    exp = _experiment(args)
    out = Path(args.out) if args.out else Path("runs") / exp.name
    from tinyasc.lock import run_lock
    from tinyasc.paths import atomic_write_text, check_output

    check_output(out, kind="dir", force=True)
    with run_lock(out, what="sweep"):
        runs = sweep(exp, args.data, out, args.seeds, cache_dir=args.cache_dir, progress=not args.quiet,
                     train_split=args.train_split)
        text, _ = report(runs)
        atomic_write_text(out / "report.md", text + "\n")
    print(text)
    return 0


def cmd_report(args):
    from tinyasc.paths import atomic_write_text, check_output, write_json
    from tinyasc.report import report
    from tinyasc.rundir import RunDir

    runs = [p.parent for d in args.runs for p in sorted(Path(d).rglob(RunDir.RESULTS))]
    if not runs:
        raise TinyascError(f"no finished runs ({RunDir.RESULTS}) under {', '.join(args.runs)}")
    if args.out:
        check_output(args.out, force=args.force)
        check_output(Path(args.out).with_suffix(".json"), force=args.force)
    text, data = report(runs)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
        write_json(Path(args.out).with_suffix(".json"), data)
    return 0


def cmd_demo(args):
    from tinyasc.runs import demo

    demo(data_dir=args.data, out_dir=args.out, epochs=args.epochs, seed=args.seed, progress=not args.quiet)
    return 0


def cmd_figure(args):
    from tinyasc.figure import tsne_figure

    from tinyasc.paths import check_output

    if Path(args.out).is_dir():
        raise TinyascError(f"--out {args.out}: is a folder; give a file name such as {Path(args.out) / 'tsne.png'}")
    args.out = args.out if Path(args.out).suffix else f"{args.out}.png"  # matplotlib adds .png otherwise
    check_output(args.out, force=args.force)
    scores = tsne_figure(args.checkpoint, args.data, args.out, split=args.split, per_device=args.per_device,
                         cache_dir=args.cache_dir, progress=not args.quiet)
    for name, score in scores.items():
        print(f"device recoverable from {name}: {100 * score:.1f}% (5-fold 5-NN balanced accuracy)")
    print(f"wrote {args.out}")
    return 0


def cmd_export(args):
    if args.format == "c":
        from tinyasc.export_c import export_c

        if args.int8 or args.calibrate:
            raise TinyascError("--format c takes the checkpoint's own precision (int8 codes of a compressed or "
                               "8-bit-deployed checkpoint, else float32); drop --int8/--calibrate")
        export_c(args.checkpoint, args.out, force=args.force, device_model=args.device_model)
        return 0
    from tinyasc.export import export
    from tinyasc.onnxmodel import sidecar_path
    from tinyasc.paths import check_output

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":  # `predict` recognises models by extension
        out = out.with_name(out.name + ".onnx")
        print(f"tinyasc: writing {out} (an exported model's name ends in .onnx)", file=sys.stderr)
    check_output(out, force=args.force)
    check_output(sidecar_path(out), force=args.force)  # the sidecar is never overwritten without --force either
    export(args.checkpoint, out, int8=args.int8, calibrate=args.calibrate, device_model=args.device_model)
    return 0


def cmd_stream(args):
    from tinyasc.stream import run_stream

    if args.input != "-" and not Path(args.input).is_file():
        raise TinyascError(f"{args.input}: no such file (give - for standard input)")
    run_stream(args.model, args.input, smooth=args.smooth)
    return 0


def cmd_predict(args):
    from tqdm.auto import tqdm

    from tinyasc.predict import MODEL_EXTENSIONS, check_routing, collect_inputs, load, read_device_ids, write_submission

    models, inputs = [], list(args.paths)
    while inputs and inputs[0].lower().endswith(MODEL_EXTENSIONS):  # models first, recognised by extension
        models.append(inputs.pop(0))
    if not models or not inputs:
        raise TinyascError(f"usage: tinyasc predict MODEL... INPUT...: models ({', '.join(MODEL_EXTENSIONS)}) "
                           "first, then audio files, folders or .txt lists")
    if args.out:
        from tinyasc.paths import check_output

        check_output(args.out, force=args.force)
    if args.logits:
        from tinyasc.paths import check_output

        check_output(args.logits, force=args.force, what="--logits")
    files = collect_inputs(inputs)
    if not files:
        raise TinyascError(f"no audio files in {' '.join(inputs)}")
    clf = load(*models, threads=1, device=args.device, backend=args.backend)
    clf.show_long_progress = True  # files over predict.LONG_FILE_SECONDS stream with a progress bar
    if args.relative_to and not args.logits:
        raise TinyascError("--relative-to names the keys of a --logits file; give --logits OUT.npz too")
    device_ids = read_device_ids(args.device_ids, files) if args.device_ids else None
    if device_ids is not None:
        print(f"tinyasc: {check_routing(clf, device_ids, f'--device-ids {args.device_ids}')}", file=sys.stderr)
    _, failed = write_submission(clf, files, args.out, batch_size=args.batch_size, workers=args.workers,
                                 device_ids=device_ids, overwrite=args.force,
                                 logits_out=args.logits, relative_to=args.relative_to,
                                 on_error=lambda m: tqdm.write(f"tinyasc: skipped {m}", file=sys.stderr))
    if failed:
        print(f"tinyasc: {len(failed)} of {len(files)} files failed; wrote the other {len(files) - len(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_make_responses(args):
    from tinyasc.device_response import make_responses
    from tinyasc.paths import check_output

    if args.count < 1:
        raise TinyascError(f"--count must be at least 1, not {args.count}")
    check_output(args.out, kind="dir", force=True)
    paths = make_responses(args.out, args.count, args.seed)
    print(f"wrote {len(paths) if paths else args.count} responses to {args.out}")
    return 0


def cmd_finetune_devices(args):
    from tinyasc.devices import DEVICES_FILE, finetune_devices

    results = finetune_devices(args.checkpoint, args.data, args.out, sets=args.set or (), min_clips=args.min_clips,
                               force=args.force, progress=not args.quiet, cache_dir=args.cache_dir,
                               train_split=args.train_split)
    for device, m in results.items():
        print(f"device {device}: accuracy {100 * m['accuracy']:.1f}%  macro {100 * m['macro_accuracy']:.1f}%  "
              f"on its {m['clips']} evaluate clips")
    print(f"wrote {Path(args.out) / DEVICES_FILE} (the general model + {len(results)} device models)")
    return 0


def _non_finite(value, where="metrics"):
    """The key path of the first NaN or infinity in a JSON value, or None."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, v in items:
        found = _non_finite(v, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
        if found:
            return found
    return None


def cmd_package(args):
    from tinyasc.dcase2025 import write_package

    test_csv = args.test_csv
    if test_csv is None and args.data:  # the development test split: the baselines' split_setup/test.csv, else TAU's
        candidates = [Path(args.data) / "split_setup" / "test.csv", Path(args.data) / "evaluation_setup" / "fold1_evaluate.csv"]
        test_csv = next((c for c in candidates if c.is_file()), None)
        if test_csv is None:
            raise TinyascError(f"--data {args.data}: no split_setup/test.csv or evaluation_setup/fold1_evaluate.csv")
    if test_csv is not None and not Path(test_csv).is_file():
        raise TinyascError(f"--test-csv {test_csv}: no such file")
    for path in write_package(args.checkpoint, args.out, args.label, test_csv, force=args.force,
                              requirement=args.requirement):
        print(f"wrote {path}")
    if args.requirement == "tinyasc":
        print("tinyasc: requirements.txt asks pip for 'tinyasc' by name; where the organisers install the package, "
              "give --requirement 'tinyasc @ git+https://…' (a copy you publish)", file=sys.stderr)
    package = args.label.rsplit("_", 1)[0]
    print(f"check it as the organisers do: pip install -e {args.out}, then in the template's folder "
          f"python test_complexity.py --submission_name {package} --submission_index {args.label.rsplit('_', 1)[1]}")
    return 0


def _read_metrics(path):
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TinyascError(f"--metrics {path}: not a readable metrics.json ({e})") from None
    bad = _non_finite(metrics)
    if bad:
        raise TinyascError(f"--metrics {path}: {bad} is not a finite number; a diverged run's metrics "
                           "cannot go into meta.yaml")
    return metrics


def _submission_complexity(path):
    """The meta.yaml complexity block of a checkpoint by the 2022+ rule: every parameter (zeros included) at
    its deployment storage; 2025: the number of networks at inference (general + device models) and the
    largest one's size (the limits apply per model)."""
    from tinyasc.checkpoint import deploy_storage, device_models, stored_bits
    from tinyasc.complexity import count_macs, count_params
    from tinyasc.rules import param_bytes_all

    _, model, feature_cfg, payload = _load_target(path)
    if payload is None:
        raise TinyascError(f"--model {path}: give the submission's checkpoint, not a preset name")
    storage, bits = deploy_storage(payload), stored_bits(payload)
    models = [model, *device_models(path, model).values()]
    frames = feature_cfg.num_frames(feature_cfg.sample_rate)  # MACs per 1 s of audio, as the 2022+ rules
    return {"total_model_size": int(max(param_bytes_all(m, storage, bits) for m in models)),
            "total_parameters": count_params(model),
            "macs": int(max(count_macs(m, (1, 1, feature_cfg.n_mels, frames)) for m in models)),
            "num_models_at_inference": len(models),
            "model_weight_sharing": False}  # each device model is a full fine-tuned copy


def cmd_submission(args):
    import numpy as np

    from tinyasc.submission import meta, output_table, write_package

    predictions = {}
    for spec in args.predictions:  # FILE or SUBSET=FILE (2024: one output per training subset)
        subset, _, path = spec.rpartition("=")
        try:
            rows = [line.split("\t") for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
        except (OSError, UnicodeDecodeError) as e:
            raise TinyascError(f"--predictions {path}: cannot read ({e})") from None
        if not rows or rows[0][:2] != ["filename", "scene_label"] or any(len(r) != len(rows[0]) for r in rows):
            raise TinyascError(f"--predictions {path}: not a `tinyasc predict` table (filename, scene_label, classes)")
        try:
            probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
        except ValueError:
            raise TinyascError(f"--predictions {path}: a probability is not a number") from None
        if subset and not subset.isdigit():
            raise TinyascError(f"--predictions {spec}: expected FILE or SUBSET=FILE with SUBSET one of 5 10 25 50 100")
        if (int(subset) if subset else None) in predictions:
            raise TinyascError(f"--predictions {spec}: subset {subset or '(none)'} is given twice; give each subset once")
        predictions[int(subset) if subset else None] = output_table([r[0] for r in rows[1:]], probs, rows[0][2:])
    results = {}
    for spec in args.metrics or []:  # 2024: SUBSET=metrics.json per training subset; 2025: one metrics.json
        subset, _, path = spec.rpartition("=")
        m = _read_metrics(path)
        if args.year == 2024:
            if not subset.isdigit():
                raise TinyascError(f"--metrics {spec}: 2024 takes SUBSET=metrics.json, one per training subset")
            results[int(subset)] = m
        else:
            if "general" not in m:  # a single model: its results are both the device-specific and the general ones
                print(f"tinyasc: {path} has no 'general' block (not from `evaluate devices.pt`): its results are "
                      "written as both device_specific and general", file=sys.stderr)
            results = {"device_specific": {k: v for k, v in m.items() if k != "general"}, "general": m.get("general", m)}
    complexity = _submission_complexity(args.model) if args.model else None
    authors = []
    for i, spec in enumerate(args.author):
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) != 4:
            raise TinyascError(f"--author {spec!r}: expected 'LASTNAME,FIRSTNAME,EMAIL,AFFILIATION'")
        authors.append(dict(zip(("lastname", "firstname", "email", "affiliation"), parts), **({"corresponding": True} if i == 0 else {})))
    m = meta(args.label, name=args.name, abbreviation=args.abbreviation, authors=authors, results=results,
             complexity=complexity, year=args.year, source_code=args.source_code or "",
             inference_code=args.inference_code or "")
    for path in write_package(args.out, args.label, predictions, m, force=args.force):
        print(f"wrote {path}")
    if args.year == 2024:
        from tinyasc.submission import EVAL_FILES_2024, output_rows

        for subset, text in predictions.items():
            if output_rows(text) != EVAL_FILES_2024:
                print(f"tinyasc: split {subset}: {output_rows(text)} rows; the 2024 validator expects the "
                      f"{EVAL_FILES_2024:,} evaluation files", file=sys.stderr)
    print(f"the zip's root is {args.out}/ (add the technical report PDF there): "
          f"cd {args.out} && python -m zipfile -c ../submission.zip task1 REPORT.pdf")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tinyasc", description="Low-complexity, device-robust acoustic scene "
                                     "classification (BC-ResNet-ASC + Residual Normalization).")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error "
                        "(also TINYASC_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="parameters, size, MACs and receptive field of a model or checkpoint")
    p.add_argument("target", nargs="?", help="a model name (see `tinyasc models`) or a checkpoint file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--system", action="store_true", help="the process settings instead: allocator, threads, "
                   "OpenMP wait policy, torch version, CPU ISA flags")
    p.add_argument("--seconds", type=clip_seconds, default=10.0, help="clip length for MACs (default 10 s)")
    p.add_argument("--layers", action="store_true", help="per-tensor size breakdown")
    p.add_argument("--rules", choices=["dcase2021", "dcase2022", "dcase2023", "dcase2024", "dcase2025"],
                   help="check a DCASE Task 1 complexity rule set and print PASS/FAIL per limit")
    p.add_argument("--check", action="store_true", help="with --rules: exit 1 when a limit fails")
    p.add_argument("--storage", choices=["fp32", "fp16", "int8", "dcase"],
                   help="with --rules: count parameters at this precision (default: the deployment storage of the "
                        "preset or checkpoint, see `tinyasc models`; dcase = 8-bit conv weights, fp16 rest)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("synth", help="write the synthetic device-shift benchmark in the TAU layout")
    p.add_argument("out", help="output folder (new or empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", default="default", help="'small' (tests) or 'default' (demo)")
    p.add_argument("--clip-seconds", type=float, default=None, help="clip length (default: the scale's); with "
                   "--layout tau2022 the length of each segment before it is cut into snippets (default 10 s)")
    p.add_argument("--layout", choices=["tau2020", "tau2022"], default="tau2020",
                   help="tau2022: 1 s snippets of each segment + nested split5 … split100 training subsets")
    p.add_argument("--snippet-seconds", type=float, default=1.0, help="snippet length of the tau2022 layout")
    p.add_argument("--sample-rate", type=int, default=44100)
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("data-info", help="clips per split × device × class of a TAU-layout folder")
    p.add_argument("root")
    p.add_argument("--no-check", action="store_true", help="do not check that the audio files exist")
    p.set_defaults(func=cmd_data_info)

    def experiment_args(p):
        p.add_argument("--config", help="experiment TOML file (see configs/); default: bc_resnet_asc_1 + paper recipe")
        p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                       help="override a config field, e.g. --set train.epochs=10 --set model.resnorm=none")
        p.add_argument("--data", required=True, help="dataset root in the TAU 2020 / 2022 Mobile layout")
        p.add_argument("--train-split", metavar="NAME", help="train on a training subset: split5 … split100 "
                       "(evaluation_setup/NAME.csv or split_setup/NAME.csv) or a filename<TAB>scene_label file")
        p.add_argument("--cache-dir", help="feature cache folder (default: DATA/.tinyasc_cache)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run_args(p):
        p.add_argument("--seed", type=int)
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from last.pt")
        p.add_argument("--force", action="store_true", help="start over in a folder that holds a run")

    p = sub.add_parser("train", help="train one model (one seed)")
    experiment_args(p)
    p.add_argument("--out", required=True, help="run folder: config, metrics.jsonl, last.pt, best.pt, results.json")
    run_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train and evaluate one config over several seeds (resumable)")
    experiment_args(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="folder for seed<N> runs (default runs/NAME)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("evaluate", help="per-device metrics of a checkpoint, or an ensemble of several")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="evaluate", choices=["train", "evaluate"])
    p.add_argument("--out", help="folder for metrics.json, table.md, confusion.png")
    p.add_argument("--force", action="store_true", help="overwrite those files in --out")
    p.add_argument("--cache-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compress", help="prune + 8-bit QAT (+ knowledge distillation) a trained checkpoint (Table 4)")
    p.add_argument("teacher", help="trained float checkpoint (the 'Vanilla' model); the student starts as its copy")
    experiment_args(p)
    p.add_argument("--out", required=True, help="run folder: fit's files + compress.json, compressed.pt, compressed_best.pt")
    p.add_argument("--prune", type=float, help="fraction of conv weights pruned (default 0.89)")
    p.add_argument("--bits", type=int, help="conv weight bits, 0 = no quantization (default 8)")
    p.add_argument("--per-channel", action="store_true", default=None, help="one scale per output channel")
    p.add_argument("--distill", action="store_true", default=None, help="knowledge distillation from the teacher")
    p.add_argument("--kd-alpha", type=float, help="weight of the distillation term (default 0.5)")
    p.add_argument("--kd-temperature", type=float, help="softmax temperature T (default 2)")
    p.add_argument("--kd-teacher", action="append", metavar="CKPT", help="teach with this checkpoint instead "
                   "(repeat for an ensemble)")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (default: a quarter of the teacher's)")
    run_args(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("report", help="aggregate runs into the Table 3 layout (mean ± std over seeds)")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding them")
    p.add_argument("--out", help="write the markdown here (and the numbers as .json beside it)")
    p.add_argument("--force", action="store_true", help="overwrite --out and its .json")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the main job: synthetic benchmark, BC-ResNet-ASC-1 with/without ResNorm")
    p.add_argument("--data", default="data/synthetic", help="benchmark folder (generated if missing)")
    p.add_argument("--out", default="reports/demo", help="report folder")
    p.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("figure", help="paper figures: `figure tsne CKPT` (Figure 1)")
    p.add_argument("kind", choices=["tsne"])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="tsne.png")
    p.add_argument("--split", default="train", choices=["train", "evaluate"])
    p.add_argument("--per-device", type=int, default=150, help="clips per device (balances device A; at least 2)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--cache-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_figure)
    p = sub.add_parser("export", help="export a checkpoint's network to ONNX (float or int8) + sidecar JSON, "
                       "or (--format c) to a self-contained C99 library with the log-mel front end")
    p.add_argument("checkpoint")
    p.add_argument("--format", choices=["onnx", "c"], default="onnx",
                   help="c: a folder of C99 sources (docs/microcontroller.md)")
    p.add_argument("--int8", action="store_true", help="int8 convolution weights: a compressed checkpoint's own QAT codes and scales, or static quantization of a float checkpoint calibrated on --calibrate DIR")
    p.add_argument("--calibrate", metavar="DIR", help="folder of audio files for int8 activation ranges")
    p.add_argument("--device-model", metavar="ID", help="a devices.pt (finetune-devices): the model to export, "
                   "'general' or a device id (one ONNX file per model)")
    p.add_argument("--out", required=True, help="model.onnx (the sidecar is written as model.onnx.json); "
                   "a folder for --format c")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("finetune-devices", help="DCASE 2025: fine-tune a trained model per training device into "
                       "one checkpoint (unknown devices fall back to the general model)")
    p.add_argument("checkpoint", help="the trained general model (float checkpoint)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="folder: one run per device + devices.pt")
    p.add_argument("--set", action="append", metavar="train.FIELD=VALUE", help="fine-tuning recipe (default 10 epochs, "
                   "lr 0.005, no warm-up)")
    p.add_argument("--train-split", metavar="NAME", help="fine-tune on this training subset (default: the one the "
                   "general model was trained on, e.g. split25)")
    p.add_argument("--min-clips", type=positive_int, default=32, help="devices with fewer training clips keep the "
                   "general model")
    p.add_argument("--cache-dir")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_finetune_devices)

    p = sub.add_parser("make-responses", help="write a seeded family of random device impulse responses (WAV) "
                       "for train.dir_folder: smooth random EQ + short decaying tail, independent of the benchmark")
    p.add_argument("out", help="output folder")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_responses)

    p = sub.add_parser("submission", help="DCASE 2024/2025 Task 1 submission files (LABEL.output.csv + LABEL.meta.yaml)")
    p.add_argument("--label", required=True, help="submission label LASTNAME_INSTITUTE_task1_N (N = 1…4)")
    p.add_argument("--predictions", required=True, action="append", metavar="[SUBSET=]FILE",
                   help="a `tinyasc predict` table of the evaluation set; SUBSET=FILE (5, 10, 25, 50, 100) writes "
                   "LABEL.output.split_SUBSET.csv (2024); repeat per subset")
    p.add_argument("--year", type=int, choices=[2024, 2025], default=2025, help="the challenge year whose meta.yaml "
                   "and file names to write (default 2025)")
    p.add_argument("--metrics", action="append", metavar="[SUBSET=]FILE",
                   help="`tinyasc evaluate --out` metrics.json of the development test split: 2024 SUBSET=FILE for "
                   "each of 5 10 25 50 100; 2025 one file from `evaluate devices.pt` (device-specific + general)")
    p.add_argument("--model", help="the checkpoint (required), for the complexity block (parameters, size by "
                   "the 2022+ rule at its deployment storage, MACs per 1 s; 2025: models at inference)")
    p.add_argument("--source-code", help="link to the training code (system.source_code)")
    p.add_argument("--inference-code", help="2025: link to the inference package (`tinyasc package`), required")
    p.add_argument("--name", required=True, help="system name")
    p.add_argument("--abbreviation", required=True, help="system abbreviation (≤ 10 characters)")
    p.add_argument("--author", required=True, action="append", metavar="LAST,FIRST,EMAIL,AFFILIATION",
                   help="repeat per author; the first is the corresponding author")
    p.add_argument("--out", default="submission", help="root of the submission zip; files go to "
                   "OUT/task1/LABEL/")
    p.add_argument("--force", action="store_true", help="overwrite existing submission files")
    p.set_defaults(func=cmd_submission)

    p = sub.add_parser("package", help="DCASE 2025: the installable inference package the organisers' template "
                       "imports (PACKAGE/LABEL.py, resources/, ckpts/, setup.py)")
    p.add_argument("checkpoint", help="the submission's checkpoint (devices.pt from finetune-devices, or one model)")
    p.add_argument("--label", required=True, help="LASTNAME_INSTITUTE_task1_N: module LABEL.py in package "
                   "LASTNAME_INSTITUTE_task1 (up to four modules share one package folder)")
    p.add_argument("--out", required=True, help="package folder (setup.py goes here)")
    p.add_argument("--test-csv", help="resources/test.csv: the development test split (filename<TAB>scene_label)")
    p.add_argument("--data", help="take resources/test.csv from this dataset root (split_setup/test.csv, else "
                   "evaluation_setup/fold1_evaluate.csv)")
    p.add_argument("--requirement", default="tinyasc", help="requirements.txt's line for tinyasc: how pip finds it "
                   "where the organisers install the package, e.g. 'tinyasc @ git+https://github.com/you/tinyasc' "
                   "(default: 'tinyasc')")
    p.add_argument("--force", action="store_true", help="overwrite this module and its checkpoint")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("stream", help="classify an endless 16-bit mono PCM stream at the model's rate, one line per "
                       "window (e.g. ffmpeg -i IN -f s16le -ar 16000 -ac 1 - | tinyasc stream MODEL -)")
    p.add_argument("model", help="a checkpoint or an exported .onnx (with sidecar)")
    p.add_argument("input", help="- for standard input, or a raw s16le file")
    p.add_argument("--smooth", type=positive_int, default=1, help="average the probabilities of the last N windows")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("predict", help="DCASE Task 1 submission table (TSV) for audio files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="MODEL... INPUT...: one or more models (.pt/.pth/.ckpt "
                   "checkpoints or .onnx with sidecar; several = ensemble), then audio files, folders or .txt lists")
    p.add_argument("--out", help="output file (default stdout); written atomically")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--logits", metavar="OUT.npz", help="also write a teacher-logits file for distillation "
                   "(train.teacher_logits): file names + log-probabilities + class order")
    p.add_argument("--device-ids", metavar="CSV", help="recording device per file (a CSV/TSV with filename and device "
                   "or source_label columns, e.g. TAU's meta.csv): device-specific models route by it (DCASE 2025)")
    p.add_argument("--relative-to", metavar="DATA", help="key the --logits file by names relative to this dataset "
                   "root (as in its CSVs, e.g. audio/x.wav)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="files per worker chunk (default 16)")
    p.add_argument("--workers", type=positive_int, help="parallel worker threads (default: one per core)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto",
                   help="how checkpoints run: auto = ONNX Runtime on CPU (3-4x faster), PyTorch on CUDA")
    p.set_defaults(func=cmd_predict)
    for p in sub.choices.values():  # `tinyasc train … --debug` as well as `tinyasc --debug train …`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


# the arguments that name a command's inputs, quoted when an unexpected error has to say what failed
INPUT_ARGS = ("target", "config", "teacher", "checkpoint", "checkpoints", "data", "train_split", "paths", "runs",
              "root", "predictions", "metrics", "model", "out")


def _inputs(args):
    """'--config x.toml --data DATA' : the inputs a command was given, for an unexpected error's line."""
    parts = []
    for name in INPUT_ARGS:
        value = getattr(args, name, None)
        if value:
            value = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(value if name in ("target", "checkpoint", "checkpoints", "teacher", "paths", "runs", "root")
                         else f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def _unexpected(command, args, e):
    """One line for an exception tinyasc did not foresee: the command, its inputs, the error, and how to
    see the traceback. A full disk or a refused write is said plainly, with the file."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {e.filename}" if e.filename else ""
        return f"{command}: disk full{where}; free space and rerun (runs continue with --resume)"
    if isinstance(e, OSError) and e.filename:
        return f"{command}: {e.filename}: {e.strerror or e}"
    detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    inputs = _inputs(args)
    return (f"{command} failed{' on ' + inputs if inputs else ''}: {type(e).__name__}"
            f"{': ' + detail if detail else ''} (rerun with --debug or TINYASC_DEBUG=1 for the traceback)")


def main(argv=None):
    import os

    from tinyasc.system import setup

    try:
        setup(reexec=argv is None)  # before torch loads; from the command line, re-exec once with tcmalloc
    except TinyascError as e:
        print(f"tinyasc: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TINYASC_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except TinyascError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"tinyasc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyasc: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the one edge: whatever escaped the checks is one line, never a traceback
        if debug:
            import traceback

            traceback.print_exc()
        print(f"tinyasc: error: {_unexpected(args.command, args, e)}", file=sys.stderr)
        return 1

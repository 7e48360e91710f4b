"""The `tinyasc` command: one subcommand per job. Nothing imports this module."""
import argparse
import json
import sys
from pathlib import Path

from tinyasc.errors import TinyascError


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

    label, model, feature_cfg, payload = _load_target(args.target)
    frames = feature_cfg.num_frames(int(args.seconds * feature_cfg.sample_rate))
    info = complexity(model, (1, 1, feature_cfg.n_mels, frames))
    info["model"] = label
    if hasattr(model, "resnorm_lambdas"):
        info["resnorm_lambdas"] = model.resnorm_lambdas()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
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
        report = size_report(model)
        print(f"{'tensor':48s} {'shape':>18s} {'nonzero':>9s} {'bits':>4s} {'bytes':>9s}")
        for row in report["rows"]:
            print(f"{row['name']:48s} {str(tuple(row['shape'])):>18s} {row['nonzero']:>9,} {row['bits']:>4} {row['bytes']:>9.0f}")
        for bits, group in sorted(report["by_bits"].items()):
            print(f"  {bits:>2}-bit: {group['nonzero']:,} non-zero, {_kb(group['bytes'])}")
    return 0


def cmd_models(args):
    from tinyasc.complexity import count_params
    from tinyasc.models import MODELS, create_model

    for name in sorted(MODELS):
        print(f"{name:20s} {count_params(create_model(name)):>10,} params  {MODELS[name][2]}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tinyasc", description="Low-complexity, device-robust acoustic scene "
                                     "classification (BC-ResNet-ASC + Residual Normalization).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="parameters, size, MACs and receptive field of a model or checkpoint")
    p.add_argument("target", help="a model name (see `tinyasc models`) or a checkpoint file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length for MACs (default 10 s)")
    p.add_argument("--layers", action="store_true", help="per-tensor size breakdown")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TinyascError as e:
        print(f"tinyasc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyasc: interrupted", file=sys.stderr)
        return 130

"""DCASE Task 1 complexity rules with PASS/FAIL.

- dcase2021: Σ non-zero parameters × bytes at stored precision ≤ 128 KB (131,072 B).
- dcase2022, dcase2023, dcase2024, dcase2025: every parameter counted (zeros included) at the bytes of
  its stored dtype ≤ 128,000 B (128 K int8 parameters in 2022), and MACs per 1 s of audio ≤ 30 M.
  dcase2025 applies the same limits to each device-specific model (`check_rules` on each one).

`check_rules(model, rule_set, clip_seconds, ...)` is what train/compress call at the end."""

from tinyasc.complexity import count_macs, count_nonzero, count_params, size_bytes, stored_bits
from tinyasc.errors import TinyascError

KB_2021 = 128 * 1024
BYTES_2022 = 128_000
MACS_PER_SECOND = 30_000_000

RULE_SETS = {
    "dcase2021": "non-zero params × bytes at stored precision ≤ 128 KB (131,072 B)",
    "dcase2022": "all params × bytes of stored dtype ≤ 128,000 B; MACs per 1 s ≤ 30 M",
    "dcase2023": "all params × bytes of stored dtype ≤ 128,000 B; MACs per 1 s ≤ 30 M",
    "dcase2024": "all params × bytes of stored dtype ≤ 128,000 B; MACs per 1 s ≤ 30 M",
    "dcase2025": "per device-specific model: all params × bytes of stored dtype ≤ 128,000 B; MACs per 1 s ≤ 30 M",
}


def param_bytes_all(model, scheme=None, bits=None):
    """Σ over parameters of numel × stored bytes (zeros included); `bits`: a compressed model's stored
    widths ({parameter name: bits}, checkpoint.stored_bits)."""
    total = 0.0
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}".lstrip(".")
            total += p.numel() * stored_bits(module, name, p, scheme, bits, full) / 8
    return total


def check_rules(model, rule_set, clip_seconds=1.0, input_shape=None, n_mels=None, frames_per_second=None,
                scheme=None, bits=None):
    """Check `model` against `rule_set`. MACs are measured on an input of 1 s (`input_shape` is the
    (1, 1, n_mels, frames) for 1 s; else built from n_mels and frames_per_second) and reported for the
    training clip length too. `scheme` overrides the stored precision (see complexity.SCHEMES).
    Returns {"rule_set", "limits": [{"name", "limit", "value", "unit", "pass"}], "pass", ...}."""
    if rule_set not in RULE_SETS:
        raise TinyascError(f"unknown rule set {rule_set!r}; available: {', '.join(RULE_SETS)}")
    if input_shape is None:
        if n_mels is None or frames_per_second is None:
            raise TinyascError("check_rules needs input_shape or n_mels and frames_per_second")
        input_shape = (1, 1, n_mels, frames_per_second)
    macs_1s = count_macs(model, input_shape)
    report = {"rule_set": rule_set, "description": RULE_SETS[rule_set], "params": count_params(model),
              "nonzero_params": count_nonzero(model), "macs_per_second": macs_1s,
              "clip_seconds": clip_seconds, "macs_per_clip": macs_1s * clip_seconds, "limits": [],
              "storage": scheme or ("compressed (int8 + fp16)" if bits else "as stored")}
    if rule_set == "dcase2021":
        value = size_bytes(model, scheme, bits)
        report["limits"].append({"name": "non-zero parameter memory", "limit": KB_2021, "value": value,
                                 "unit": "B", "pass": value <= KB_2021})
    else:
        value = param_bytes_all(model, scheme, bits)
        report["limits"].append({"name": "parameter memory (all params)", "limit": BYTES_2022, "value": value,
                                 "unit": "B", "pass": value <= BYTES_2022})
        report["limits"].append({"name": "MACs per 1 s of audio", "limit": MACS_PER_SECOND, "value": macs_1s,
                                 "unit": "MACs", "pass": macs_1s <= MACS_PER_SECOND})
    report["pass"] = all(lim["pass"] for lim in report["limits"])
    return report


def format_report(report):
    lines = [f"rules {report['rule_set']}: {report['description']}; parameters counted at "
             f"{report.get('storage', 'as stored')}"]
    for lim in report["limits"]:
        lines.append(f"  {lim['name']:32s} limit {lim['limit']:>14,.0f} {lim['unit']:4s} measured "
                     f"{lim['value']:>14,.0f}  {'PASS' if lim['pass'] else 'FAIL'}")
    lines.append(f"  overall: {'PASS' if report['pass'] else 'FAIL'}")
    return "\n".join(lines)


# The storage each preset is deployed at (others: fp32), one of complexity.SCHEMES. Training's rule check,
# `info --rules`, dcase2025.check_complexity, `submission` and `predict` all read it from here (through
# checkpoint.deploy_storage for a trained model). "dcase" = 8-bit conv weights (symmetric, per tensor)
# + fp16 norm affines and biases: BC-ResNet-ASC puts a norm after almost every conv, and all-int8 norms are
# not a realistic deployment, so the int8 preset's width is chosen to fit with fp16 norms (c = 47: 123,569 B).
PRESET_STORAGE = {"bc_resnet_asc_dcase2024_fp16": "fp16", "bc_resnet_asc_dcase2024_int8": "dcase"}


def preset_storage(name):
    return PRESET_STORAGE.get(name, "fp32")


def passing_rule_sets(model, scheme=None, n_mels=None, frames_per_second=None):
    """Names of the rule sets `model` passes at storage `scheme` (default: the preset's storage if the
    model is a registered preset, else as stored), MACs on 1 s of the default features."""
    from tinyasc.features import FeatureConfig

    cfg = FeatureConfig(n_mels=n_mels or model.cfg.n_mels)
    frames = frames_per_second or cfg.num_frames(cfg.sample_rate)
    return [name for name in RULE_SETS
            if check_rules(model, name, input_shape=(1, 1, cfg.n_mels, frames), scheme=scheme)["pass"]]


def check_all(model, feature_cfg, clip_seconds, bits=None, scheme=None):
    """{rule set: check_rules report} of a trained model at its deployment storage (`scheme`, e.g. the
    preset's, see PRESET_STORAGE; `bits`: a compressed model's stored widths), with MACs measured on 1 s of
    audio at its feature config: what train and compress record in results.json."""
    one_second = (1, 1, feature_cfg.n_mels, feature_cfg.num_frames(feature_cfg.sample_rate))
    return {name: check_rules(model, name, clip_seconds=clip_seconds, input_shape=one_second, bits=bits,
                              scheme=scheme) for name in RULE_SETS}

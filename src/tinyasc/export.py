"""ONNX export of the network alone (the §3.1 front end stays outside): float, checked against PyTorch
at export time, and int8 — ONNX Runtime static quantization (QDQ, calibrated on audio features) for a
float checkpoint, the checkpoint's own QAT codes and scales for a compressed one.

`model.onnx` takes `features` (B, 1, F, T) log-mel with dynamic B and T and returns `logits`
(B, classes). Its sidecar `model.onnx.json` (the file name + ".json") holds the feature config,
class list, clip length, precision, size and the source checkpoint's sha256; `tinyasc predict`
and `tinyasc.load` need it. The exporter (eval mode) folds every Conv→BatchNorm pair into the conv;
the SubSpectralNorm BNs stay (their per-sub-band statistics act on a reshaped tensor, which no conv
weight can absorb). The int8 export of a compressed checkpoint folds nothing (see `qat_int8`).
"""
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tinyasc.audio import collect_inputs, load_windows
from tinyasc.checkpoint import atomic_write, load_checkpoint, pick_device_model
from tinyasc.errors import TinyascError
from tinyasc.frontend import make_frontend
from tinyasc.onnxmodel import (
    ONNX_INPUT,
    ONNX_OUTPUT,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    onnx_bytes,
    ort_session,
    sha256_file,
    sidecar_path,
)
from tinyasc.predict import FRONTEND_CHUNK, clip_seconds_of

TOLERANCE = 1e-3  # max |logit difference| allowed between ONNX Runtime fp32 and PyTorch
QAT_TOLERANCE = 1e-4  # the same for a compressed checkpoint's int8 weights, relative to max |logit|
CALIBRATION_WINDOWS = 64  # windows of calibration audio (more rarely moves min-max ranges)


def op_counts(model_bytes_or_path):
    import onnx

    source = model_bytes_or_path
    m = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
    return Counter(n.op_type for n in m.graph.node)


def logits_pair(session, model, features):
    """(ONNX Runtime logits, PyTorch logits) for features (B, 1, F, T)."""
    with torch.inference_mode():
        expected = model(torch.from_numpy(features)).numpy()
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: features})[0], expected


# ---------------------------------------------------------------------------------------------
# int8

class FeatureReader:
    """onnxruntime.quantization CalibrationDataReader over a (N, 1, F, T) feature array."""

    def __init__(self, features, batch_size=8):
        self.batches = iter([features[i:i + batch_size] for i in range(0, len(features), batch_size)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {ONNX_INPUT: batch}


def quantize_int8(float_path, out_path, calibration, per_channel=True, optimize=True):
    """Static int8 quantization (QDQ format) of every Conv of `float_path`, activation ranges by
    min-max over `calibration` features (N, 1, F, T). Weights: symmetric int8 per output channel
    (zero point 0, so a pruned 0.0 stays exactly 0); activations: asymmetric uint8 (u8s8 is MLAS's
    main x86 path). Only convs: every other op of BC-ResNet (norms, SiLU, means, adds) stays float,
    as int8 there only adds Quantize/Dequantize passes. Conv weights that already come from a
    DequantizeLinear (a QAT graph, `qat_int8`) are left as they are; for those pass optimize=False, as
    the pre-processing optimisations include Conv→BN folding."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_path), str(pre), skip_optimization=not optimize, skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), FeatureReader(calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, extra_options={"WeightSymmetric": True})
        m = onnx.load(str(out))
        del m.graph.value_info[:]  # shape annotations from pre-processing: ~25 KB, not needed to run
        data = m.SerializeToString()
    atomic_write(out_path, lambda tmp: Path(tmp).write_bytes(data))


def int8_weight_check(float_path, int8_path):
    """(conv weights stored as int8, zeros of the float weights that are not 0 in int8). The second
    must be 0: symmetric quantization maps 0.0 → 0 whatever the scale."""
    import onnx
    from onnx import numpy_helper

    floats = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(float_path)).graph.initializer}
    ints = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(int8_path)).graph.initializer}
    quantized, broken = 0, 0
    for name, w in floats.items():
        q = ints.get(f"{name}_quantized")  # the QDQ quantizer's name for a quantized initializer
        if q is None or q.dtype != np.int8:
            continue
        zero_point = ints.get(f"{name}_zero_point")
        if zero_point is not None and np.any(zero_point != 0):
            raise TinyascError(f"int8 weight {name} has a non-zero zero point")
        quantized += 1
        broken += int(np.count_nonzero(q[w == 0]))
    return quantized, broken


def calibrated_int8(float_bytes, model, features, calibrate, log):
    """(int8 ONNX bytes, report) of a float checkpoint: `quantize_int8` calibrated on `features`."""
    with tempfile.TemporaryDirectory() as tmp:
        float_path, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        float_path.write_bytes(float_bytes)
        quantize_int8(float_path, int8_path, features)
        quantized, broken = int8_weight_check(float_path, int8_path)
        if quantized == 0:
            raise TinyascError("int8 quantization produced no int8 weights")
        if broken:
            raise TinyascError(f"int8 quantization turned {broken} zero weights into non-zeros")
        got, expected = logits_pair(ort_session(int8_path), model, features)
        data = int8_path.read_bytes()
    agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
    diff = float(np.abs(got - expected).max())
    log(f"int8: {quantized} conv weights int8 (pruned zeros stay 0); vs PyTorch on {len(features)} "
        f"calibration windows: top-1 agreement {agree:.1%}, max |logit difference| {diff:.3g}")
    return data, {"precision": "int8", "int8_conv_weights": quantized, "calibration_windows": len(features),
                  "calibration_folder": str(calibrate), "top1_agreement_vs_torch": agree,
                  "max_abs_logit_diff_int8_vs_torch": diff,
                  "quantization": "ONNX Runtime static QDQ: Conv only, int8 symmetric per-channel weights, "
                                  "uint8 activations, min-max calibration"}


# ---------------------------------------------------------------------------------------------
# int8 of a compressed (QAT) checkpoint: its own codes and scales, no calibration

def checkpoint_int8_scales(payload):
    """{conv weight key: (int8 codes, float32 scale)} of a compressed checkpoint (codes in the state
    dict, scales 0-d or (O, 1, 1, 1) in payload["quantization"]["scales"], tinyasc.compress.quantize),
    or None when it has no int8 weights (a float checkpoint, or a pruned + fp16 one): int8 export
    then calibrates like any float model."""
    stored = payload.get("quantization") or {}
    if not stored.get("scales"):
        return None
    if stored.get("symmetric") is not True:
        raise TinyascError("only symmetric (zero point 0) int8 checkpoints can be exported with their own scales")
    weights = {}
    for key, scale in stored["scales"].items():
        codes = payload["state_dict"].get(key)
        if (codes is None or codes.dtype != torch.int8 or codes.dim() != 4
                or tuple(scale.shape) not in ((), (codes.shape[0], 1, 1, 1))):
            raise TinyascError(f"{key}: not int8 conv codes with a per-tensor or per-output-channel scale")
        weights[key] = (codes.numpy(), scale.float().numpy())
    return weights


def int8_weight_graph(float_bytes, weights):
    """`float_bytes` (exported with fold_bn=False, so its conv weight initializers carry the state
    dict's names and values) with each weight of `weights` replaced by int8 initializer
    `{key}_quantized` (the codes) → DequantizeLinear(`{key}_scale`, `{key}_zero_point` = 0, axis 0 when
    per channel) → the same tensor name, so every Conv reads it unchanged. Returns the model's bytes."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(float_bytes)
    missing = set(weights) - {t.name for t in m.graph.initializer}
    if missing:
        raise TinyascError(f"exported graph has no initializer for the int8 weights {sorted(missing)[:3]}")
    initializers = [t for t in m.graph.initializer if t.name not in weights]
    dequantize = []
    for key, (codes, scale) in weights.items():
        per_channel = scale.ndim > 0
        scale = scale.reshape(-1) if per_channel else scale  # DequantizeLinear: 1-D scale along `axis`
        initializers += [numpy_helper.from_array(codes, f"{key}_quantized"),
                         numpy_helper.from_array(scale, f"{key}_scale"),
                         numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{key}_zero_point")]
        dequantize.append(helper.make_node("DequantizeLinear", [f"{key}_quantized", f"{key}_scale", f"{key}_zero_point"],
                                           [key], name=f"{key}_DequantizeLinear", **({"axis": 0} if per_channel else {})))
    nodes = dequantize + list(m.graph.node)  # they read initializers only: first is topological order
    del m.graph.initializer[:], m.graph.node[:]
    m.graph.initializer.extend(initializers)
    m.graph.node.extend(nodes)
    return m.SerializeToString()


def stored_weight_check(onnx_path, weights, model):
    """Raise unless every weight of `weights` is, in `onnx_path`, the checkpoint's int8 codes with its
    scale and zero point 0, dequantized straight into a Conv, and codes × scale is exactly `model`'s
    (the PyTorch model loaded from the checkpoint) weight. Returns (weights checked, zero codes)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    dequantized = {n.input[0]: n for n in m.graph.node if n.op_type == "DequantizeLinear"}
    conv_weights = {n.input[1] for n in m.graph.node if n.op_type == "Conv"}
    state = model.state_dict()
    for key, (codes, scale) in weights.items():
        node = dequantized.get(f"{key}_quantized")
        ok = (node is not None and node.output[0] in conv_weights and len(node.input) == 3
              and np.array_equal(inits.get(node.input[0]), codes)
              and np.array_equal(inits.get(node.input[1]), scale.reshape(-1) if scale.ndim else scale)
              and not np.any(inits.get(node.input[2], 1))
              and np.array_equal(codes.astype(np.float32) * scale, state[key].numpy()))
        if not ok:
            raise TinyascError(f"int8 graph: {key} is not the checkpoint's int8 codes × its scale")
    return len(weights), sum(int(np.sum(codes == 0)) for codes, _ in weights.values())


def qat_int8(float_bytes, weights, model, features, calibrate, log):
    """(int8 ONNX bytes, report) of a compressed checkpoint: each quantized conv weight is its stored
    int8 codes → DequantizeLinear with its stored scale (per tensor or per channel, zero point 0), so
    pruned zeros stay exactly 0 and the dequantized weights are exactly the PyTorch model's.

    No Conv→BN folding: it would scale each output channel by γ/σ, moving the weights off their int8
    grid (or, folded into the scales, replacing the stored per-tensor scale by per-channel ones);
    those BNs (14 in BC-ResNet-ASC) stay as float ops instead, a per-channel affine at run time. Activations stay float (weight-only int8, what QAT trained:
    the logits then match PyTorch to float rounding) unless `calibrate` is given; then uint8 activation
    QDQ is added around the convs by min-max calibration on `features`, as for a float checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "int8.onnx"
        path.write_bytes(int8_weight_graph(float_bytes, weights))
        if calibrate is not None:
            quantize_int8(path, path, features, optimize=False)
        quantized, zeros = stored_weight_check(path, weights, model)
        session = ort_session(path)
        check = features[:8]
        short = np.ascontiguousarray(check[:2, :, :, : max(16, check.shape[-1] // 3)])
        pairs = [logits_pair(session, model, x) for x in (check, short)]
        data = path.read_bytes()
    got, expected = (np.concatenate(a) for a in zip(*pairs))
    diff = float(np.abs(got - expected).max())
    agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
    activations = "uint8, min-max calibration" if calibrate is not None else "float"
    log(f"int8 (checkpoint's own codes and scales): {quantized} conv weights, {zeros:,} zero codes; activations "
        f"{activations}; vs PyTorch on {len(got)} inputs: top-1 agreement {agree:.1%}, max |logit difference| {diff:.3g}")
    if calibrate is None:
        # float activations: only rounding differs, so the logits must agree; a top-1 flip is allowed
        # only where PyTorch's two best logits are within the difference (a tie)
        top2 = np.sort(expected, axis=1)[:, -2:]
        flips = (got.argmax(1) != expected.argmax(1)) & (top2[:, 1] - top2[:, 0] > 2 * diff)
        limit = QAT_TOLERANCE * max(1.0, float(np.abs(expected).max()))
        if not diff <= limit or flips.any():
            raise TinyascError(f"int8 graph disagrees with the compressed PyTorch model: max |logit difference| "
                               f"{diff:.3g} (limit {limit:.3g}), {int(flips.sum())} top-1 changes")
    report = {"precision": "int8", "int8_conv_weights": quantized, "int8_zero_codes": zeros,
              "top1_agreement_vs_torch": agree, "max_abs_logit_diff_int8_vs_torch": diff,
              "quantization": "the checkpoint's QAT int8 weights: stored codes and scales (symmetric, "
                              f"{'per-channel' if any(s.ndim for _, s in weights.values()) else 'per-tensor'}) "
                              f"→ DequantizeLinear → Conv, BatchNorms not folded, activations {activations}"}
    if calibrate is not None:
        report.update(calibration_windows=len(features), calibration_folder=str(calibrate))
    return data, report


def parameter_bytes(onnx_path):
    """{"by_dtype": {dtype: [non-zero elements, bytes]}, "total": bytes} over the initializers. int64
    ones (shapes, axes) are bookkeeping, not parameters; quantization scales count as float32."""
    import onnx
    from onnx import numpy_helper

    table = {}
    for t in onnx.load(str(onnx_path)).graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.int64:
            continue
        row = table.setdefault(str(a.dtype), [0, 0])
        nonzero = int(np.count_nonzero(a))
        row[0] += nonzero
        row[1] += nonzero * a.dtype.itemsize
    return {"by_dtype": table, "total": sum(b for _, b in table.values())}


def calibration_features(folder, feature_cfg, clip_seconds, max_windows=CALIBRATION_WINDOWS):
    """(N, 1, F, T) features of the first windows of the audio files under `folder`. Unreadable files
    are skipped; none readable is an error."""
    from tqdm.auto import tqdm

    windows = []
    bar = tqdm(total=max_windows, unit="window", desc="int8 calibration", leave=False, dynamic_ncols=True)
    for path in collect_inputs([folder]):
        try:
            windows.append(load_windows(path, feature_cfg.sample_rate, clip_seconds)[0])
            bar.update(len(windows[-1]))
        except TinyascError:
            continue
        if sum(len(w) for w in windows) >= max_windows:
            break
    bar.close()
    if not windows:
        raise TinyascError(f"{folder}: no readable audio files to calibrate on")
    windows = np.concatenate(windows)[:max_windows]
    frontend = make_frontend(feature_cfg)
    with torch.inference_mode():
        chunks = [frontend(torch.from_numpy(windows[i:i + FRONTEND_CHUNK])) for i in range(0, len(windows), FRONTEND_CHUNK)]
    return torch.cat(chunks).numpy()


# ---------------------------------------------------------------------------------------------
# The whole export

def export(checkpoint, out, int8=False, calibrate=None, tolerance=TOLERANCE, log=print, device_model=None):
    """Export `checkpoint` to ONNX at `out` (+ sidecar). int8 of a float checkpoint needs `calibrate`,
    a folder of audio files whose features set the activation ranges; a compressed checkpoint brings
    its own int8 weights (`qat_int8`), and `calibrate` then adds int8 activations. A devices.pt needs
    `device_model` ("general" or a device id). Nothing reaches `out` before the checks pass. Returns the
    sidecar dict."""
    out = Path(out)
    model, feature_cfg, classes, payload = load_checkpoint(checkpoint)
    model = pick_device_model(checkpoint, model, payload, device_model)
    clip_seconds = clip_seconds_of(payload)
    frames = feature_cfg.num_frames(int(round(clip_seconds * feature_cfg.sample_rate)))
    weights = checkpoint_int8_scales(payload) if int8 else None
    if int8 and weights is None and calibrate is None:
        raise TinyascError("--int8 on a float checkpoint needs calibration audio: pass --calibrate DIR "
                           "(any folder of audio files, e.g. a few hundred training clips)")
    if calibrate is not None:
        features = calibration_features(calibrate, feature_cfg, clip_seconds)
    else:  # log-mel-like values; ResNorm normalises the input, so the scale matters little
        features = (np.random.default_rng(0).standard_normal((4, 1, feature_cfg.n_mels, frames)) * 3 - 8).astype(np.float32)

    float_bytes = onnx_bytes(model, torch.from_numpy(features[:1]), fold_bn=weights is None)
    ops = op_counts(float_bytes)
    session = ort_session(float_bytes)
    check = features[:8]
    short = np.ascontiguousarray(check[:2, :, :, : max(16, frames // 3)])  # a second length: T is dynamic
    diff = max(float(np.abs(np.subtract(*logits_pair(session, model, x))).max()) for x in (check, short))
    log(f"ONNX Runtime fp32 vs PyTorch: max |logit difference| {diff:.2e} "
        f"({len(check)} + {len(short)} inputs, tolerance {tolerance:g})")
    if not diff <= tolerance:
        raise TinyascError(f"exported graph disagrees with PyTorch: max |logit difference| {diff:.3g} > {tolerance:g}")
    report = {"precision": "fp32", "max_abs_logit_diff_vs_torch": diff,
              "batchnorm_left": ops.get("BatchNormalization", 0), "conv_count": ops.get("Conv", 0)}

    data = float_bytes
    if int8:
        data, int8_report = (qat_int8(float_bytes, weights, model, features, calibrate, log) if weights is not None
                             else calibrated_int8(float_bytes, model, features, calibrate, log))
        report.update(int8_report)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))

    params = parameter_bytes(out)
    report.update(file_bytes=out.stat().st_size, nonzero_param_bytes=params["total"],
                  nonzero_params_by_dtype=params["by_dtype"])
    sidecar = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "input": ONNX_INPUT, "output": ONNX_OUTPUT,
               "arch": payload["arch"], "model_config": payload["model_config"],
               "feature_config": feature_cfg.to_dict(), "classes": list(classes), "clip_seconds": clip_seconds,
               "source_checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint),
                                     **({"device_model": device_model} if device_model else {})},
               "onnx_sha256": sha256_file(out), **report}
    atomic_write(sidecar_path(out), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2) + "\n"))
    log(f"wrote {out}: {out.stat().st_size / 1024:.1f} KB file, {params['total'] / 1024:.1f} KB non-zero parameters "
        f"({', '.join(f'{k} {v[0]:,}' for k, v in params['by_dtype'].items())}); sidecar {sidecar_path(out).name}")
    return sidecar

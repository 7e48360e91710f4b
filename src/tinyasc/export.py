"""ONNX export of the network alone (the §3.1 front end stays outside): float, checked against PyTorch
at export time, and int8 (ONNX Runtime static quantization, QDQ, calibrated on audio features).

`model.onnx` takes `features` (B, 1, F, T) log-mel with dynamic B and T and returns `logits`
(B, classes). Its sidecar `model.onnx.json` (the file name + ".json") holds the feature config,
class list, clip length, precision, size and the source checkpoint's sha256; `tinyasc predict`
and `tinyasc.load` need it. The exporter (eval mode) folds every Conv→BatchNorm pair into the conv;
the SubSpectralNorm BNs stay (their per-sub-band statistics act on a reshaped tensor, which no conv
weight can absorb).
"""
import hashlib
import io
import json
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tinyasc.checkpoint import atomic_write, load_checkpoint
from tinyasc.errors import TinyascError
from tinyasc.features import make_frontend
from tinyasc.predict import (FRONTEND_CHUNK, ONNX_INPUT, ONNX_OUTPUT, SIDECAR_FORMAT, SIDECAR_VERSION,
                             clip_seconds_of, collect_inputs, load_windows, ort_session, sidecar_path)

OPSET = 17
TOLERANCE = 1e-3  # max |logit difference| allowed between ONNX Runtime fp32 and PyTorch
CALIBRATION_WINDOWS = 64  # windows of calibration audio (more rarely moves min-max ranges)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_bytes(model, example):
    """The ONNX graph of eval-mode `model`: input `features` with dynamic batch and time axes."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT], do_constant_folding=True,
                          dynamic_axes={ONNX_INPUT: {0: "batch", 3: "frames"}, ONNX_OUTPUT: {0: "batch"}})
    return buffer.getvalue()


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

def checkpoint_int8_scales(payload):
    """Hook for compressed checkpoints. A QAT checkpoint will carry its own int8 scales (planned key:
    payload["quantization"]); export must then write those as the QDQ scales instead of calibrating.
    Until that exists, refuse rather than silently re-calibrate a QAT model."""
    if payload.get("quantization") is not None:
        raise TinyascError("this checkpoint carries its own int8 quantization (QAT); exporting it with "
                           "its stored scales is not implemented yet")


class FeatureReader:
    """onnxruntime.quantization CalibrationDataReader over a (N, 1, F, T) feature array."""

    def __init__(self, features, batch_size=8):
        self.batches = iter([features[i:i + batch_size] for i in range(0, len(features), batch_size)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {ONNX_INPUT: batch}


def quantize_int8(float_path, out_path, calibration, per_channel=True):
    """Static int8 quantization (QDQ format) of every Conv of `float_path`, activation ranges by
    min-max over `calibration` features (N, 1, F, T). Weights: symmetric int8 per output channel
    (zero point 0, so a pruned 0.0 stays exactly 0); activations: asymmetric uint8 (u8s8 is MLAS's
    main x86 path). Only convs: every other op of BC-ResNet (norms, SiLU, means, adds) stays float,
    as int8 there only adds Quantize/Dequantize passes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
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
    windows = []
    for path in collect_inputs([folder]):
        try:
            windows.append(load_windows(path, feature_cfg.sample_rate, clip_seconds)[0])
        except TinyascError:
            continue
        if sum(len(w) for w in windows) >= max_windows:
            break
    if not windows:
        raise TinyascError(f"{folder}: no readable audio files to calibrate on")
    windows = np.concatenate(windows)[:max_windows]
    frontend = make_frontend(feature_cfg)
    with torch.inference_mode():
        chunks = [frontend(torch.from_numpy(windows[i:i + FRONTEND_CHUNK])) for i in range(0, len(windows), FRONTEND_CHUNK)]
    return torch.cat(chunks).numpy()


# ---------------------------------------------------------------------------------------------
# The whole export

def export(checkpoint, out, int8=False, calibrate=None, tolerance=TOLERANCE, log=print):
    """Export `checkpoint` to ONNX at `out` (+ sidecar). int8 needs `calibrate`, a folder of audio
    files whose features set the activation ranges. Returns the sidecar dict."""
    out = Path(out)
    model, feature_cfg, classes, payload = load_checkpoint(checkpoint)
    clip_seconds = clip_seconds_of(payload)
    frames = feature_cfg.num_frames(int(round(clip_seconds * feature_cfg.sample_rate)))
    if int8:
        checkpoint_int8_scales(payload)
        if calibrate is None:
            raise TinyascError("--int8 on a float checkpoint needs calibration audio: pass --calibrate DIR "
                               "(any folder of audio files, e.g. a few hundred training clips)")
    if calibrate is not None:
        features = calibration_features(calibrate, feature_cfg, clip_seconds)
    else:  # log-mel-like values; ResNorm normalises the input, so the scale matters little
        features = (np.random.default_rng(0).standard_normal((4, 1, feature_cfg.n_mels, frames)) * 3 - 8).astype(np.float32)

    float_bytes = onnx_bytes(model, torch.from_numpy(features[:1]))
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

    if not int8:
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(float_bytes))
    else:
        with tempfile.TemporaryDirectory() as tmp:  # nothing reaches `out` before the checks pass
            float_path, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            float_path.write_bytes(float_bytes)
            quantize_int8(float_path, int8_path, features)
            quantized, broken = int8_weight_check(float_path, int8_path)
            if quantized == 0:
                raise TinyascError("int8 quantization produced no int8 weights")
            if broken:
                raise TinyascError(f"int8 quantization turned {broken} zero weights into non-zeros")
            got, expected = logits_pair(ort_session(int8_path), model, features)
            int8_bytes = int8_path.read_bytes()
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(int8_bytes))
        agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
        int8_diff = float(np.abs(got - expected).max())
        log(f"int8: {quantized} conv weights int8 (pruned zeros stay 0); vs PyTorch on {len(features)} "
            f"calibration windows: top-1 agreement {agree:.1%}, max |logit difference| {int8_diff:.3g}")
        report.update(precision="int8", int8_conv_weights=quantized, calibration_windows=len(features),
                      calibration_folder=str(calibrate), top1_agreement_vs_torch=agree,
                      max_abs_logit_diff_int8_vs_torch=int8_diff,
                      quantization="ONNX Runtime static QDQ: Conv only, int8 symmetric per-channel weights, "
                                   "uint8 activations, min-max calibration")

    params = parameter_bytes(out)
    report.update(file_bytes=out.stat().st_size, nonzero_param_bytes=params["total"],
                  nonzero_params_by_dtype=params["by_dtype"])
    sidecar = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "input": ONNX_INPUT, "output": ONNX_OUTPUT,
               "arch": payload["arch"], "model_config": payload["model_config"],
               "feature_config": feature_cfg.to_dict(), "classes": list(classes), "clip_seconds": clip_seconds,
               "source_checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}, **report}
    atomic_write(sidecar_path(out), lambda tmp: Path(tmp).write_text(json.dumps(sidecar, indent=2) + "\n"))
    log(f"wrote {out}: {out.stat().st_size / 1024:.1f} KB file, {params['total'] / 1024:.1f} KB non-zero parameters "
        f"({', '.join(f'{k} {v[0]:,}' for k, v in params['by_dtype'].items())}); sidecar {sidecar_path(out).name}")
    return sidecar

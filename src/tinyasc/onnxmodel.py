"""The ONNX model contract shared by `tinyasc export` (writer) and `tinyasc predict` (reader): tensor
names, the graph export itself, the sidecar `model.onnx.json` (feature config, classes, clip length,
source checkpoint hash) and the ONNX Runtime session settings. Imports numpy only (torch, onnx and
onnxruntime lazily), so export and predict both depend on it and not on each other."""
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tinyasc.errors import TinyascError

# input (B, 1, F, T) log-mel features with dynamic batch and time axes; output (B, K) logits
ONNX_INPUT, ONNX_OUTPUT = "features", "logits"
OPSET = 17
SIDECAR_FORMAT, SIDECAR_VERSION = "tinyasc-onnx", 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_bytes(model, example, fold_bn=True):
    """The ONNX graph of eval-mode `model`: input `features` with dynamic batch and time axes.
    fold_bn=False keeps every BatchNormalization (and every conv weight as it is in the state dict)."""
    import torch

    buffer = io.BytesIO()
    # TrainingMode.EVAL runs the exporter's eval peephole pass, which folds Conv→BN; PRESERVE on an
    # eval-mode model exports the same inference-mode graph without that pass.
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, opset_version=OPSET, training=mode,
                          input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT], do_constant_folding=True,
                          dynamic_axes={ONNX_INPUT: {0: "batch", 3: "frames"}, ONNX_OUTPUT: {0: "batch"}})
    return buffer.getvalue()


ONNX_CACHE_ENV = "TINYASC_ONNX_CACHE"  # folder for the graphs of loaded checkpoints; "off": no cache
CACHE_VERSION = 1  # bump when onnx_bytes changes what it writes


def onnx_cache_dir():
    """Where `cached_onnx_bytes` keeps graphs: $TINYASC_ONNX_CACHE, else $XDG_CACHE_HOME/tinyasc/onnx (default
    ~/.cache/tinyasc/onnx); None when the variable is "off"."""
    value = os.environ.get(ONNX_CACHE_ENV, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinyasc" / "onnx"


def cache_key(model, example):
    """A digest of everything the exported graph depends on: the module tree, every parameter and buffer,
    the input's mel bins, the opset and torch's version."""
    import torch

    h = hashlib.sha256(f"{CACHE_VERSION}|{OPSET}|{torch.__version__}|{example.shape[2]}|{model!r}".encode())
    for name, tensor in model.state_dict().items():
        h.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cached_onnx_bytes(model, example, refresh=False):
    """onnx_bytes(model, example), kept in onnx_cache_dir() under cache_key: exporting imports and traces for
    seconds (most of a checkpoint's load time), reading a cached graph takes milliseconds. The caller checks
    the graph against torch; `refresh` re-exports and replaces the cached copy. A cache that cannot be read
    or written is skipped, never an error."""
    folder = onnx_cache_dir()
    path = folder / f"{cache_key(model, example)}.onnx" if folder else None
    if path is not None and not refresh:
        try:
            return path.read_bytes()
        except OSError:
            pass
    data = onnx_bytes(model, example)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
                f.write(data)
            os.replace(f.name, path)
        except OSError:
            pass
    return data


def sidecar_path(onnx_path):
    """model.onnx → model.onnx.json (the full file name + .json: model.int8.onnx gets its own)."""
    return Path(str(onnx_path) + ".json")


def read_sidecar(onnx_path):
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise TinyascError(f"{onnx_path}: missing sidecar {path.name} (`tinyasc export` writes it beside the model)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TinyascError(f"{path}: not a readable sidecar ({str(e)[:200]})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise TinyascError(f"{path}: not a tinyasc ONNX sidecar")
    if not isinstance(meta.get("version", 0), int) or meta.get("version", 0) > SIDECAR_VERSION:
        raise TinyascError(f"{path}: sidecar version {meta.get('version')!r} is not one this tinyasc reads")
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes) \
            or len(set(classes)) != len(classes):
        raise TinyascError(f"{path}: field 'classes' must be a list of at least 2 distinct names")
    if not isinstance(meta.get("feature_config"), dict):
        raise TinyascError(f"{path}: field 'feature_config' is missing or not a table")
    seconds = meta.get("clip_seconds", 10.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise TinyascError(f"{path}: field 'clip_seconds' must be a number of seconds in (0, 3600], not {seconds!r}")
    for field, expected in (("input", ONNX_INPUT), ("output", ONNX_OUTPUT)):
        if meta.get(field, expected) != expected:
            raise TinyascError(f"{path}: field {field!r} is {meta.get(field)!r}; tinyasc graphs use {expected!r}")
    digest = meta.get("onnx_sha256")
    if digest is not None and sha256_file(onnx_path) != digest:
        raise TinyascError(f"{onnx_path}: the file does not match the SHA-256 in {path.name} (corrupted or edited)")
    return meta


def check_graph(session, onnx_path, n_mels, num_classes):
    """The graph takes `features` (B, 1, n_mels, T) and gives `logits` (B, num_classes), as its sidecar says."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [ONNX_INPUT] or [o.name for o in outputs] != [ONNX_OUTPUT]:
        raise TinyascError(f"{onnx_path}: graph inputs {[i.name for i in inputs]} / outputs {[o.name for o in outputs]}; "
                           f"a tinyasc graph has input {ONNX_INPUT!r} and output {ONNX_OUTPUT!r}")
    shape_in, shape_out = inputs[0].shape, outputs[0].shape
    if len(shape_in) != 4 or (isinstance(shape_in[2], int) and shape_in[2] != n_mels):
        raise TinyascError(f"{onnx_path}: the graph takes input {shape_in} but the sidecar's features have "
                           f"{n_mels} mel bins")
    if len(shape_out) != 2 or (isinstance(shape_out[1], int) and shape_out[1] != num_classes):
        raise TinyascError(f"{onnx_path}: the graph gives {shape_out} logits but the sidecar lists {num_classes} classes")


def ort_session(model, threads=None, device="cpu"):
    """An ONNX Runtime session (path or bytes): all graph optimisations except QDQ propagation,
    sequential execution, `threads` intra-op threads (None: one per core), no spin-waiting (the
    decode threads need the cores).

    QDQ propagation would move the int8 models' QuantizeLinear above each MaxPool, which then runs
    on uint8 in NCHW with ORT's slow generic kernel (4 of 23 ms for bc_resnet_asc_8, see
    benchmarks/inference.py); fp32 graphs have no QDQ nodes, so it changes nothing for them."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TinyascError("--device cuda: this onnxruntime has no CUDA execution provider")
        providers.insert(0, "CUDAExecutionProvider")
    source = str(model) if isinstance(model, (str, Path)) else model
    try:
        return ort.InferenceSession(source, so, providers=providers,
                                    disabled_optimizers=["QDQPropagationTransformer"])
    except Exception as e:  # ORT raises its own Fail/InvalidProtobuf types
        name = model if isinstance(model, (str, Path)) else "ONNX model"
        raise TinyascError(f"{name}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None


class OnnxNet:
    """An ONNX graph (path or bytes) as a network: (B, 1, F, T) features → (B, K) numpy logits."""

    def __init__(self, path, threads=None, device="cpu"):
        self.session = ort_session(path, threads, device)

    def __call__(self, features):
        x = features.detach().cpu().numpy() if hasattr(features, "detach") else features  # a torch tensor
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]

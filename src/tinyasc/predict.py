"""Inference: a Classifier over one or more tinyasc checkpoints or exported ONNX models (an ensemble
averages probabilities), clip windowing, input discovery, and the DCASE Task 1 submission table.

A clip is cut into non-overlapping windows of the training clip length (10 s unless the model says
otherwise); the last window is zero-padded, and window probabilities are averaged weighted by each
window's share of real audio, so a clip shorter than the window is one zero-padded window and a
10.01 s clip is ~all first window. Decoding and resampling run in a thread pool (libsndfile and soxr
release the GIL): each worker thread takes a chunk of files through decode, front end and network.
"""
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from tinyasc.audio import AudioError, load_audio, to_mono_rate
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig, make_frontend

# what libsndfile decodes; folders are searched recursively for these
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
CHECKPOINT_EXTENSIONS = (".pt", ".pth", ".ckpt")
MODEL_EXTENSIONS = CHECKPOINT_EXTENSIONS + (".onnx",)
DEFAULT_CLIP_SECONDS = 10.0  # TAU clips; used when a checkpoint does not store its training length
# windows per front-end + network call: per-clip cost grows with the batch here (a (B, 1041, 334)
# complex spectrum is 2.8 MB per clip; BC-ResNet activations ~1.7 MB per clip), 64 is ~2x slower
FRONTEND_CHUNK = 2
SIDECAR_FORMAT, SIDECAR_VERSION = "tinyasc-onnx", 1
ONNX_INPUT, ONNX_OUTPUT = "features", "logits"


class Predictions(NamedTuple):
    labels: list  # predicted class name per input
    probabilities: np.ndarray  # (N, classes) float32, columns in Classifier.classes order


# ---------------------------------------------------------------------------------------------
# Inputs and windows

def collect_inputs(items):
    """Audio files from files (taken as given), folders (recursive, AUDIO_EXTENSIONS, sorted) and .txt
    lists (one path per line, relative to the list's folder; blank lines and # comments skipped).
    Order is kept and duplicates dropped. A missing file named on the command line or in a list is
    kept, so that it is reported as a failed file; a missing folder or list is an error."""
    files = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        elif item.suffix.lower() == ".txt":
            if not item.is_file():
                raise TinyascError(f"{item}: no such file list")
            for line in item.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    files.append(item.parent / line if not Path(line).is_absolute() else Path(line))
        elif item.exists() or item.suffix.lower() in AUDIO_EXTENSIONS:
            files.append(item)
        else:
            raise TinyascError(f"{item}: no such file or folder")
    return list(dict.fromkeys(files))


def windows_of(x, window):
    """(windows (n, window) float32, weights (n,)): non-overlapping windows of a 1-D waveform, the last
    zero-padded; weights are each window's share of real samples (they sum to 1)."""
    n = max(1, -(-len(x) // window))
    padded = np.zeros(n * window, dtype=np.float32)
    padded[: len(x)] = x
    real = np.clip(len(x) - window * np.arange(n), 0, window).astype(np.float64)
    return padded.reshape(n, window), real / real.sum()


def load_windows(path, sample_rate, clip_seconds):
    """Decode + resample `path` (load_audio) and cut it into windows_of(…, clip_seconds)."""
    return windows_of(load_audio(path, target_rate=sample_rate), int(round(clip_seconds * sample_rate)))


def clip_seconds_of(payload):
    """The training clip length of a checkpoint: `clip_seconds` (top level or in its train_config),
    else `clip_samples` (samples at the feature rate, as `tinyasc train` stores it), else 10 s."""
    for source in (payload, payload.get("train_config")):
        if isinstance(source, dict) and source.get("clip_seconds"):
            return float(source["clip_seconds"])
    if payload.get("clip_samples"):
        return payload["clip_samples"] / payload["feature_config"]["sample_rate"]
    return DEFAULT_CLIP_SECONDS


# ---------------------------------------------------------------------------------------------
# Networks: a torch checkpoint or an ONNX Runtime session, both features (B, 1, F, T) → logits

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
    if meta.get("version", 0) > SIDECAR_VERSION:
        raise TinyascError(f"{path}: sidecar version {meta['version']} is newer than this tinyasc")
    return meta


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


class TorchNet:
    """A checkpoint's network in eval mode on `device`."""

    def __init__(self, model, device="cpu"):
        self.model = model.eval().to(device)
        self.device = device

    def __call__(self, features):  # (B, 1, F, T) tensor → (B, K) numpy logits
        with torch.inference_mode():
            return self.model(features.to(self.device)).float().cpu().numpy()


class OnnxNet:
    def __init__(self, path, threads=None, device="cpu"):
        self.session = ort_session(path, threads, device)

    def __call__(self, features):
        x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


class Member:
    """One model of a Classifier: its network, feature config, classes and window length."""

    def __init__(self, name, net, feature_cfg, classes, clip_seconds):
        self.name, self.net, self.feature_cfg = name, net, feature_cfg
        self.classes, self.clip_seconds = list(classes), float(clip_seconds)


def onnx_net_of(model, feature_cfg, threads=None, tolerance=1e-3):
    """A checkpoint's network as an in-memory ONNX Runtime session: on CPU it runs 3–4× faster than
    torch eager (benchmarks/inference.py). Checked against torch on a random input when built."""
    from tinyasc.export import onnx_bytes  # lazily: export imports this module

    example = torch.randn(2, 1, feature_cfg.n_mels, 64, generator=torch.Generator().manual_seed(0))
    net = OnnxNet(onnx_bytes(model, example), threads)
    with torch.inference_mode():
        ref = model.eval()(example).numpy()
    diff = float(np.abs(net(example) - ref).max())
    if not diff <= tolerance * max(1.0, float(np.abs(ref).max())):
        raise TinyascError(f"ONNX Runtime disagrees with PyTorch by {diff:.2e}; use backend='torch'")
    return net


def load_member(path, threads=None, device="cpu", backend="auto"):
    """One model file as a Member. A checkpoint runs through ONNX Runtime on CPU (backend "auto" or
    "onnx") or through PyTorch (backend "torch", and always on CUDA)."""
    if backend not in ("auto", "onnx", "torch"):
        raise TinyascError(f"backend must be 'auto', 'onnx' or 'torch', not {backend!r}")
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise TinyascError(f"{path}: no such model file")
        meta = read_sidecar(path)
        return Member(str(path), OnnxNet(path, threads, device), FeatureConfig.from_dict(meta["feature_config"]),
                      meta["classes"], meta.get("clip_seconds", DEFAULT_CLIP_SECONDS))
    from tinyasc.checkpoint import load_checkpoint

    model, feature_cfg, classes, payload = load_checkpoint(path)
    clip_seconds = clip_seconds_of(payload)
    use_onnx = backend == "onnx" or (backend == "auto" and device == "cpu")
    net = onnx_net_of(model, feature_cfg, threads) if use_onnx else TorchNet(model, device)
    return Member(str(path), net, feature_cfg, classes, clip_seconds)


def _softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The classifier

class Classifier:
    """Audio in, scene probabilities out. Several members are an ensemble: their probabilities are
    averaged (members may differ in feature config and window length, not in sample rate or class set)."""

    def __init__(self, members, device="cpu"):
        if not members:
            raise TinyascError("no model given")
        self.members = members
        self.classes = members[0].classes
        self.sample_rate = members[0].feature_cfg.sample_rate
        self.device = device
        for m in members[1:]:
            if sorted(m.classes) != sorted(self.classes):
                raise TinyascError(f"{m.name}: classes {m.classes} differ from {members[0].name}'s {self.classes}")
            if m.feature_cfg.sample_rate != self.sample_rate:
                raise TinyascError(f"{m.name}: sample rate {m.feature_cfg.sample_rate} differs from {self.sample_rate}")
        # members sharing a feature config and window length share the front end's work
        self._groups = {}
        for m in members:
            self._groups.setdefault((m.feature_cfg, m.clip_seconds), []).append(m)
        self._frontends = {cfg: make_frontend(cfg).to(device).eval() for cfg, _ in self._groups}

    def predict_waveforms(self, waves):
        """(N, K) float32 probabilities for 1-D waveforms at self.sample_rate: per member, the
        window probabilities averaged by window weight; then the mean over members."""
        total = np.zeros((len(waves), len(self.classes)))
        for (cfg, seconds), members in self._groups.items():
            cut = [windows_of(x, int(round(seconds * self.sample_rate))) for x in waves]
            windows = np.concatenate([w for w, _ in cut])
            logits = {id(m): [] for m in members}
            with torch.inference_mode():
                for i in range(0, len(windows), FRONTEND_CHUNK):
                    features = self._frontends[cfg](torch.from_numpy(windows[i:i + FRONTEND_CHUNK]).to(self.device))
                    for m in members:
                        logits[id(m)].append(m.net(features))
            for m in members:
                probs = _softmax(np.concatenate(logits[id(m)]).astype(np.float64))
                probs = probs[:, [m.classes.index(c) for c in self.classes]]  # into self.classes order
                start = 0
                for i, (_, weights) in enumerate(cut):
                    total[i] += weights @ probs[start:start + len(weights)]
                    start += len(weights)
        return (total / len(self.members)).astype(np.float32)

    def predict(self, inputs, sample_rate=None, batch_size=32):
        """Labels and probabilities for a path, a list of paths, a 1-D waveform, a list of 1-D
        waveforms or an (N, samples) array. Waveforms are at `sample_rate` (default: the model's,
        16 kHz) and are resampled otherwise. A bad file raises AudioError."""
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        elif isinstance(inputs, (np.ndarray, torch.Tensor)):
            inputs = [inputs] if inputs.ndim == 1 else list(inputs)
        inputs = list(inputs)
        probs = []
        for start in range(0, len(inputs), batch_size):
            waves = []
            for item in inputs[start:start + batch_size]:
                if isinstance(item, (str, os.PathLike)):
                    waves.append(load_audio(item, self.sample_rate))
                else:
                    x = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
                    waves.append(to_mono_rate(x, sample_rate or self.sample_rate, self.sample_rate))
            probs.append(self.predict_waveforms(waves))
        probs = np.concatenate(probs) if probs else np.zeros((0, len(self.classes)), np.float32)
        return Predictions([self.classes[i] for i in probs.argmax(1)], probs)

    def _classify_files(self, paths):
        """[(path, probabilities or None, error or None)] for a chunk of files, decoded here."""
        waves, good, errors = [], [], {}
        for i, path in enumerate(paths):
            try:
                waves.append(load_audio(path, self.sample_rate))
                good.append(i)
            except AudioError as e:
                errors[i] = str(e)
            except Exception as e:  # anything else a decoder may throw: report the file, go on
                errors[i] = f"{path}: {type(e).__name__}: {e}"
        probs = dict(zip(good, self.predict_waveforms(waves))) if waves else {}
        return [(path, probs.get(i), errors.get(i)) for i, path in enumerate(paths)]

    def predict_files(self, paths, batch_size=16, workers=2, progress=False):
        """Yield (path, probabilities or None, error message or None) per path, in order. Each of
        `workers` threads takes `batch_size` files at a time through decode → front end → network;
        with single-threaded torch/ORT ops that keeps every core busy without thread hand-offs."""
        from tqdm.auto import tqdm

        chunks = iter([paths[i:i + batch_size] for i in range(0, len(paths), batch_size)])
        bar = tqdm(total=len(paths), unit="file", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            pending = deque(pool.submit(self._classify_files, c) for c in islice(chunks, 2 * max(1, workers)))
            while pending:
                results = pending.popleft().result()
                chunk = next(chunks, None)
                if chunk is not None:
                    pending.append(pool.submit(self._classify_files, chunk))
                yield from results
                bar.update(len(results))
        bar.close()


def load(*paths, threads=None, device="cpu", backend="auto"):
    """A Classifier from one or more tinyasc checkpoints (.pt/.pth/.ckpt) or exported ONNX models
    (.onnx + sidecar); several are an ensemble. `threads`: ONNX Runtime intra-op threads. `backend`:
    how checkpoints run ("auto": ONNX Runtime on CPU, PyTorch on CUDA; "onnx"; "torch")."""
    if len(paths) == 1 and isinstance(paths[0], (list, tuple)):  # load(["a.pt", "b.pt"]) too
        paths = tuple(paths[0])
    if device == "cuda" and not torch.cuda.is_available():
        raise TinyascError("--device cuda: no CUDA device is available to torch")
    return Classifier([load_member(p, threads, device, backend) for p in paths], device=device)


# ---------------------------------------------------------------------------------------------
# DCASE Task 1 submission table

def submission_header(classes):
    return "\t".join(["filename", "scene_label", *classes])


def submission_row(filename, probs, classes):
    return "\t".join([str(filename), classes[int(np.argmax(probs))], *(f"{p:.6f}" for p in probs)])

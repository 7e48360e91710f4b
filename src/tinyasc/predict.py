"""Inference: a Classifier over one or more tinyasc checkpoints or exported ONNX models (an ensemble
averages probabilities), clip windowing, input discovery, and the DCASE Task 1 submission table.

A clip is cut into non-overlapping windows of the training clip length (10 s unless the model says
otherwise); the last window is zero-padded, and window probabilities are averaged weighted by each
window's share of real audio, so a clip shorter than the window is one zero-padded window and a
10.01 s clip is ~all first window. Decoding and resampling run in a thread pool (libsndfile and soxr
release the GIL): each worker thread takes a chunk of files through decode, front end and network.
Exported ONNX models on CPU run without torch (numpy front end, ONNX Runtime): torch is imported only
for a checkpoint, a CUDA device or a torch tensor given as input.
"""
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tinyasc.audio import (  # noqa: F401
    AUDIO_EXTENSIONS,
    AudioError,
    audio_seconds,
    stream_windows,
    collect_inputs,
    load_audio,
    load_windows,
    to_mono_rate,
    windows_of,
)
from tinyasc.dcase import device_groups, device_key, softmax
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig, NumpyFrontend
from tinyasc.onnxmodel import (  # noqa: F401 (re-exported)
    OnnxNet, cached_onnx_bytes, check_graph, onnx_bytes, ort_session, read_sidecar, sidecar_path)

CHECKPOINT_EXTENSIONS = (".pt", ".pth", ".ckpt")
MODEL_EXTENSIONS = CHECKPOINT_EXTENSIONS + (".onnx",)
DEFAULT_CLIP_SECONDS = 10.0  # TAU clips; used when a checkpoint does not store its training length
# files longer than this are streamed a block of windows at a time (memory stays flat; progress shown)
LONG_FILE_SECONDS = 120.0
LONG_FILE_BLOCK = 16  # windows per block when streaming
# windows per front-end + network call: per-clip cost grows with the batch here (a (B, 1041, 334)
# complex spectrum is 2.8 MB per clip; BC-ResNet activations ~1.7 MB per clip), 64 is ~2x slower
FRONTEND_CHUNK = 2


def is_tensor(x):
    """Whether `x` is a torch tensor (False, without importing torch, when torch was never loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class Predictions(NamedTuple):
    labels: list  # predicted class name per input
    probabilities: np.ndarray  # (N, classes) float32, columns in Classifier.classes order


# ---------------------------------------------------------------------------------------------
# Window length

def clip_seconds_of(payload):
    """The training clip length of a checkpoint: `clip_samples` (samples at the feature rate, what
    `tinyasc train` and `compress` store), else a top-level `clip_seconds` (hand-made checkpoints),
    else 10 s (TAU 2020 clips)."""
    if payload.get("clip_samples"):
        return payload["clip_samples"] / payload["feature_config"]["sample_rate"]
    if payload.get("clip_seconds"):
        return float(payload["clip_seconds"])
    return DEFAULT_CLIP_SECONDS


# ---------------------------------------------------------------------------------------------
# Networks: a torch checkpoint or an ONNX Runtime session, both features (B, 1, F, T) → logits

class TorchNet:
    """A checkpoint's network in eval mode on `device`; `half`: computed in fp16 (weights and activations),
    where the hardware is fast at it (CUDA). On CPU fp16-stored weights are upcast to fp32 instead:
    fp16 convolutions on a CPU without native fp16 arithmetic are far slower (benchmarks/fp16_speed.py)."""

    def __init__(self, model, device="cpu", half=False):
        import torch

        self.torch = torch
        self.half = bool(half)
        self.model = model.eval().to(device)
        if self.half:
            self.model.half()
        self.device = device

    def __call__(self, features):  # (B, 1, F, T) tensor or array → (B, K) numpy logits
        with self.torch.inference_mode():
            x = self.torch.as_tensor(features).to(self.device)
            return self.model(x.half() if self.half else x).float().cpu().numpy()


def net_of(model, feature_cfg, storage, threads=None, device="cpu", backend="auto"):
    """The network that runs a checkpoint's model (weights already at its deployment storage, see
    checkpoint.apply_storage): ONNX Runtime on CPU (backend "auto" or "onnx"), else PyTorch; an fp16 model
    runs in fp16 on CUDA and upcast to fp32 elsewhere."""
    if backend == "onnx" or (backend == "auto" and device == "cpu"):
        return onnx_net_of(model, feature_cfg, threads)
    return TorchNet(model, device, half=storage == "fp16" and str(device).startswith("cuda"))


class Member:
    """One model of a Classifier: its network, feature config, classes and window length, and the
    networks of its device-specific models (DCASE 2025: {device id: net}; empty for most models)."""

    def __init__(self, name, net, feature_cfg, classes, clip_seconds, device_nets=None):
        self.name, self.net, self.feature_cfg = name, net, feature_cfg
        self.classes, self.clip_seconds = list(classes), float(clip_seconds)
        self.storage = None  # a checkpoint's deployment storage (checkpoint.deploy_storage)
        self.device_nets = dict(device_nets or {})
        self.onnx_file = False  # an exported .onnx model (no checkpoint, so no torch needed)

    def for_device(self, device_id):
        """This member as it classifies recordings of `device_id`: its device model's network if it has
        one, else itself (the general model)."""
        if device_id not in self.device_nets:
            return self
        member = Member(f"{self.name}[{device_id}]", self.device_nets[device_id], self.feature_cfg, self.classes,
                        self.clip_seconds)
        member.storage, member.onnx_file = self.storage, self.onnx_file
        return member


def onnx_net_of(model, feature_cfg, threads=None, tolerance=1e-3):
    """A checkpoint's network as an in-memory ONNX Runtime session: on CPU it runs 3–4× faster than
    torch eager (benchmarks/inference.py). The graph comes from the export cache when it holds this model
    (onnxmodel.cached_onnx_bytes; benchmarks/load_time.py), and is checked against torch on a random input
    either way; a cached graph that disagrees is exported again."""
    import torch

    example = torch.randn(2, 1, feature_cfg.n_mels, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model.eval()(example).numpy()
    for refresh in (False, True):
        try:
            net = OnnxNet(cached_onnx_bytes(model, example, refresh=refresh), threads)
        except TinyascError:  # an unreadable cached graph: export again
            if refresh:
                raise
            continue
        diff = float(np.abs(net(example) - ref).max())
        if diff <= tolerance * max(1.0, float(np.abs(ref).max())):
            return net
    raise TinyascError(f"ONNX Runtime disagrees with PyTorch by {diff:.2e}; use backend='torch'")


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
        try:
            feature_cfg = FeatureConfig.from_dict(meta["feature_config"])
        except TinyascError as e:
            raise TinyascError(f"{sidecar_path(path)}: {e}") from None
        net = OnnxNet(path, threads, device)
        check_graph(net.session, path, feature_cfg.n_mels, len(meta["classes"]))
        member = Member(str(path), net, feature_cfg, meta["classes"], meta.get("clip_seconds", DEFAULT_CLIP_SECONDS))
        member.onnx_file = True
        return member
    from tinyasc.checkpoint import apply_storage, deployed_checkpoint, device_models

    # the weights the complexity rules count are the weights that predict: fp16 / 8-bit-rounded per storage
    model, feature_cfg, classes, payload, storage = deployed_checkpoint(path)
    devices = {d: apply_storage(m, storage) for d, m in device_models(path, model, payload).items()}  # devices.pt
    nets = {d: net_of(m, feature_cfg, storage, threads, device, backend) for d, m in devices.items()}
    member = Member(str(path), net_of(model, feature_cfg, storage, threads, device, backend), feature_cfg, classes,
                    clip_seconds_of(payload), device_nets=nets)
    member.storage = storage
    return member


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
        # exported ONNX models on CPU: the numpy front end, and no torch; else the torch modules on `device`
        self._numpy = device == "cpu" and all(m.onnx_file for m in members)
        if self._numpy:
            self._frontends = {cfg: NumpyFrontend(cfg) for cfg, _ in self._groups}
        else:
            from tinyasc.frontend import make_frontend

            self._frontends = {cfg: make_frontend(cfg).to(device).eval() for cfg, _ in self._groups}
        self.show_long_progress = False  # a progress bar per long file (the CLI turns it on)
        # DCASE 2025: the device ids that some member has a device-specific model for
        self.routed_devices = sorted(set().union(*(m.device_nets for m in members)))
        self._by_device = {}

    def for_device(self, device_id):
        """The classifier for recordings of `device_id`: every member through its model for that device
        where it has one, else through its general model (an unknown or absent id: this classifier)."""
        key = device_key(device_id)
        if key not in self.routed_devices:
            return self
        if key not in self._by_device:
            clf = Classifier([m.for_device(key) for m in self.members], device=self.device)
            clf.show_long_progress = self.show_long_progress
            self._by_device[key] = clf
        return self._by_device[key]

    def _window_probs(self, cfg, members, windows):
        """{member id: (n, K) float64 probabilities in self.classes order} for windows (n, samples)."""
        logits = {id(m): [] for m in members}
        for i in range(0, len(windows), FRONTEND_CHUNK):
            features = self._features(cfg, windows[i:i + FRONTEND_CHUNK])
            for m in members:
                logits[id(m)].append(m.net(features))
        return {id(m): softmax(np.concatenate(logits[id(m)]).astype(np.float64))[:, [m.classes.index(c) for c in self.classes]]
                for m in members}

    def _features(self, cfg, windows):
        """(n, 1, F, T) features of windows (n, samples): a numpy array, or a tensor on self.device."""
        if self._numpy:
            return self._frontends[cfg](windows)
        import torch

        with torch.inference_mode():
            return self._frontends[cfg](torch.from_numpy(windows).to(self.device))

    def predict_waveforms(self, waves):
        """(N, K) float32 probabilities for 1-D waveforms at self.sample_rate: per member, the
        window probabilities averaged by window weight; then the mean over members."""
        total = np.zeros((len(waves), len(self.classes)))
        for (cfg, seconds), members in self._groups.items():
            cut = [windows_of(x, int(round(seconds * self.sample_rate))) for x in waves]
            probs = self._window_probs(cfg, members, np.concatenate([w for w, _ in cut]))
            for m in members:
                start = 0
                for i, (_, weights) in enumerate(cut):
                    total[i] += weights @ probs[id(m)][start:start + len(weights)]
                    start += len(weights)
        return (total / len(self.members)).astype(np.float32)

    def predict_long_file(self, path, progress=False):
        """(K,) float32 probabilities of one long audio file, read, resampled and classified a block of
        windows at a time, so memory stays flat whatever the file's length (a 60-minute file needs no
        more than a 1-minute one); equal to predict_waveforms on the whole file up to the streaming
        resampler's rounding."""
        from tqdm.auto import tqdm

        total = np.zeros(len(self.classes))
        for (cfg, seconds), members in self._groups.items():
            window = int(round(seconds * self.sample_rate))
            acc, real_total = {id(m): np.zeros(len(self.classes)) for m in members}, 0
            bar = tqdm(total=None, unit="window", desc=Path(path).name, file=sys.stderr, disable=not progress,
                       leave=False, dynamic_ncols=True)
            for windows, real in stream_windows(path, self.sample_rate, window, block_windows=LONG_FILE_BLOCK):
                probs = self._window_probs(cfg, members, windows)
                for m in members:
                    acc[id(m)] += real @ probs[id(m)]
                real_total += real.sum()
                bar.update(len(windows))
            bar.close()
            for m in members:
                total += acc[id(m)] / real_total
        return (total / len(self.members)).astype(np.float32)

    def predict(self, inputs: "str | os.PathLike | np.ndarray | torch.Tensor | list", sample_rate: int | None = None,  # noqa: F821
                batch_size: int = 32, device_ids: "list | None" = None) -> Predictions:
        """Labels and probabilities for a path, a list of paths, a 1-D waveform, a list of 1-D
        waveforms or an (N, samples) array. Waveforms are at `sample_rate` (default: the model's,
        16 kHz) and are resampled otherwise. A bad file raises AudioError. `device_ids` (one per input)
        routes each input to its device-specific model, unknown devices to the general one."""
        if device_ids is not None:
            return self._predict_by_device(inputs, device_ids, sample_rate, batch_size)
        if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer))
                                        or sample_rate <= 0):
            raise TinyascError(f"sample_rate must be a positive whole number of Hz, not {sample_rate!r}")
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        elif isinstance(inputs, np.ndarray) or is_tensor(inputs):
            if inputs.ndim == 2 and inputs.shape[1] <= 8 < inputs.shape[0]:
                raise TinyascError(f"an array of shape {tuple(inputs.shape)} looks like (samples, channels) audio; "
                                   "pass one mono clip (x.mean(axis=1)) or an (N clips, samples) array")
            if inputs.ndim not in (1, 2):
                raise TinyascError(f"expected a 1-D waveform or an (N clips, samples) array, not shape "
                                   f"{tuple(inputs.shape)}")
            inputs = [inputs] if inputs.ndim == 1 else list(inputs)
        inputs = list(inputs)
        probs = []
        for start in range(0, len(inputs), batch_size):
            waves = []
            for item in inputs[start:start + batch_size]:
                if isinstance(item, (str, os.PathLike)):
                    waves.append(load_audio(item, self.sample_rate))
                else:
                    x = item.detach().cpu().numpy() if is_tensor(item) else item
                    waves.append(to_mono_rate(x, sample_rate or self.sample_rate, self.sample_rate))
            probs.append(self.predict_waveforms(waves))
        probs = np.concatenate(probs) if probs else np.zeros((0, len(self.classes)), np.float32)
        bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        if len(bad):
            raise TinyascError(f"input {bad[0]}: the prediction is not finite (the audio overflows the front end: "
                               "samples far outside ±1?)")
        return Predictions([self.classes[i] for i in probs.argmax(1)], probs)

    def _predict_by_device(self, inputs, device_ids, sample_rate, batch_size):
        items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        if len(device_ids) != len(items):
            raise TinyascError(f"{len(device_ids)} device ids for {len(items)} inputs")
        probs = np.zeros((len(items), len(self.classes)), np.float32)
        for device, index in device_groups(device_ids):
            probs[index] = self.for_device(device).predict([items[i] for i in index], sample_rate, batch_size).probabilities
        return Predictions([self.classes[i] for i in probs.argmax(1)], probs)

    def _classify_files(self, paths):
        """[(path, probabilities or None, error or None)] for a chunk of files, decoded here."""
        waves, good, errors, long_probs = [], [], {}, {}
        for i, path in enumerate(paths):
            try:
                if audio_seconds(path) > LONG_FILE_SECONDS:  # stream: bounded memory, with progress
                    long_probs[i] = self.predict_long_file(path, progress=self.show_long_progress)
                    continue
                waves.append(load_audio(path, self.sample_rate))
                good.append(i)
            except AudioError as e:
                errors[i] = str(e)
            except Exception as e:  # anything else a decoder may throw: report the file, go on
                errors[i] = f"{path}: {type(e).__name__}: {e}"
        probs = dict(zip(good, self.predict_waveforms(waves))) if waves else {}
        probs.update(long_probs)
        for i in [i for i, p in probs.items() if not np.isfinite(p).all()]:  # never a NaN row in a submission
            del probs[i]
            errors[i] = (f"{paths[i]}: the prediction is not finite (the audio overflows the front end: "
                         "samples far outside ±1?)")
        for i, path in enumerate(paths):
            if any(ch in str(path) for ch in "\t\n\r"):  # would corrupt the tab-separated table
                probs.pop(i, None)
                errors[i] = f"{str(path)!r}: a file name with a tab or line break cannot go into the submission table"
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


def load(*paths: "str | os.PathLike | list", threads: int | None = None, device: str = "cpu",
         backend: str = "auto") -> "Classifier":
    """A Classifier from one or more tinyasc checkpoints (.pt/.pth/.ckpt) or exported ONNX models
    (.onnx + sidecar); several are an ensemble. `threads`: ONNX Runtime intra-op threads. `backend`:
    how checkpoints run ("auto": ONNX Runtime on CPU, PyTorch on CUDA; "onnx"; "torch")."""
    if len(paths) == 1 and isinstance(paths[0], (list, tuple)):  # load(["a.pt", "b.pt"]) too
        paths = tuple(paths[0])
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise TinyascError("--device cuda: no CUDA device is available to torch")
    return Classifier([load_member(p, threads, device, backend) for p in paths], device=device)


# ---------------------------------------------------------------------------------------------
# DCASE Task 1 submission table

def submission_header(classes):
    return "\t".join(["filename", "scene_label", *classes])


def submission_row(filename, probs, classes):
    return "\t".join([str(filename), classes[int(np.argmax(probs))], *(f"{p:.6f}" for p in probs)])


def _predict_files_by_device(classifier, files, device_ids, batch_size, workers, progress):
    """predict_files, each file through the models of its device (files in their given order)."""
    if not device_ids or not classifier.routed_devices:
        yield from classifier.predict_files(files, batch_size, workers, progress=progress)
        return
    results = {}
    for device, index in device_groups([device_ids.get(f) for f in files]):
        group = [files[i] for i in index]
        results.update(zip(index, classifier.for_device(device).predict_files(group, batch_size, workers, progress)))
    yield from (results[i] for i in range(len(files)))


def read_device_ids(path, files):
    """{file: device id} from a CSV/TSV with a `filename` column and a `device` (or `device_id`, or TAU's
    `source_label`) column, matched to `files` by path, then by name (TAU lists 'audio/x.wav')."""
    path = Path(path)
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise TinyascError(f"--device-ids {path}: cannot read ({e})") from None
    sep = "\t" if lines and "\t" in lines[0] else ","
    header = [h.strip() for h in lines[0].split(sep)] if lines else []
    column = next((c for c in ("device", "device_id", "source_label") if c in header), None)
    if "filename" not in header or column is None:
        raise TinyascError(f"--device-ids {path}: needs a header with 'filename' and 'device' (or 'source_label')")
    i, j = header.index("filename"), header.index(column)
    table = {}
    for number, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split(sep)]
        if len(fields) != len(header):
            raise TinyascError(f"--device-ids {path}: line {number}: expected {len(header)} fields")
        table[fields[i]] = device_key(fields[j])
    by_name = {Path(k).name: v for k, v in table.items()}
    return {f: table.get(str(f), by_name.get(Path(f).name)) for f in files}


def check_routing(classifier, device_ids, where="--device-ids"):
    """One line saying how `device_ids` ({input: device id or None}) will route `classifier`'s inputs;
    refuses a classifier without device models and ids that match no input."""
    if not classifier.routed_devices:
        names = ", ".join(m.name for m in classifier.members)
        raise TinyascError(f"{where}: {names} has no device-specific models to route to (an exported .onnx "
                           "or an ordinary checkpoint; give the devices.pt of `tinyasc finetune-devices`)")
    matched = [d for d in device_ids.values() if d is not None]
    if not matched:
        raise TinyascError(f"{where}: matches none of the {len(device_ids)} inputs (by path, then by file name)")
    own = sum(d in classifier.routed_devices for d in matched)
    return (f"{where}: matched {len(matched)} of {len(device_ids)} inputs; {own} go to a device model "
            f"({', '.join(classifier.routed_devices)}), {len(device_ids) - own} to the general model")


def logits_keys(files, relative_to=None):
    """{file: its key in a teacher-logits file}: the path relative to `relative_to` (a dataset root, so the
    keys match its CSVs), taken as written (a symlinked audio file keeps its name in the dataset), or the
    path as given without `relative_to`. Refuses a missing root and a file outside it, naming them."""
    if relative_to is None:
        return {f: str(f) for f in files}
    root = Path(relative_to)
    if not root.is_dir():
        raise TinyascError(f"--relative-to {relative_to}: no such dataset folder")
    lexical, real = Path(os.path.abspath(root)), root.resolve()
    keys = {}
    for f in files:
        try:  # as written first; then with links resolved (a root given through a link)
            keys[f] = (Path(os.path.abspath(f)).relative_to(lexical) if Path(os.path.abspath(f)).is_relative_to(lexical)
                       else Path(f).resolve().relative_to(real)).as_posix()
        except ValueError:
            raise TinyascError(f"--relative-to {relative_to}: {f} is not inside it; the logits file "
                               "keys files by their path in the dataset") from None
    return keys


def write_submission(classifier, files, out=None, *, batch_size=16, workers=None, progress=None, on_error=None,
                     logits_out=None, relative_to=None, device_ids=None, overwrite=True):
    """Classify `files` and write the DCASE Task 1 submission table (header + one row per good file) to
    the path `out` (atomically, only after every file was tried) or to sys.stdout when `out` is None.
    A bad file is skipped and passed to `on_error(message)` (default: printed to stderr). Returns
    (rows written, failed messages). `logits_out`: also write a teacher-logits file (tinyasc.distill;
    log of the averaged probabilities, which softmax maps back to them) keyed by file names relative to
    `relative_to` (the dataset root, so they match its CSVs). `device_ids` ({file: device id}) routes
    files to device-specific models (DCASE 2025); overwrite=False refuses an `out` that exists by then. Torch runs one thread per op meanwhile: the `workers` threads
    (default one per core) take chunks of files side by side, which keeps every core busy."""
    from tinyasc.paths import atomic_write

    files = list(files)
    keys = logits_keys(files, relative_to) if logits_out is not None else {}  # checked before any work
    workers = workers or os.cpu_count() or 1
    on_error = on_error or (lambda message: print(f"tinyasc: skipped {message}", file=sys.stderr))
    lines, failed, kept = [submission_header(classifier.classes)], [], []
    torch = sys.modules.get("torch")  # loaded for a checkpoint; an ONNX model runs without it
    torch_threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    try:
        progress = len(files) >= 20 if progress is None else progress
        for path, probs, error in _predict_files_by_device(classifier, files, device_ids, batch_size, workers, progress):
            if error:
                failed.append(error)
                on_error(error)
            else:
                lines.append(submission_row(path, probs, classifier.classes))
                kept.append((path, probs))
    finally:
        if torch:
            torch.set_num_threads(torch_threads)
    if logits_out is not None:
        from tinyasc.distill import write_logits

        names = [keys[p] for p, _ in kept]
        logits = np.log(np.clip(np.array([q for _, q in kept], dtype=np.float64), 1e-12, None)).astype(np.float32)
        write_logits(logits_out, names, logits.reshape(len(kept), len(classifier.classes)), classifier.classes,
                     source=" + ".join(m.name for m in classifier.members))
    text = "\n".join(lines) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write(out, lambda tmp: Path(tmp).write_text(text), overwrite=overwrite)
    return len(lines) - 1, failed

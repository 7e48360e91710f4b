"""The DCASE 2025 Task 1 inference interface, as the organisers' inference-package template calls it
(`evaluate_submission.py`, `test_complexity.py`): load_model → an nn.Module whose `.model` holds the general
and device-specific networks; load_inputs → one model-ready feature tensor per file; get_model_for_device →
an nn.Module whose parameters have the dtypes they are counted at (fp16, or int8 conv weights); predict →
(per-file logits, class order). `write_package` writes the installable package the template expects."""
import copy
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from tinyasc.audio import load_audio, windows_of
from tinyasc.errors import TinyascError
from tinyasc.frontend import make_frontend
from tinyasc.predict import CHECKPOINT_EXTENSIONS, clip_seconds_of

MODEL_ENV = "TINYASC_MODEL"  # where load_model(None) looks when no packaged checkpoint is given
DEVICE_IDS = ("a", "b", "c", *(f"s{i}" for i in range(1, 11)))  # what test_complexity.py checks, s7–s10 unseen


# ---------------------------------------------------------------------------------------------
# Networks whose parameters have the dtypes they are counted at

class Int8Conv2d(nn.Conv2d):
    """A convolution whose weight is stored as int8 codes (an int8 nn.Parameter, so a byte counter that
    reads parameter dtypes sees 1 byte per weight) times one float32 scale (a buffer: quantization
    metadata, not counted, as in tinyasc.complexity); bias as its storage keeps it. Weight-only int8: the
    codes are dequantized to the input's dtype and the convolution runs in float (PyTorch)."""

    @classmethod
    def from_float(cls, conv, codes, scale):
        q = copy.copy(conv)  # keeps stride, padding, groups … and the bias parameter
        q.__class__ = cls
        q._parameters = dict(conv._parameters)
        q.weight = nn.Parameter(codes.to(torch.int8), requires_grad=False)
        q.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(-1, 1, 1, 1)
                          if torch.as_tensor(scale).numel() > 1 else torch.as_tensor(scale, dtype=torch.float32))
        return q

    def forward(self, x):
        weight = self.weight.to(x.dtype) * self.scale.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return self._conv_forward(x, weight, bias)


class StoredNet(nn.Module):
    """One network at its deployment storage: `net`'s parameters are fp16 ("fp16"), int8 conv weights +
    fp16 rest ("dcase", a compressed checkpoint) or fp32. forward takes float32 features (B, 1, F, T) and
    returns float32 logits (B, K): computed in fp16 on CUDA when the storage is fp16, else with the stored
    values upcast to fp32 (fp16 convolutions are slow on CPUs without native fp16 arithmetic)."""

    def __init__(self, net, storage):
        super().__init__()
        self.net, self.storage = net, storage

    def forward(self, x):
        params = dict(self.net.named_parameters())
        first = next(iter(params.values()))
        if self.storage == "fp16" and first.is_cuda and first.dtype == torch.float16:
            return self.net(x.half()).float()
        upcast = {name: t.float() for name, t in [*params.items(), *self.net.named_buffers()]
                  if t.is_floating_point() and t.dtype != torch.float32}
        return functional_call(self.net, upcast, (x.float(),)) if upcast else self.net(x.float())


def stored_net(model, storage, codes=None):
    """StoredNet of a float model whose weights are already at `storage` (checkpoint.apply_storage).
    `codes` ({conv module name: (int8 codes, scale)}): a compressed checkpoint's own codes."""
    from tinyasc.checkpoint import INT8_MAX

    net = copy.deepcopy(model).eval()
    if storage in ("dcase", "int8") or codes:
        for name, module in list(net.named_modules()):
            if type(module) is nn.Conv2d or (codes and name in codes):
                if codes and name in codes:
                    q, scale = codes[name]
                else:  # the weights are on a per-tensor 8-bit grid: recover the codes exactly
                    amax = module.weight.detach().abs().max()
                    scale = amax / INT8_MAX if amax > 0 else torch.ones(())
                    q = torch.round(module.weight.detach() / scale)
                parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
                setattr(parent, name.rsplit(".", 1)[-1], Int8Conv2d.from_float(module, q, scale))
    if storage in ("fp16", "dcase") or codes:
        for module in net.modules():
            for pname, p in list(module.named_parameters(recurse=False)):
                if p.is_floating_point():
                    setattr(module, pname, nn.Parameter(p.detach().half(), requires_grad=False))
        for module in net.modules():  # running statistics travel with the norms they belong to
            for bname, b in list(module.named_buffers(recurse=False)):
                if b.is_floating_point() and bname != "scale":
                    module.register_buffer(bname, b.half())
    for p in net.parameters():
        p.requires_grad_(False)
    return StoredNet(net, storage or "compressed")


class DeviceModels(nn.Module):
    """The general network and one per recording device: `models["general"]`, `models[device id]`."""

    def __init__(self, general, devices):
        super().__init__()
        self.models = nn.ModuleDict({"general": general, **devices})

    def get_model_for_device(self, device_id):
        key = str(device_id).lower()
        return self.models[key] if key != "general" and key in self.models else self.models["general"]

    def forward(self, x, device_ids):  # x (B, 1, F, T), one device id per row
        return torch.cat([self.get_model_for_device(d)(x[i:i + 1]) for i, d in enumerate(device_ids)])


class Submission(nn.Module):
    """What load_model returns: `.model` (DeviceModels) plus the front end, class order and window length."""

    def __init__(self, models, feature_cfg, classes, clip_seconds, storage, path):
        super().__init__()
        self.model = models
        self.frontend = make_frontend(feature_cfg).eval()
        self.feature_cfg, self.class_order = feature_cfg, list(classes)
        self.sample_rate, self.clip_seconds, self.storage, self.path = feature_cfg.sample_rate, clip_seconds, storage, path

    def forward(self, x, device_ids):
        return self.model(x, device_ids)


# ---------------------------------------------------------------------------------------------
# The template's API

def load_model(model_file_path: str | None = None, use_cuda: bool = False, *, default: str | None = None) -> Submission:
    """The submission model from a tinyasc checkpoint (a device checkpoint from `tinyasc finetune-devices`
    or a single model). None takes `default` (the checkpoint a package ships, see write_package), else
    $TINYASC_MODEL. Weights are rounded to the checkpoint's deployment storage (checkpoint.deploy_storage)."""
    from tinyasc.checkpoint import apply_storage, deploy_storage, device_models, load_checkpoint

    path = model_file_path or default or os.environ.get(MODEL_ENV)
    if not path:
        raise TinyascError(f"load_model: give model_file_path, or package a checkpoint (tinyasc package), or set ${MODEL_ENV}")
    if Path(path).suffix.lower() not in CHECKPOINT_EXTENSIONS:
        raise TinyascError(f"{path}: the DCASE 2025 interface takes a tinyasc checkpoint ({', '.join(CHECKPOINT_EXTENSIONS)})")
    general, feature_cfg, classes, payload = load_checkpoint(path)
    storage = deploy_storage(payload)
    if storage == "int8":
        raise TinyascError(f"{path}: storage 'int8' (norms in 8 bits too) has no runtime here; deploy as 'dcase' "
                           "(8-bit conv weights, fp16 norms and biases)")
    codes = _stored_codes(payload)
    devices = {d: stored_net(apply_storage(m, storage), storage) for d, m in device_models(path, general).items()}
    model = Submission(DeviceModels(stored_net(apply_storage(general, storage), storage, codes), devices),
                       feature_cfg, classes, clip_seconds_of(payload), storage, str(path))
    device = "cuda" if use_cuda and torch.cuda.is_available() else "cpu"
    return model.eval().to(device)


def _stored_codes(payload):
    """{conv module name: (int8 codes, scale)} of a compressed checkpoint (tinyasc compress), else None.
    (finetune-devices refuses compressed checkpoints, so only the general model has them.)"""
    stored = payload.get("quantization")
    if not stored:
        return None
    return {key.rsplit(".", 1)[0]: (payload["state_dict"][key], scale) for key, scale in stored["scales"].items()}


def _windows(file_paths, model):
    """[(features (W, 1, F, T) float32, window weights (W,))] per file: a file longer than the training clip
    is cut into windows of it (as tinyasc predict), a shorter one zero-padded to one window."""
    window = int(round(model.clip_seconds * model.sample_rate))
    device = next(model.frontend.buffers(), torch.zeros(())).device
    out = []
    for path in file_paths:
        windows, weights = windows_of(load_audio(path, model.sample_rate), window)
        with torch.inference_mode():
            features = model.frontend(torch.from_numpy(windows).to(device)).float().cpu()
        out.append((features.clone(), weights))
    return out


def load_inputs(file_paths: list, device_ids: list, model: Submission) -> list:
    """One model-ready float32 tensor (W, 1, F, T) per file, W = 1 for a clip no longer than the training
    clip (every DCASE 2025 clip): features of the file's windows, ready for get_model_for_device(...)."""
    if len(file_paths) != len(device_ids):
        raise TinyascError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    return [features for features, _ in _windows(file_paths, model)]


def get_model_for_device(model: Submission, device_id: str) -> nn.Module:
    """The network of `device_id` (the general one for a device without its own: unseen or unknown), an
    nn.Module with its parameters in the dtypes they are counted at."""
    return model.model.get_model_for_device(device_id)


def predict(file_paths: list, device_ids: list, model_file_path: str | None = None, use_cuda: bool = True,
            model: Submission | None = None, *, default: str | None = None) -> tuple:
    """(per-file logits: a list of (K,) float32 tensors, class order). A one-window file's logits are the
    network's; a longer file's are the log of its window probabilities averaged by real-audio share."""
    if len(file_paths) != len(device_ids):
        raise TinyascError(f"{len(file_paths)} files but {len(device_ids)} device ids")
    model = model or load_model(model_file_path, use_cuda, default=default)
    param = next(model.model.parameters())
    outputs = []
    with torch.inference_mode():
        for (features, weights), device_id in zip(_windows(file_paths, model), device_ids):
            logits = get_model_for_device(model, device_id)(features.to(param.device)).float().cpu()
            if len(logits) > 1:
                probs = torch.from_numpy(weights).float() @ torch.softmax(logits, dim=1)
                logits = torch.log(probs.clamp_min(1e-12))[None]
            outputs.append(logits[0])
    return outputs, list(model.class_order)


def check_complexity(model_file_path: str, rule_set: str = "dcase2025", storage: str | None = None) -> dict:
    """{"general" or device id: check_rules report} for every model in a tinyasc checkpoint, counted at
    `storage` (default: the checkpoint's deployment storage): the 2025 rules apply to each model on its own."""
    from tinyasc.checkpoint import deploy_storage, device_models, load_checkpoint, stored_bits
    from tinyasc.rules import check_all

    if Path(model_file_path).suffix.lower() not in CHECKPOINT_EXTENSIONS:
        raise TinyascError(f"{model_file_path}: complexity is checked on the checkpoint, not an exported graph")
    general, feature_cfg, _, payload = load_checkpoint(model_file_path)
    seconds, bits = clip_seconds_of(payload), stored_bits(payload)
    storage = storage or deploy_storage(payload)
    reports = {"general": check_all(general, feature_cfg, seconds, bits, scheme=storage)[rule_set]}
    for device, model in device_models(model_file_path, general).items():
        reports[device] = check_all(model, feature_cfg, seconds, bits, scheme=storage)[rule_set]
    return reports


# ---------------------------------------------------------------------------------------------
# The installable package the template expects

MODULE_TEMPLATE = '''"""DCASE 2025 Task 1 inference module {module} (written by `tinyasc package`): the organisers' API over
the tinyasc checkpoint shipped in ckpts/{ckpt}. Storage: {storage}."""
from importlib import resources

import tinyasc.dcase2025 as _api

CHECKPOINT = "{ckpt}"


def _default():
    return str(resources.files("{package}.ckpts").joinpath(CHECKPOINT))


def load_model(model_file_path=None, use_cuda=False):
    return _api.load_model(model_file_path, use_cuda, default=_default())


def load_inputs(file_paths, device_ids, model):
    return _api.load_inputs(file_paths, device_ids, model)


def get_model_for_device(model, device_id):
    return _api.get_model_for_device(model, device_id)


def predict(file_paths, device_ids, model_file_path=None, use_cuda=True):
    return _api.predict(file_paths, device_ids, model_file_path, use_cuda, default=_default())
'''

# What the package needs where the organisers install it (`pip install -e .`, then their scripts in that
# environment): tinyasc (torch, numpy, soundfile, soxr, scikit-learn) and what the template's own scripts import
# beyond it: pandas (evaluate_submission.py) and torchinfo (complexity.py, via test_complexity.py);
# CPJKU/dcase2025_task1_inference lists both in its requirements.txt, which its setup.py installs.
TEMPLATE_SCRIPT_REQUIREMENTS = ("pandas", "scikit-learn", "torchinfo")

SETUP_TEMPLATE = '''from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="{package}",
    version="0.1.0",
    description="DCASE 2025 Task 1 inference package (tinyasc)",
    packages=find_packages(),
    # requirements.txt: tinyasc and what the organisers' evaluate_submission.py / test_complexity.py import
    install_requires=[r for r in Path(__file__).with_name("requirements.txt").read_text().splitlines() if r.strip()],
    include_package_data=True,
    package_data={{"{package}": ["resources/*.wav", "resources/*.csv", "ckpts/*.pt"]}},
    python_requires=">=3.11",
)
'''


def write_package(checkpoint, out_dir, label, test_csv=None, *, force=False, seconds=1.0, requirement="tinyasc"):
    """Write (or add a module to) the inference package for submission `label` (Lastname_Inst_task1_N) in
    OUT: setup.py, requirements.txt, PACKAGE/__init__.py, PACKAGE/LABEL.py (the API over the checkpoint),
    PACKAGE/ckpts/LABEL.pt, PACKAGE/resources/{test.csv, dummy.wav}. PACKAGE is the label without its index;
    up to four modules (N = 1…4) share one package. `test_csv`: the development test split
    (filename<TAB>scene_label, e.g. DATA/evaluation_setup/fold1_evaluate.csv). `requirement`: how pip finds
    tinyasc where the package is installed (a name, or `tinyasc @ git+https://…`). Returns the written paths."""
    if not requirement or any(ch in requirement for ch in "\n\r"):
        raise TinyascError(f"requirement {requirement!r}: expected one pip requirement line, e.g. "
                           "'tinyasc @ git+https://github.com/you/tinyasc'")
    import soundfile as sf

    from tinyasc.checkpoint import deploy_storage, read_checkpoint
    from tinyasc.paths import atomic_write_text, check_output
    from tinyasc.submission import check_label

    check_label(label)
    package = label.rsplit("_", 1)[0]
    payload = read_checkpoint(checkpoint)
    reports = check_complexity(checkpoint)
    failing = [name for name, r in reports.items() if not r["pass"]]
    if failing:
        raise TinyascError(f"{checkpoint}: {', '.join(failing)} model(s) break the DCASE 2025 limits at storage "
                           f"{deploy_storage(payload) or 'as compressed'} (tinyasc info {checkpoint} --rules dcase2025)")
    load_model(checkpoint)  # refuse a checkpoint the interface cannot run before writing anything
    root = Path(out_dir)
    pkg = root / package
    module, ckpt = pkg / f"{label}.py", pkg / "ckpts" / f"{label}.pt"
    for path in (module, ckpt):
        check_output(path, force=force, what="package file")
    for folder in (pkg / "ckpts", pkg / "resources"):
        check_output(folder, kind="dir", force=True)
    written = []

    def text(path, content):
        atomic_write_text(path, content)
        written.append(path)

    text(root / "setup.py", SETUP_TEMPLATE.format(package=package))
    text(root / "requirements.txt", "\n".join((requirement, *TEMPLATE_SCRIPT_REQUIREMENTS)) + "\n")
    text(pkg / "__init__.py", "")
    text(pkg / "ckpts" / "__init__.py", "")
    text(pkg / "resources" / "__init__.py", "")
    shutil.copyfile(checkpoint, ckpt)
    written.append(ckpt)
    text(module, MODULE_TEMPLATE.format(module=label, package=package, ckpt=ckpt.name,
                                        storage=deploy_storage(payload) or "compressed (int8 + fp16)"))
    if test_csv is not None:
        rows = [line.split("\t") for line in Path(test_csv).read_text(encoding="utf-8").splitlines() if line.strip()]
        if not rows or rows[0][:1] != ["filename"]:
            raise TinyascError(f"{test_csv}: expected a tab-separated split file with a 'filename' column")
        text(pkg / "resources" / "test.csv", "\n".join("\t".join(r) for r in rows) + "\n")
    dummy = pkg / "resources" / "dummy.wav"
    if not dummy.exists():  # 1 s of quiet noise at 44.1 kHz: test_complexity.py's input
        noise = np.random.default_rng(0).normal(0, 0.01, int(44100 * seconds)).astype(np.float32)
        sf.write(dummy, noise, 44100, subtype="PCM_16")
        written.append(dummy)
    return written

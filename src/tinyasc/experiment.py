"""Experiments (one paper-table row each): a model preset with config overrides, a front end, a
training recipe and runtime settings, loaded from a TOML file in configs/ plus `--set` overrides; and
the merge of a [compress] section over a teacher checkpoint's experiment for `tinyasc compress`."""
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tinyasc.config import config_from_dict
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.models import model_config
from tinyasc.train import RUNTIME_FIELDS, RuntimeConfig, TrainConfig

SECTIONS = ("model", "features", "train", "runtime")
# recipe fields whose default changed: the value a run saved before the field existed was trained with
LEGACY_TRAIN = {"spec_fill": "clip_mean", "validation": 0.0, "select_split": "evaluate"}


@dataclass(frozen=True)
class Experiment:
    """One paper-table row: a model preset with config overrides, a front end, a training recipe, and
    the runtime settings it runs with (which are not part of its identity)."""
    name: str
    model: str
    model_overrides: dict = field(default_factory=dict)
    features: FeatureConfig = FeatureConfig()
    train: TrainConfig = TrainConfig()
    description: str = ""
    runtime: RuntimeConfig = RuntimeConfig()

    def resolved(self):
        """Plain dict with every field resolved (written next to results and into checkpoints)."""
        return {**self.recipe(), "runtime": dataclasses.asdict(self.runtime)}

    def recipe(self):
        """resolved() without the runtime settings: what identifies the experiment (a run's seed included)."""
        arch, cfg = model_config(self.model, **self.model_overrides)
        return {"name": self.name, "description": self.description, "model": self.model, "arch": arch,
                "model_config": dataclasses.asdict(cfg), "model_overrides": dict(self.model_overrides),
                "features": self.features.to_dict(), "train": dataclasses.asdict(self.train)}


def recipe_of(resolved):
    """The recipe part of a resolved-experiment dict, also of one written before the recipe/runtime
    split (runtime fields then sat in "train"), with "auto" SpecAugment decided as it was then."""
    # fields added since a run was started take their defaults, or where a new default changed what a
    # recipe computes, the value that reproduces the old behaviour (LEGACY_TRAIN)
    train = {**dataclasses.asdict(TrainConfig()), **LEGACY_TRAIN, **resolved.get("train", {})}
    train = {k: v for k, v in train.items() if k not in RUNTIME_FIELDS}
    if train.get("spec_augment") == "auto":
        train["spec_augment"] = "on" if resolved.get("model_config", {}).get("base_channels", 0) >= 80 else "off"
    out = {k: v for k, v in resolved.items() if k != "runtime"}
    return json.loads(json.dumps({**out, "train": train}))  # tuples → lists, as read back from JSON


def parse_override(text):
    """'train.epochs=10' → (("train", "epochs"), 10); values parse as TOML, else as plain strings."""
    if "=" not in text:
        raise TinyascError(f"bad --set {text!r}: expected SECTION.FIELD=VALUE, e.g. train.epochs=10")
    key, value = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        pass  # a bare word such as none or pcen
    return tuple(key.strip().split(".")), value


def read_toml(path):
    """The dict of a TOML file, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise TinyascError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TinyascError(f"{path}: not valid TOML ({e})") from None


def check_sections(loaded, where):
    """A loaded TOML's shape: [model], [features], [train], [runtime] and [compress] are tables of fields,
    and name / description are text (a number is taken as its text). One line per misshapen entry."""
    for key, value in loaded.items():
        if key in (*SECTIONS, "compress") and not isinstance(value, dict):
            shape = "an array of tables ([[" + key + "]])" if isinstance(value, list) else repr(value)
            raise TinyascError(f"{where}: {key} must be a [{key}] table of fields (FIELD = VALUE lines under "
                               f"a [{key}] header), not {shape}")
        if key in ("name", "description"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                loaded[key] = str(value)
            elif not isinstance(value, str):
                raise TinyascError(f"{where}: {key} must be text, not {value!r}")
    return loaded


def load_experiment(path=None, overrides=(), base=None):
    """Experiment from a TOML file (sections [model] with `preset` + config fields, [features], [train],
    [runtime]) and `--set` overrides. `base` is a dict used under the file (a teacher's experiment)."""
    data = {section: {} for section in SECTIONS}
    for k, v in (base or {}).items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    if path is not None:
        loaded = check_sections(read_toml(path), path)
        data.update({k: {**data.get(k, {}), **v} if isinstance(v, dict) and k != "model" else v
                     for k, v in loaded.items()})
        if "name" not in loaded:
            data["name"] = Path(path).stem
    for keys, value in map(parse_override, overrides):
        if len(keys) == 1 and keys[0] in ("name", "description"):
            data[keys[0]] = str(value)
        elif len(keys) == 2 and keys[0] in SECTIONS:
            data[keys[0]][keys[1]] = value
        else:
            raise TinyascError(f"bad --set key {'.'.join(keys)!r}: use name, model.FIELD, features.FIELD, "
                               "train.FIELD or runtime.FIELD")
    # [compress] belongs to `tinyasc compress` (see compress_sections); training ignores it
    unknown = set(data) - {"name", "description", *SECTIONS, "compress"}
    if unknown:
        raise TinyascError(f"{path or 'config'}: unknown config section(s) {sorted(unknown)}")
    return experiment_from_sections(data, where=path or "config")


def experiment_from_sections(data, where="config"):
    """Experiment from a dict of sections (as load_experiment merges them)."""
    model = dict(data.get("model", {}))
    preset = model.pop("preset", None)
    if not preset:
        raise TinyascError(f"{where}: [model] needs a preset, e.g. preset = \"bc_resnet_asc_1\"")
    train, runtime = dict(data.get("train", {})), dict(data.get("runtime", {}))
    for name in RUNTIME_FIELDS:  # runtime fields under [train]: configs and checkpoints from before the split
        if name in train:
            runtime.setdefault(name, train.pop(name))
    arch, model_cfg = model_config(preset, **model)  # validates the preset and overrides with a clear message
    if train.get("spec_augment") == "auto":  # older configs: on for the large model (c ≥ 80), as the paper
        train["spec_augment"] = "on" if getattr(model_cfg, "base_channels", 0) >= 80 else "off"
    features = config_from_dict(FeatureConfig, dict(data.get("features", {})), "feature config")
    model_mels = getattr(model_cfg, "n_mels", None)
    if model_mels is not None and model_mels != features.n_mels:
        raise TinyascError(f"{where}: features.n_mels = {features.n_mels} but the model expects "
                           f"model.n_mels = {model_mels}; set both to the same value")
    return Experiment(name=str(data.get("name") or preset), model=preset, model_overrides=model, features=features,
                      train=config_from_dict(TrainConfig, train),
                      runtime=config_from_dict(RuntimeConfig, runtime),
                      description=str(data.get("description", "")))


def compress_sections(base, config=None, sets=()):
    """(experiment sections, [compress] dict, remaining `--set` strings) for `tinyasc compress`:
    `base` (the teacher's sections with the fine-tuning recipe) ← the TOML file `config` (a [model]
    section replaces the teacher's, then it is checked against the teacher; [compress] holds
    CompressConfig fields) ← `sets` ("compress.prune=0.8" here; the others for load_experiment)."""
    data = json.loads(json.dumps(base))
    compress = {}
    if config is not None:
        path = Path(config)
        loaded = check_sections(read_toml(path), path)
        compress = dict(loaded.pop("compress", {}))
        data["name"] = loaded.pop("name", path.stem)
        for key, value in loaded.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) and key != "model" else value
    other_sets = []
    for text in sets:
        keys, value = parse_override(text)
        if keys[0] == "compress" and len(keys) == 2:
            compress[keys[1]] = value
        else:
            other_sets.append(text)
    return data, compress, other_sets


def check_input_fits(exp, clip_samples, classes, where="the data"):
    """Cross-config rules that need the data, checked before any work: the model's classes are the
    data's, and clips of `clip_samples` samples give enough frames for the model's stem and pools."""
    _, model_cfg = model_config(exp.model, **exp.model_overrides)
    if model_cfg.num_classes != len(classes):
        raise TinyascError(f"model.num_classes = {model_cfg.num_classes} but {where} has {len(classes)} classes "
                           f"({', '.join(classes)}); set model.num_classes = {len(classes)}")
    frames, need = exp.features.num_frames(clip_samples), model_cfg.min_frames()
    if frames < need:
        seconds = clip_samples / exp.features.sample_rate
        raise TinyascError(f"features: {seconds:g} s clips at sample_rate {exp.features.sample_rate} and hop_length "
                           f"{exp.features.hop_length} give {frames} frame(s), but {exp.model} needs at least {need} "
                           f"after its stem and pools; lower features.hop_length or raise features.sample_rate")

"""The config schema (issue 25, root cause 2): every field of every config class is checked for its type,
finiteness and declared range before any work, and the error names the field and what it allows; values
a rule accepts really work (a model builds and runs, a front end gives finite features)."""
import dataclasses
import math

import pytest
import torch

from tinyasc.compress.pipeline import CompressConfig
from tinyasc.config import config_from_dict, rule_of
from tinyasc.errors import TinyascError
from tinyasc.experiment import load_experiment
from tinyasc.features import FeatureConfig
from tinyasc.frontend import make_frontend
from tinyasc.models import ARCHITECTURES, build_model
from tinyasc.models.baselines import BCResNetConfig, CPResNetConfig
from tinyasc.models.bc_resnet import BCResNetASCConfig
from tinyasc.train import RuntimeConfig, TrainConfig

# small but valid starting points (a fast model per class); the walk changes one field at a time
BASES = {
    TrainConfig: {}, RuntimeConfig: {}, CompressConfig: {}, FeatureConfig: {},
    BCResNetASCConfig: {"base_channels": 2, "n_mels": 64},
    BCResNetConfig: {"tau": 0.5, "n_mels": 64},
    CPResNetConfig: {"base_channels": 4, "n_mels": 64, "stage_blocks": (1, 1, 1), "pool_after": ((1,), (), ())},
}
# fields where zero is meaningful (off, none, unbounded, "as many as needed"); every other field refuses it
ZERO_OK = {
    TrainConfig: {"warmup_epochs", "momentum", "weight_decay", "mixup_alpha", "roll_seconds", "spec_freq_width",
                  "spec_time_masks", "spec_freq_masks", "freq_mixstyle_p", "dir_p", "kd_weight", "seed",
                  "validation_seed"},
    RuntimeConfig: {"extract_workers", "threads"},
    CompressConfig: {"prune", "bits", "kd_alpha", "prune_min_keep"},
    FeatureConfig: {"f_min"},
    BCResNetASCConfig: {"dropout", "resnorm_lambda", "pool_after"},  # pool_after (0,): after the first stage
    BCResNetConfig: {"dropout", "freq_stride_stages"},
    CPResNetConfig: {"rho", "pool_after"},  # pool_after position 0: before the first block
}
WRONG_TYPE = {int: "ten", float: "ten", str: 12, bool: "yes", tuple: 3}


def kind(f):
    args = getattr(f.type, "__args__", None)
    return next(a for a in args if a is not type(None)) if args else f.type


def cases():
    for cls, base in BASES.items():
        for f in dataclasses.fields(cls):
            for label in ("wrong type", "negative", "zero", "inf", "nan"):
                yield pytest.param(cls, base, f, label, id=f"{cls.__name__}.{f.name}-{label}")


def bad_value(f, label):
    k = kind(f)
    if label == "wrong type":
        return WRONG_TYPE[k]
    number = {"negative": -1, "zero": 0, "inf": math.inf, "nan": math.nan}[label]
    if k is tuple:  # a list field gets the number as its one element
        return (number,)
    return number


def accepted_values_work(cfg):
    """A config the schema accepts is usable: its model builds and runs, its front end gives finite features."""
    if isinstance(cfg, FeatureConfig):
        x = make_frontend(cfg)(0.1 * torch.randn(1, cfg.sample_rate))
        assert bool(torch.isfinite(x).all())
    arch = {c: a for a, (_, c) in ARCHITECTURES.items()}.get(type(cfg))
    if arch:
        model = build_model(arch, cfg).eval()
        with torch.no_grad():
            out = model(torch.randn(2, getattr(cfg, "in_channels", 1), cfg.n_mels, max(32, cfg.min_frames())))
        assert out.shape == (2, cfg.num_classes)


@pytest.mark.parametrize("cls, base, f, label", list(cases()))
def test_every_field_refuses_bad_values_naming_the_field(cls, base, f, label):
    value = bad_value(f, label)
    if rule_of(f).path and (label in ("negative", "zero") or (label == "wrong type" and kind(f) is str)):
        expected = tuple(map(str, value)) if isinstance(value, tuple) else str(value)  # a folder named 2024
        assert getattr(config_from_dict(cls, {**base, f.name: value}), f.name) == expected
        return
    if f.name == "pool_after" and cls is CPResNetConfig and label != "wrong type":
        value = ((value[0],), (), ())  # per stage
    accept = label == "zero" and f.name in ZERO_OK[cls] and kind(f) is not bool  # 0 is not a boolean
    if accept:
        accepted_values_work(config_from_dict(cls, {**base, f.name: value}))
        return
    with pytest.raises(TinyascError) as e:
        config_from_dict(cls, {**base, f.name: value})
    assert f.name in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["features.f_min=9000"], "f_min (9000) must be below"),
    (["features.f_max=12000"], "Nyquist"),
    (["features.pcen_time_constant=0", "features.kind=pcen"], "pcen_time_constant must be > 0"),
    (["train.seed=99999999999999999999"], "train.seed must be in [0, 4294967295]"),
    (["runtime.threads=99999999999999999999"], "runtime.threads must fit in 64 bits"),
    (["train.seed=5000000000"], "train.seed must be in [0, 4294967295]"),
    (["train.weight_decay=inf"], "train.weight_decay must be a finite number >= 0"),
    (["train.warmup_epochs=inf"], "train.warmup_epochs must be a finite number >= 0"),
    (["train.spec_fill=3"], "train.spec_fill must be a string"),
    (["model.sub_bands=0"], "model.sub_bands must be >= 1"),
    (["model.stage_blocks=[2, 0, 2, 3]"], "model.stage_blocks[1] must be >= 1"),
    (["model.stage_widths=[1, -1, 2, 2]"], "model.stage_widths[1] must be > 0"),
    (["model.base_channels=1", "model.stage_widths=[0.5, 1, 1, 1]"], "at least 1 channel per stage"),
])
def test_cross_field_and_range_rules_name_the_field(overrides, message):
    with pytest.raises(TinyascError) as e:
        load_experiment(None, overrides, base={"model": {"preset": "bc_resnet_asc_1"}})
    assert message in str(e.value), str(e.value)


def test_a_path_given_as_a_number_is_a_folder_name():
    exp = load_experiment(None, ["train.dir_folder=2024", "name=2024"], base={"model": {"preset": "bc_resnet_asc_1"}})
    assert exp.train.dir_folder == "2024" and exp.name == "2024"


@pytest.mark.parametrize("toml, message", [
    ('model = "x"\n', "model must be a [model] table"),
    ("[[train]]\nepochs = 1\n", "array of tables"),
    ("train = 3\n", "train must be a [train] table"),
    ('[model]\npreset = "bc_resnet_asc_1"\n[compress]\nprune = "lots"\n', None),  # compress is the compress command's
    ("description = [1]\n", "description must be text"),
])
def test_toml_of_the_wrong_shape_is_one_line(tmp_path, toml, message):
    path = tmp_path / "x.toml"
    path.write_text(toml)
    if message is None:
        assert load_experiment(path).model == "bc_resnet_asc_1"
        return
    with pytest.raises(TinyascError, match=message.replace("[", "\\[").replace("]", "\\]")):
        load_experiment(path, base={"model": {"preset": "bc_resnet_asc_1"}})

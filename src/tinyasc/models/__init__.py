"""Model registry: architectures (class + frozen config) and named presets (a plain dict, no decorators)."""
import dataclasses

from tinyasc.errors import TinyascError
from tinyasc.models.baselines import CPResNet, CPResNetConfig, OriginalBCResNet, OriginalBCResNetConfig
from tinyasc.models.bc_resnet import BCResNet, BCResNetConfig

# architecture name → (module class, config class); a checkpoint stores the architecture name + config
ARCHITECTURES = {
    "bc_resnet": (BCResNet, BCResNetConfig),
    "bc_resnet_original": (OriginalBCResNet, OriginalBCResNetConfig),
    "cp_resnet": (CPResNet, CPResNetConfig),
}

# preset name → (architecture, config overrides, one-line description)
MODELS = {
    "bc_resnet_asc_1": ("bc_resnet", {"base_channels": 10}, "BC-ResNet-ASC-1 (c=10) + ResNorm, Table 1"),
    "bc_resnet_asc_8": ("bc_resnet", {"base_channels": 80}, "BC-ResNet-ASC-8 (c=80) + ResNorm, Table 1"),
    "bc_resnet_asc_dcase2024_fp16": ("bc_resnet", {"base_channels": 34},
                                     "largest BC-ResNet-ASC + ResNorm (c=34) within the 2022+ limits stored in fp16"),
    "bc_resnet_asc_dcase2024_int8": ("bc_resnet", {"base_channels": 49},
                                     "largest BC-ResNet-ASC + ResNorm (c=49) within the 2022+ limits stored in int8"),
    "bc_resnet_8": ("bc_resnet_original", {"tau": 8, "sub_bands": 4},
                    "original BC-ResNet-8 (KWS layout, time dilation), 4 SSN groups, Table 2"),
    "cp_resnet": ("cp_resnet", {"base_channels": 64, "rho": 5}, "CP-ResNet (c=64, rho=5), Table 2"),
}


def list_models():
    return sorted(MODELS)


def config_from_dict(cls, d):
    """Build a frozen config dataclass from a plain dict (JSON lists become tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise TinyascError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    for f in dataclasses.fields(cls):  # a number field given a word (e.g. --set train.epochs=abc)
        if f.name in d and isinstance(f.default, (int, float)) and not isinstance(f.default, bool) \
                and not isinstance(d[f.name], (int, float)):
            raise TinyascError(f"bad {cls.__name__}: {f.name} must be a number, not {d[f.name]!r}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    except (TypeError, ValueError) as e:
        raise TinyascError(f"bad {cls.__name__}: {e}") from None


def model_config(name, **overrides):
    """(architecture, config) of preset `name` with fields overridden."""
    if name not in MODELS:
        raise TinyascError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    arch, preset, _ = MODELS[name]
    cls = ARCHITECTURES[arch][1]
    return arch, config_from_dict(cls, {**preset, **overrides})


def build_model(arch, cfg):
    """Instantiate architecture `arch` from a config object or dict."""
    if arch not in ARCHITECTURES:
        raise TinyascError(f"unknown architecture {arch!r}; available: {', '.join(sorted(ARCHITECTURES))}")
    model_cls, cfg_cls = ARCHITECTURES[arch]
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg_cls, cfg)
    return model_cls(cfg)


def create_model(name, **overrides):
    """A fresh model of preset `name`, e.g. create_model("bc_resnet_asc_1", resnorm="none")."""
    return build_model(*model_config(name, **overrides))

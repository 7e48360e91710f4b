"""Model registry: architectures (class + frozen config) and named presets (a plain dict, no decorators)."""
from tinyasc.config import config_from_dict  # noqa: F401 (re-exported: the one config parser)
from tinyasc.errors import TinyascError
from tinyasc.models.baselines import CPResNet, CPResNetConfig, BCResNet, BCResNetConfig
from tinyasc.models.bc_resnet import BCResNetASC, BCResNetASCConfig

# architecture name → (module class, config class); a checkpoint stores the architecture name + config
ARCHITECTURES = {
    "bc_resnet_asc": (BCResNetASC, BCResNetASCConfig),
    "bc_resnet_original": (BCResNet, BCResNetConfig),
    "cp_resnet": (CPResNet, CPResNetConfig),
}

# older names of architectures, still accepted (checkpoints written before the rename load unchanged)
ARCH_ALIASES = {"bc_resnet": "bc_resnet_asc"}


def canonical_arch(name):
    return ARCH_ALIASES.get(name, name)


# preset name → (architecture, config overrides, one-line description)
MODELS = {
    "bc_resnet_asc_1": ("bc_resnet_asc", {"base_channels": 10}, "BC-ResNet-ASC-1 (c=10) + ResNorm, Table 1"),
    "bc_resnet_asc_8": ("bc_resnet_asc", {"base_channels": 80}, "BC-ResNet-ASC-8 (c=80) + ResNorm, Table 1"),
    "bc_resnet_asc_dcase2024_fp16": ("bc_resnet_asc", {"base_channels": 34},
                                     "largest BC-ResNet-ASC + ResNorm (c=34) within the 2022+ limits stored in fp16"),
    "bc_resnet_asc_dcase2024_int8": ("bc_resnet_asc", {"base_channels": 47},
                                     "largest BC-ResNet-ASC + ResNorm (c=47) within the 2022+ limits with 8-bit "
                                     "conv weights and fp16 norms/biases"),
    "bc_resnet_8": ("bc_resnet_original", {"tau": 8, "sub_bands": 4},
                    "original BC-ResNet-8 (KWS layout, time dilation), 4 SSN groups, Table 2"),
    "cp_resnet": ("cp_resnet", {"base_channels": 64, "rho": 5}, "CP-ResNet (c=64, rho=5), Table 2"),
}


def list_models():
    return sorted(MODELS)


def model_config(name, **overrides):
    """(architecture, config) of preset `name` with fields overridden."""
    if name not in MODELS:
        raise TinyascError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    arch, preset, _ = MODELS[name]
    cls = ARCHITECTURES[arch][1]
    return arch, config_from_dict(cls, {**preset, **overrides})


def build_model(arch, cfg):
    """Instantiate architecture `arch` (or an old alias of it) from a config object or dict."""
    arch = canonical_arch(arch)
    if arch not in ARCHITECTURES:
        raise TinyascError(f"unknown architecture {arch!r}; available: {', '.join(sorted(ARCHITECTURES))}")
    model_cls, cfg_cls = ARCHITECTURES[arch]
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg_cls, cfg)
    return model_cls(cfg)


def create_model(name: str, **overrides) -> "torch.nn.Module":  # noqa: F821
    """A fresh model of preset `name`, e.g. create_model("bc_resnet_asc_1", resnorm="none")."""
    return build_model(*model_config(name, **overrides))

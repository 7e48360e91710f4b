"""Every registered model: shapes, finiteness, documented parameter counts; BC-ResNet-ASC structure."""
import pytest
import torch

from tinyasc.complexity import count_params, receptive_field
from tinyasc.errors import TinyascError
from tinyasc.models import MODELS, create_model, list_models
from tinyasc.models.norm import ResNorm

# exact counts printed in the README; the paper rounds them (Table 1-2: 8.1k, 315k); the Table 2
# baselines differ slightly from the paper's 317k / 899k, see tinyasc.models.baselines
DOCUMENTED_PARAMS = {
    "bc_resnet_asc_1": 8055,
    "bc_resnet_asc_8": 314970,
    "bc_resnet_8": 317610,
    "cp_resnet": 896980,
    "bc_resnet_asc_dcase2024_fp16": 63879,  # c=34, README "DCASE complexity rules"
    "bc_resnet_asc_dcase2024_int8": 114985,  # c=47: 8-bit convs + fp16 norms fit (123,569 B)
}


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_shape_finite_and_documented_count(name):
    torch.manual_seed(0)
    model = create_model(name)
    assert count_params(model) == DOCUMENTED_PARAMS[name]
    x = torch.randn(3, 1, 256, 67)  # 2 s clip
    model.train()
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        single = model(x[:1])  # a batch of one works in eval mode
    assert single.shape == (1, 10) and torch.isfinite(single).all()


def test_paper_parameter_counts_round_to_table_values():
    assert round(count_params(create_model("bc_resnet_asc_1")) / 100) / 10 == 8.1  # 8.1k
    assert round(count_params(create_model("bc_resnet_asc_8")) / 1000) == 315  # 315k


@pytest.mark.parametrize("name", ["bc_resnet_asc_1", "bc_resnet_asc_8"])
def test_receptive_field_is_109_by_109(name):
    assert receptive_field(create_model(name).receptive_layers()) == (109, 109)


@pytest.mark.parametrize("placement,count", [("none", 0), ("input", 1), ("all", 5)])
def test_resnorm_placement_gives_0_1_or_5_modules(placement, count):
    model = create_model("bc_resnet_asc_1", resnorm=placement)
    assert sum(isinstance(m, ResNorm) for m in model.modules()) == count
    assert count_params(model) == 8055  # fixed-λ ResNorm adds no parameters


@pytest.mark.parametrize("classes,frames", [(3, 8), (10, 334), (15, 1001)])
def test_any_class_count_and_input_length(classes, frames):
    model = create_model("bc_resnet_asc_1", num_classes=classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 256, frames)).shape == (2, classes)


def test_stage_widths_follow_table_1():
    model = create_model("bc_resnet_asc_8")
    assert model.stem[0].out_channels == 160  # 2c
    assert [stage[-1].time_path[-2].out_channels for stage in model.stages] == [80, 120, 160, 200]
    assert [len(stage) for stage in model.stages] == [2, 2, 2, 3]


def test_unknown_model_and_bad_config_give_clear_errors():
    with pytest.raises(TinyascError, match="unknown model 'nope'; available: .*bc_resnet_asc_1"):
        create_model("nope")
    with pytest.raises(TinyascError, match="resnorm must be"):
        create_model("bc_resnet_asc_1", resnorm="everywhere")
    with pytest.raises(TinyascError, match="n_mels=100"):
        create_model("bc_resnet_asc_1", n_mels=100)
    with pytest.raises(TinyascError, match="unknown BCResNetASCConfig field"):
        create_model("bc_resnet_asc_1", widht=3)


def test_registry_descriptions_exist():
    assert all(len(entry) == 3 and entry[2] for entry in MODELS.values())

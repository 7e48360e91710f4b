"""Table 2 baselines: CP-ResNet (rho rule, limited receptive field, 896,980 / 899k parameters) and the
original BC-ResNet-8 (KWS layout: widths, frequency strides, time dilation, head; 317,610 parameters)."""
import dataclasses
import json

import pytest
import torch
from torch import nn

from tinyasc.complexity import complexity, count_params, receptive_field
from tinyasc.errors import TinyascError
from tinyasc.models import build_model, create_model, model_config
from tinyasc.models.baselines import (CPResBlock, CPResNet, CPResNetConfig, BCResNet,
                                      BCResNetConfig, cp_resnet_kernels)
from tinyasc.models.bc_resnet import BCResBlock


def cp_blocks(model):
    return [[m for m in stage if isinstance(m, CPResBlock)] for stage in model.stages]


# --- CP-ResNet ---------------------------------------------------------------------------------------

def test_cp_resnet_count_is_896980_and_a_stereo_stem_gives_the_papers_899k():
    assert count_params(create_model("cp_resnet")) == 896980
    stereo = count_params(create_model("cp_resnet", in_channels=2))  # the CPJKU code's default input
    assert stereo == 896980 + 64 * 25 == 898580 and round(stereo / 1000) == 899


def test_cp_resnet_stages_are_c_2c_4c_with_pools_after_blocks_1_2_4_of_stage_1():
    model = create_model("cp_resnet")
    assert model.stem[0].out_channels == 64 and model.stem[0].stride == (2, 2)
    assert [[b.conv2.out_channels for b in stage] for stage in cp_blocks(model)] == [[64] * 4, [128] * 4, [256] * 4]
    layout = ["pool" if isinstance(m, nn.MaxPool2d) else "block" for m in model.stages[0]]
    assert layout == ["block", "pool", "block", "pool", "block", "block", "pool"]
    assert not any(isinstance(m, nn.MaxPool2d) for stage in model.stages[1:] for m in stage)
    assert model.head[0].out_channels == 10 and isinstance(model.head[1], nn.BatchNorm2d)


def test_cp_resnet_rho_5_makes_every_later_conv_1x1_and_limits_the_receptive_field_to_73():
    model = create_model("cp_resnet")
    kernels = [[b.kernels for b in stage] for stage in cp_blocks(model)]
    assert kernels == [[(3, 1), (3, 3), (3, 3), (3, 1)], [(1, 1)] * 4, [(1, 1)] * 4]
    assert receptive_field(model.receptive_layers()) == (73, 73)
    # depth beyond the rho-th 3×3 conv adds capacity, not receptive field
    shallow = create_model("cp_resnet", stage_blocks=(4, 1, 1))
    assert receptive_field(shallow.receptive_layers()) == (73, 73)


def test_cp_resnet_rho_rule_turns_on_one_3x3_conv_per_step_in_network_order():
    assert cp_resnet_kernels(0) == (((3, 1), (1, 1), (1, 1), (1, 1)), ((1, 1),) * 4, ((1, 1),) * 4)
    assert cp_resnet_kernels(7)[1][0] == (3, 1) and cp_resnet_kernels(8)[1][0] == (3, 3)
    assert cp_resnet_kernels(22) == (((3, 1),) + ((3, 3),) * 3, ((3, 3),) * 4, ((3, 3),) * 4)
    fields = [receptive_field(CPResNet(CPResNetConfig(base_channels=4, rho=r)).receptive_layers())[0]
              for r in range(0, 10)]
    assert fields == sorted(fields) and len(set(fields)) == len(fields)  # each step grows the field
    assert cp_resnet_kernels(5, (4, 2, 1))[1] == ((1, 1), (1, 1))  # depth restriction keeps positions


def test_cp_resnet_explicit_kernels_and_pools_override_rho():
    cfg = CPResNetConfig(base_channels=4, stage_blocks=(1, 1, 1), kernels=[[[3, 3]], [[1, 3]], [[1, 1]]],
                         pool_after=[[0, 1], [], [1]])
    assert cfg.kernels == (((3, 3),), ((1, 3),), ((1, 1),))  # JSON lists become tuples
    model = CPResNet(cfg).eval()
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert model(torch.randn(1, 1, 64, 40)).shape == (1, 10)
    with pytest.raises(ValueError, match="one \\(k1, k2\\) pair per block"):
        CPResNetConfig(stage_blocks=(1, 1, 1), kernels=(((3, 3),), ((1, 1),)))
    with pytest.raises(ValueError, match="at most 4 blocks"):
        CPResNetConfig(stage_blocks=(5, 4, 4))
    with pytest.raises(ValueError, match="odd"):
        CPResNetConfig(stage_blocks=(1, 1, 1), kernels=(((3, 2),), ((1, 1),), ((1, 1),)))


def test_cp_resnet_needs_17_frames_and_bins_and_says_so():
    model = CPResNet(CPResNetConfig(base_channels=4)).eval()
    assert model.cfg.min_input_size() == 17
    with torch.no_grad():
        assert model(torch.randn(2, 1, 256, 17)).shape == (2, 10)
    with pytest.raises(TinyascError, match="n_mels=16 is too small"):
        create_model("cp_resnet", n_mels=16)


def test_cp_resnet_fixup_init_starts_with_zero_logits_and_zero_residual_branches():
    model = CPResNet(CPResNetConfig(base_channels=8, init="fixup")).eval()
    assert all(not b.conv2.weight.any() for stage in cp_blocks(model) for b in stage)
    with torch.no_grad():
        assert not model(torch.randn(2, 1, 64, 40)).any()
    with pytest.raises(ValueError, match="init must be"):
        CPResNetConfig(init="xavier")


# --- original BC-ResNet-8 ----------------------------------------------------------------------------

def test_bc_resnet_8_count_is_317610_and_the_kws_setting_reproduces_kim_et_al():
    assert count_params(create_model("bc_resnet_8")) == 317610
    kws = dict(num_classes=12, n_mels=40, sub_bands=5)  # Kim et al. 2021: 321k (τ=8), 9.2k (τ=1)
    assert count_params(BCResNet(BCResNetConfig(tau=8, **kws))) == 321068
    assert round(count_params(BCResNet(BCResNetConfig(tau=1, **kws))) / 100) == 92
    # the ASC adaptation changes only the classifier (12 → 10) and the SSN affines (5 → 4 groups)
    ssn_channels = 2 * 64 + 2 * 96 + 4 * 128 + 4 * 160
    assert 321068 - 2 * (256 + 1) - 2 * ssn_channels == 317610


def test_bc_resnet_8_widths_blocks_strides_and_time_dilation_follow_kim_et_al():
    model = create_model("bc_resnet_8")
    assert model.stem[0].out_channels == 128 and model.stem[0].stride == (2, 1)
    assert [stage[-1].time_path[-2].out_channels for stage in model.stages] == [64, 96, 128, 160]
    assert [len(stage) for stage in model.stages] == [2, 2, 4, 4]
    assert all(isinstance(b, BCResBlock) for stage in model.stages for b in stage)
    assert [[b.stride for b in stage] for stage in model.stages] == [
        [(1, 1)] * 2, [(2, 1), (1, 1)], [(2, 1)] + [(1, 1)] * 3, [(1, 1)] * 4]
    time_dilations = [{b.time_path[0].dilation for b in stage} for stage in model.stages]
    assert time_dilations == [{(1, 1)}, {(1, 2)}, {(1, 4)}, {(1, 8)}]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())  # dilation instead of pooling
    dw, pw, bn = model.head[0], model.head[1], model.head[2]
    assert dw.kernel_size == (5, 5) and dw.padding == (0, 2) and dw.groups == 160
    assert pw.out_channels == 256 and isinstance(bn, nn.BatchNorm2d)
    assert model.classifier.out_channels == 10 and model.classifier.bias is not None


def test_bc_resnet_8_keeps_time_resolution_and_leaves_28_bins_for_256_mels():
    model = BCResNet(BCResNetConfig(tau=1)).eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[2:])))
             for m in [*model.stages, model.head]]
    with torch.no_grad():
        model(torch.randn(1, 1, 256, 40))
    for h in hooks:
        h.remove()
    assert shapes == [(128, 40), (64, 40), (32, 40), (32, 40), (28, 40)]
    assert model.cfg.stage_bins() == [128, 64, 32, 32]


def test_bc_resnet_8_receptive_field_is_wide_in_time_unlike_the_asc_variant():
    rf = receptive_field(create_model("bc_resnet_8").receptive_layers())
    assert rf == (177, 117)  # time: 5 + 2·2·(1 + 2) + 4·2·(4 + 8) + 4; ASC variant: 109×109 over T/8 steps
    assert rf[1] > 109


def test_bc_resnet_original_config_checks_ssn_groups_and_head_kernel_against_n_mels():
    with pytest.raises(TinyascError, match="split into sub_bands=4"):
        create_model("bc_resnet_8", n_mels=40)  # 20, 10, 5 bins
    with pytest.raises(TinyascError, match="leaves 4 bins"):
        create_model("bc_resnet_8", n_mels=32)  # 16, 8, 4 bins < 5×5 head
    assert count_params(create_model("bc_resnet_8", n_mels=128)) == 317610  # n_mels changes no weight


# --- both -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cp_resnet", "bc_resnet_8"])
@pytest.mark.parametrize("classes,frames", [(3, 17), (15, 100)])
def test_baselines_take_any_class_count_and_input_length(name, classes, frames):
    model = create_model(name, num_classes=classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 256, frames))
    assert out.shape == (2, classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["cp_resnet", "bc_resnet_8"])
def test_baselines_rebuild_from_a_json_config_and_report_complexity(name):
    arch, cfg = model_config(name)
    model = create_model(name)
    rebuilt = build_model(arch, json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert rebuilt.cfg == cfg
    rebuilt.load_state_dict(model.state_dict())  # same shapes and names
    info = complexity(model, (1, 1, 256, 40))
    assert info["params"] == count_params(model) and info["macs"] > 0 and len(info["receptive_field"]) == 2

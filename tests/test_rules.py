"""DCASE complexity rules: counts agree with torchinfo, PASS/FAIL per rule set, presets that fit."""
import json
import subprocess
import sys

import pytest
import torch

from tinyasc.complexity import count_params
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.models import MODELS, create_model
from tinyasc.rules import RULE_SETS, check_rules, param_bytes_all, passing_rule_sets, preset_storage

torchinfo = pytest.importorskip("torchinfo")


def one_second_input(model):
    cfg = FeatureConfig(n_mels=model.cfg.n_mels)
    return (1, 1, cfg.n_mels, cfg.num_frames(cfg.sample_rate))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_params_equal_and_macs_within_half_percent_of_torchinfo(name):
    torch.manual_seed(0)
    model = create_model(name)
    shape = one_second_input(model)
    summary = torchinfo.summary(model, input_size=shape, verbose=0)
    assert count_params(model) == summary.total_params
    report = check_rules(model, "dcase2024", input_shape=shape)
    assert report["params"] == summary.total_params
    # torchinfo's mult-adds also count the affine multiply of norm layers; ours counts conv/linear only
    assert abs(report["macs_per_second"] - summary.total_mult_adds) <= 0.005 * summary.total_mult_adds


def test_issue_reference_figures_for_bc_resnet_asc_8():
    model = create_model("bc_resnet_asc_8")
    shape = one_second_input(model)
    report = check_rules(model, "dcase2022", input_shape=shape, scheme="dcase")
    assert report["limits"][0]["value"] == 329_620  # 8-bit conv weights + fp16 rest, zeros counted
    assert round(report["macs_per_second"] / 1e5) == 512  # 51.2 M
    assert [lim["pass"] for lim in report["limits"]] == [False, False] and not report["pass"]


def test_2021_counts_nonzero_and_2022_counts_zeros():
    model = create_model("bc_resnet_asc_1")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    shape = one_second_input(model)
    r21 = check_rules(model, "dcase2021", input_shape=shape)
    r24 = check_rules(model, "dcase2024", input_shape=shape)
    assert r21["limits"][0]["value"] == 0
    assert r24["limits"][0]["value"] == count_params(model) * 4
    assert param_bytes_all(model, "int8") == count_params(model)


def test_clip_length_macs_scale_with_seconds():
    model = create_model("bc_resnet_asc_1")
    report = check_rules(model, "dcase2024", clip_seconds=10, input_shape=one_second_input(model))
    assert report["macs_per_clip"] == 10 * report["macs_per_second"]


def test_unknown_rule_set_is_a_one_line_error():
    with pytest.raises(TinyascError, match="unknown rule set"):
        check_rules(create_model("bc_resnet_asc_1"), "dcase2030", input_shape=(1, 1, 256, 34))


@pytest.mark.parametrize("name,c,storage", [("bc_resnet_asc_dcase2024_fp16", 34, "fp16"),
                                            ("bc_resnet_asc_dcase2024_int8", 47, "dcase")])
def test_presets_are_the_largest_width_that_fits(name, c, storage):
    assert preset_storage(name) == storage
    model = create_model(name)
    assert model.cfg.base_channels == c
    assert passing_rule_sets(model, scheme=storage) == list(RULE_SETS)
    bigger = create_model(name, base_channels=c + 1)
    assert "dcase2024" not in passing_rule_sets(bigger, scheme=storage)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyasc", *args], capture_output=True, text=True)


def test_info_rules_prints_pass_fail_and_check_sets_exit_code():
    ok = run_cli("info", "bc_resnet_asc_1", "--rules", "dcase2024", "--check")
    assert ok.returncode == 0 and "PASS" in ok.stdout and "FAIL" not in ok.stdout
    bad = run_cli("info", "bc_resnet_asc_8", "--rules", "dcase2022", "--check")
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    nocheck = run_cli("info", "bc_resnet_asc_8", "--rules", "dcase2022")
    assert nocheck.returncode == 0
    js = run_cli("info", "bc_resnet_asc_1", "--rules", "dcase2021", "--storage", "dcase", "--json", "--check")
    assert js.returncode == 0 and json.loads(js.stdout)["rules"]["pass"] is True
    helptext = run_cli("info", "--help").stdout
    for name in RULE_SETS:
        assert name in helptext

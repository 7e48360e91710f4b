"""Pin the paper's training recipe (§3.1): mixup at an intermediate λ, the per-step learning-rate
schedule of the 100-epoch run, and SpecAugment on exactly for the large model's configs."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyasc.augment
from tinyasc.augment import mixup, mixup_loss
from tinyasc.models import model_config
from tinyasc.experiment import load_experiment
from tinyasc.train import TrainConfig, lr_at

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))

# --------------------------------------------------------------------------------------------------
# mixup (α = 0.3)


def _cross_entropy_by_hand(logits_row, target):
    return math.log(sum(math.exp(v) for v in logits_row)) - logits_row[target]


def test_mixup_loss_at_lambda_0_3_equals_the_hand_computed_value():
    logits = [[2.0, 0.0, -1.0], [0.5, 1.5, -0.5]]
    y_a, y_b = [0, 1], [2, 0]
    lam = [0.3, 0.3]
    # label weights: 0.3 on y_a, 0.7 on y_b → soft targets [0.3, 0, 0.7] and [0.7, 0.3, 0]
    expected = sum(0.3 * _cross_entropy_by_hand(row, a) + 0.7 * _cross_entropy_by_hand(row, b)
                   for row, a, b in zip(logits, y_a, y_b)) / 2
    # first row by hand: log(e² + 1 + e⁻¹) = 2.16985; CE_a = 0.16985, CE_b = 3.16985 → 2.26985
    assert 0.3 * _cross_entropy_by_hand(logits[0], 0) + 0.7 * _cross_entropy_by_hand(logits[0], 2) \
        == pytest.approx(2.26985, abs=1e-4)
    got = mixup_loss(torch.tensor(logits), torch.tensor(y_a), torch.tensor(y_b), torch.tensor(lam))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # the same as cross-entropy against the λ-weighted soft targets
    soft = torch.tensor([[0.3, 0.0, 0.7], [0.7, 0.3, 0.0]])
    assert float(got) == pytest.approx(float(-(soft * torch.log_softmax(torch.tensor(logits), 1)).sum(1).mean()), rel=1e-6)


def test_mixup_mixes_inputs_and_labels_with_the_returned_lambda():
    B = 64
    x = torch.randn(B, 1, 8, 5)
    y = torch.arange(B)  # distinct labels reveal the partner of every example
    g = torch.Generator().manual_seed(3)
    mixed, y_a, y_b, lam = mixup(x, y, 0.3, generator=g)
    assert torch.equal(y_a, y) and sorted(y_b.tolist()) == list(range(B))  # a permutation
    assert lam.shape == (B,)
    intermediate = [(i, float(lam[i])) for i in range(B) if 0.2 < float(lam[i]) < 0.8 and int(y_b[i]) != i]
    assert intermediate  # this seed draws some intermediate λ (e.g. around 0.3)
    for i in range(B):
        partner = int(y_b[i])
        torch.testing.assert_close(mixed[i], lam[i] * x[i] + (1 - lam[i]) * x[partner])
    # one example by hand with its own λ: x_mixed = λ·x_i + (1 − λ)·x_partner
    i, l = intermediate[0]
    assert float(mixed[i, 0, 0, 0]) == pytest.approx(l * float(x[i, 0, 0, 0]) + (1 - l) * float(x[int(y_b[i]), 0, 0, 0]),
                                                    rel=1e-5, abs=1e-6)


def test_mixup_lambda_follows_beta_0_3():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    lam = mixup(torch.zeros(20000, 1), torch.zeros(20000, dtype=torch.long), 0.3, generator=g)[3].numpy()
    assert stats.kstest(lam, stats.beta(0.3, 0.3).cdf).pvalue > 1e-3
    assert np.mean(lam) == pytest.approx(0.5, abs=0.02)
    assert np.var(lam) == pytest.approx(0.09 / (0.36 * 1.6), abs=0.01)  # αβ / ((α+β)²(α+β+1))


def test_training_default_uses_mixup_alpha_0_3():
    assert TrainConfig().mixup_alpha == 0.3


# --------------------------------------------------------------------------------------------------
# learning rate: linear 0 → 0.06 over 5 epochs, cosine to 0 over the remaining 95 (per step)


def test_per_step_learning_rate_of_the_paper_recipe():
    cfg = TrainConfig()  # 100 epochs, lr 0.06, 5 warm-up epochs
    assert (cfg.epochs, cfg.lr, cfg.warmup_epochs) == (100, 0.06, 5)
    spe = 13962 // 64  # TAU 2020 Mobile training split at batch 64: 218 steps per epoch
    warm, total = 5 * spe, 100 * spe  # 1090, 21800
    assert lr_at(0, spe, cfg) == 0.0
    assert lr_at(1, spe, cfg) == pytest.approx(0.06 / 1090)  # per step, not per epoch
    assert lr_at(warm // 2, spe, cfg) == pytest.approx(0.03)  # mid-warm-up (step 545)
    assert lr_at(spe, spe, cfg) == pytest.approx(0.012)  # end of the first epoch
    assert lr_at(warm - 1, spe, cfg) == pytest.approx(0.06 * 1089 / 1090)
    assert lr_at(warm, spe, cfg) == pytest.approx(0.06)  # end of warm-up: the peak
    quarter = warm + (total - warm) // 4  # a quarter of the way through the cosine
    assert lr_at(quarter, spe, cfg) == pytest.approx(0.03 * (1 + math.cos(math.pi * ((total - warm) // 4) / (total - warm))))
    assert lr_at(quarter, spe, cfg) == pytest.approx(0.03 * (1 + math.sqrt(0.5)), rel=1e-4)
    assert lr_at(warm + (total - warm) // 2, spe, cfg) == pytest.approx(0.03)  # mid-cosine (step 11445)
    last = total - 1  # the last optimiser step of epoch 100
    assert lr_at(last, spe, cfg) == pytest.approx(0.03 * (1 + math.cos(math.pi * 20709 / 20710)), rel=1e-9)
    assert 0 < lr_at(last, spe, cfg) < 1e-8
    assert lr_at(total, spe, cfg) == pytest.approx(0.0, abs=1e-15)
    steps = [lr_at(s, spe, cfg) for s in range(0, total, 7)]
    peak = steps.index(max(steps))
    assert all(a < b for a, b in zip(steps[:peak], steps[1:peak + 1]))  # strictly rising
    assert all(a >= b for a, b in zip(steps[peak:], steps[peak + 1:]))  # then never rising


# --------------------------------------------------------------------------------------------------
# SpecAugment: on for BC-ResNet-ASC-8 (c = 80) only (§3.1: "only for the large model")


def expected_spec_augment(path):
    """The paper's rule, independent of tinyasc: on for c = 80, off for c = 10. Other architectures
    (the Table 2 baselines) must state it explicitly in their file."""
    exp = load_experiment(path)
    _, cfg = model_config(exp.model, **exp.model_overrides)
    channels = getattr(cfg, "base_channels", None) if exp.model.startswith("bc_resnet_asc") else None
    if channels == 80:
        return True
    if channels == 10:
        return False
    assert exp.train.spec_augment in ("on", "off"), f"{path.name}: say spec_augment = 'on' or 'off'"
    return exp.train.spec_augment == "on"


class _StopAfterFirstStep(Exception):
    pass


def test_every_config_has_a_decided_spec_augment_setting():
    expected = {p.stem: expected_spec_augment(p) for p in CONFIGS}  # raises for an undecided baseline
    assert expected["bc_resnet_asc_8_resnorm"] and not expected["bc_resnet_asc_1_resnorm"]
    assert sum(expected.values()) >= 8 and len(expected) - sum(expected.values()) >= 8  # both halves of Table 3


# one c = 10 and one c = 80 config stay in the fast suite; the rest (≈ 4 s each) are marked slow
FAST_CONFIGS = {"bc_resnet_asc_1_resnorm", "bc_resnet_asc_8_resnorm"}


@pytest.mark.parametrize("path", [p if p.stem in FAST_CONFIGS else pytest.param(p, marks=pytest.mark.slow)
                                  for p in CONFIGS], ids=[p.stem for p in CONFIGS])
def test_spec_augment_is_applied_exactly_where_the_config_says(path, small_benchmark, tmp_path, monkeypatch):
    """Runs one real training step of the config (through run_training) and records whether the
    training loop calls SpecAugment: this checks the *effective* setting, whichever code decides it."""
    from tinyasc.runs import run_training

    calls = []
    original = tinyasc.augment.spec_augment

    def recording(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return original(x, *args, **kwargs)

    for module in list(sys.modules.values()):  # wherever the training loop imported it from
        if getattr(module, "__name__", "").startswith("tinyasc") and getattr(module, "spec_augment", None) is original:
            monkeypatch.setattr(module, "spec_augment", recording)

    def stop(model):
        raise _StopAfterFirstStep

    exp = load_experiment(path, ["train.epochs=1", "train.batch_size=8", "train.extract_workers=0",
                                 "train.device=cpu", "train.threads=0"])
    with pytest.raises(_StopAfterFirstStep):
        run_training(exp, small_benchmark, tmp_path / "run", cache_dir=small_benchmark.parent / "cache",
                     progress=False, after_step=stop)
    assert bool(calls) == expected_spec_augment(path), f"{path.name}: SpecAugment calls {calls}"


def test_augmentation_widths_follow_the_clip_length():
    from tinyasc.features import FeatureConfig
    from tinyasc.train import augmentation_sizes

    cfg, features = TrainConfig(), FeatureConfig()
    assert augmentation_sizes(cfg, features, 10.0) == (50, 80)  # the paper's ±1.5 s and 80 of 334 frames
    roll, width = augmentation_sizes(cfg, features, 1.0)  # a DCASE 2022+ one-second clip: 34 frames
    assert roll == 33 and width == 8  # never rolled by more than itself; a mask is 24 % of it, not 80 frames
    assert augmentation_sizes(cfg, features, 2.0) == (50, 16)  # the default synthetic benchmark's 2 s clips


def test_a_recipe_written_before_new_fields_existed_still_matches():
    from tinyasc.experiment import recipe_of

    exp = load_experiment(None, [], base={"model": {"preset": "bc_resnet_asc_1"}})
    old = exp.recipe()
    for field in ("spec_time_width", "spec_freq_width", "freq_mixstyle_p", "teacher_logits"):
        old["train"].pop(field)
    assert recipe_of(old) == recipe_of(exp.resolved())

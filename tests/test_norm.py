"""tinyasc.models.norm: SubSpectralNorm, FreqIN (Eq. 1-2), ResNorm (Eq. 3), GlobalFreqNorm."""
import pytest
import torch
from torch import nn

from tinyasc.models.norm import FreqIN, GlobalFreqNorm, ResNorm, SubSpectralNorm


def features(b=4, c=3, f=16, t=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, f, t, generator=g) * 3 + 1


def test_subspectralnorm_with_one_band_equals_batchnorm2d():
    x = features()
    ssn, bn = SubSpectralNorm(3, sub_bands=1), nn.BatchNorm2d(3)
    assert torch.allclose(ssn(x), bn(x), atol=1e-6)
    ssn.eval(), bn.eval()
    assert torch.allclose(ssn(x), bn(x), atol=1e-6)


def test_subspectralnorm_normalises_each_sub_band_separately():
    x = features(f=16)
    x[:, :, 8:] += 100  # two upper sub-bands far from the lower ones
    y = SubSpectralNorm(3, sub_bands=4)(x)
    for band in range(4):
        part = y[:, :, band * 4:(band + 1) * 4]
        assert part.mean(dim=(0, 2, 3)).abs().max() < 1e-5
        assert (part.var(dim=(0, 2, 3), correction=0) - 1).abs().max() < 1e-3
    assert sum(p.numel() for p in SubSpectralNorm(3, 4).parameters()) == 2 * 3 * 4  # one affine per sub-band


def test_freq_in_statistics_per_sample_and_bin():
    y = FreqIN()(features())
    assert y.mean(dim=(1, 3)).abs().max() < 1e-5  # μ_nf over channels and time is 0
    assert (y.var(dim=(1, 3), correction=0) - 1).abs().max() < 1e-3  # σ²_nf is 1


def test_freq_in_ignores_a_per_frequency_offset():
    # a device's frequency response is an additive per-bin constant in the log-mel domain
    x = features()
    response = torch.randn(1, 1, 16, 1) * 5
    assert torch.allclose(FreqIN()(x), FreqIN()(x + response), atol=1e-4)


def test_resnorm_with_zero_lambda_is_freq_instance_norm():
    x = features()
    assert torch.allclose(ResNorm(0.0)(x), FreqIN()(x))


def test_resnorm_is_lambda_x_plus_freq_in():
    x = features()
    assert torch.allclose(ResNorm(0.1)(x), 0.1 * x + FreqIN()(x), atol=1e-6)
    assert not list(ResNorm(0.1).parameters())  # fixed λ has nothing to learn


@pytest.mark.parametrize("learn,shape", [("scalar", ()), ("freq", (16, 1))])
def test_learnable_lambda_starts_at_init_and_gets_gradients(learn, shape):
    norm = ResNorm(0.1, learn=learn, num_freq=16)
    assert norm.lam.shape == shape and torch.allclose(norm.lam, torch.tensor(0.1))
    norm(features()).square().mean().backward()
    assert norm.lam.grad is not None and norm.lam.grad.abs().sum() > 0


def test_global_freq_norm_fits_training_statistics():
    data = [features(seed=s) + torch.linspace(0, 10, 16)[:, None] for s in range(3)]
    norm = GlobalFreqNorm(16).fit(data)
    y = torch.cat([norm(x) for x in data])
    assert y.mean(dim=(0, 1, 3)).abs().max() < 1e-4
    assert (y.std(dim=(0, 1, 3), correction=0) - 1).abs().max() < 1e-3
    restored = GlobalFreqNorm(16)
    restored.load_state_dict(norm.state_dict())  # statistics travel in the checkpoint
    assert torch.equal(restored(data[0]), norm(data[0])) and bool(restored.fitted)


def test_fused_freq_in_matches_eq_1_2_values_and_gradients_to_1e5():
    torch.manual_seed(0)
    norm = FreqIN()
    for shape in [(3, 10, 256, 67), (2, 7, 16, 5)]:
        for channels_last in (False, True):
            x = (torch.randn(*shape) * 3 + 1).requires_grad_()
            xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            y_ref = norm.reference_forward(xin)
            y = norm(xin)
            assert y.shape == y_ref.shape
            torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)
            w = torch.randn(shape)
            (g_ref,) = torch.autograd.grad((y_ref * w).sum(), x)
            (g,) = torch.autograd.grad((y * w).sum(), x)
            torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-5)
    assert norm.state_dict() == {} and list(norm.parameters()) == []

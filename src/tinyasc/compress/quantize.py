"""Quantization-aware training (paper §2.3): symmetric fake quantization of convolution weights (8 bits,
per tensor or per output channel, straight-through estimator) on top of the pruning masks, and the
compressed state dict — conv weights as int8 codes + float scales, other parameters as fp16.

A small implementation of our own rather than torch.ao.quantization: that API is deprecated (moving to
torchao), its QAT modules add observer/fake-quant state that changes state-dict keys, and it quantizes
activations too, while the paper only quantizes weights. Here a Conv2d subclass keeps the plain keys
(torch.nn.utils.parametrize would rename them to `parametrizations.weight.original`), so fit's
last.pt/best.pt stay ordinary checkpoints and resuming needs nothing special."""
import torch

from tinyasc.compress.prune import MaskedConv2d, conv_layers, replace_module, zero_pruned
from tinyasc.errors import TinyascError


def qmax(bits):
    """Largest code of a symmetric `bits`-bit grid: 127 for 8 bits (codes −127…127, 255 levels; −128
    is unused so that the grid is symmetric and 0 maps to 0)."""
    return 2 ** (bits - 1) - 1


def weight_scale(w, bits=8, per_channel=False):
    """s = max|w| / qmax over the tensor (0-d) or per output channel ((O, 1, 1, 1)); 1 where max|w| = 0
    (an all-pruned channel), so 0/s stays 0. No gradient flows through the scale."""
    w = w.detach()
    amax = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) if per_channel else w.abs().amax()
    return torch.where(amax > 0, amax / qmax(bits), torch.ones_like(amax))


def quantize(w, bits=8, per_channel=False):
    """(int8 codes in [−qmax, qmax], float32 scale) with dequantize(codes, scale) == fake_quantize(w)."""
    scale = weight_scale(w, bits, per_channel)
    codes = torch.round(w.detach() / scale).clamp(-qmax(bits), qmax(bits))
    return codes.to(torch.int8), scale.float()


def dequantize(codes, scale):
    """codes · scale as float32 — the formula tinyasc.checkpoint uses to load an int8 checkpoint."""
    return codes.float() * scale


class _RoundSTE(torch.autograd.Function):
    """round(w / s) clamped to the grid, times s; the backward pass is the identity (straight-through
    estimator: the rounding step has zero gradient almost everywhere, so pretend it is not there)."""

    @staticmethod
    def forward(ctx, w, scale, q):
        return torch.round(w / scale).clamp(-q, q) * scale

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def fake_quantize(w, bits=8, per_channel=False):
    """w rounded to its symmetric `bits`-bit grid (values as float), gradient passed straight through."""
    return _RoundSTE.apply(w, weight_scale(w, bits, per_channel), qmax(bits))


class QATConv2d(MaskedConv2d):
    """Conv2d computing with fake_quantize(weight · mask): the float weight is the latent value SGD
    updates, the forward pass sees only its int grid. `storage_bits` tells complexity.size_report
    that the weight is stored at `bits` bits."""
    bits = 8
    per_channel = False

    @classmethod
    def wrap(cls, conv, mask=None, bits=8, per_channel=False):
        new = super().wrap(conv, mask)
        new.bits, new.per_channel = bits, per_channel
        return new

    @property
    def storage_bits(self):
        return self.bits

    def quantized_weight(self):
        return fake_quantize(self.masked_weight(), self.bits, self.per_channel)

    def forward(self, x):
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", bits={self.bits}, per_channel={self.per_channel}"


def prepare_qat(model, bits=8, per_channel=False, exclude=()):
    """Replace every Conv2d (plain or already pruned) by a QATConv2d, keeping its pruning mask."""
    if not 2 <= bits <= 8:
        raise TinyascError(f"quantization bits must be in 2…8 (stored as int8), not {bits}")
    for name, conv in conv_layers(model, exclude).items():
        replace_module(model, name, QATConv2d.wrap(conv, bits=bits, per_channel=per_channel))
    return model


def _half_params(model):
    """{name: parameter} of the parameters stored as fp16: all but the quantized conv weights."""
    quantized = {id(m.weight) for m in model.modules() if isinstance(m, QATConv2d)}
    return {name: p for name, p in model.named_parameters() if id(p) not in quantized}


@torch.no_grad()
def finalize(model, fp16=True):
    """Make the compression permanent in place, so that `model` (eval mode) computes exactly what its
    compressed checkpoint will: pruned weights re-zeroed, other parameters rounded to fp16 values,
    Returns {parameter name: stored bits}, the mapping complexity.size_report takes as `bits`."""
    zero_pruned(model)
    bits = {f"{name}.weight": m.bits for name, m in model.named_modules() if isinstance(m, QATConv2d)}
    for name, p in _half_params(model).items():
        if fp16:
            half = p.half()
            if not torch.isfinite(half).all():
                raise TinyascError(f"{name}: values beyond the fp16 range (±65504); cannot store it as fp16")
            p.copy_(half.float())
        bits[name] = 16 if fp16 else p.element_size() * 8
    return bits


@torch.no_grad()
def compressed_state_dict(model, fp16=True):
    """(state dict, quantization record) of a QAT model for a compressed checkpoint: each QATConv2d
    weight as int8 codes, other parameters as fp16, buffers (BN running statistics: folded into the
    affine at deployment, not counted by the DCASE rule) as they are. The record, saved as
    payload["quantization"], is {"bits": {param: stored bits}, "scales": {int8 param: float32 scale,
    0-d or (O, 1, 1, 1)}, "symmetric": True (zero point 0)}; tinyasc.checkpoint decodes it. Call
    `finalize` first for the checkpoint to reproduce the model exactly."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    bits, scales = {}, {}
    for name, m in model.named_modules():
        key = f"{name}.weight"
        if isinstance(m, QATConv2d):
            codes, scale = quantize(m.masked_weight(), m.bits, m.per_channel)
            state[key], scales[key], bits[key] = codes.contiguous(), scale.contiguous(), m.bits
        elif isinstance(m, MaskedConv2d):
            state[key] = m.masked_weight().detach().contiguous()
    for name, p in _half_params(model).items():
        if fp16:
            state[name] = p.detach().half().contiguous()
        bits[name] = 16 if fp16 else p.element_size() * 8
    return state, {"bits": bits, "scales": scales, "symmetric": True}

"""Magnitude-based one-shot unstructured pruning of convolution weights (paper §2.3): after training,
the smallest-|w| weights of every convolution are set to zero once, and stay exactly zero while the
network is fine-tuned (the mask multiplies the weight in the forward pass and is re-applied after
every optimiser step)."""
import math

import torch
from torch import nn

from tinyasc.errors import TinyascError

SCOPES = ("layer", "global")


class MaskedConv2d(nn.Conv2d):
    """Conv2d whose forward uses weight · mask. The mask is a non-persistent buffer, so the state dict
    keeps the plain Conv2d keys: run checkpoints (last.pt, best.pt) load into an ordinary model.

    Because the mask is in the forward pass, a pruned weight gets a zero gradient; with its value at
    0, weight decay adds nothing either, so SGD's momentum for it stays 0 and the weight never moves.
    `zero_pruned` re-applies the masks after each step anyway (cheap, and robust to other optimisers)."""

    @classmethod
    def wrap(cls, conv, mask=None):
        """A `cls` module sharing `conv`'s parameters (same hyper-parameters and state-dict keys)."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, device="meta")
        new.weight, new.bias = conv.weight, conv.bias
        mask = getattr(conv, "weight_mask", None) if mask is None else mask
        new.register_buffer("weight_mask", None if mask is None else mask.to(conv.weight.device, torch.bool),
                            persistent=False)
        new.train(conv.training)
        return new

    def masked_weight(self):
        return self.weight if self.weight_mask is None else self.weight * self.weight_mask

    def forward(self, x):
        return self._conv_forward(x, self.masked_weight(), self.bias)


def conv_layers(model, exclude=()):
    """{module name: Conv2d} of the convolutions to prune/quantize, in model order. The paper prunes
    'all convolution layers', so the 1×1 classifier conv (`head`) is included unless excluded."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and name not in exclude}


def _top_k_mask(scores, keep):
    """Bool mask of the `keep` largest scores (exactly `keep`, ties broken by position)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(scores.flatten(), keep, sorted=False).indices] = True
    return mask.view_as(scores)


def magnitude_masks(model, ratio, scope="layer", exclude=(), min_keep=0.02):
    """{conv name: bool mask (True = kept)} pruning a fraction `ratio` of the conv weights by |w|.

    scope="layer" (default): every conv loses round(ratio · n) of its own n weights, so every layer
    keeps 1 − ratio of its weights and the achieved ratio equals the target up to rounding. We default
    to it because every conv of BC-ResNet-ASC but the head feeds a BatchNorm/SubSpectralNorm, which makes
    the layer's output invariant to the scale of its weights, so |w| is comparable within a layer but
    not across layers.
    scope="global": one |w| threshold over all convs, except that a layer it would leave with fewer
    than ceil(min_keep · n) weights keeps its ceil(min_keep · n) largest and the others share the
    rest of the budget. Without this floor a global threshold at 0.89 on a freshly initialised
    BC-ResNet-ASC-8 keeps ~85% of every depthwise conv (fan-in 3: large weights) and wipes out the
    stage-4 1×1 convs and the head (fan-in 200: small weights) — the init scale, not importance."""
    if not 0 <= ratio < 1:
        raise TinyascError(f"pruning ratio must be in [0, 1), not {ratio}")
    if scope not in SCOPES:
        raise TinyascError(f"pruning scope must be one of {SCOPES}, not {scope!r}")
    layers = conv_layers(model, exclude)
    scores = {name: m.weight.detach().abs().float().cpu() for name, m in layers.items()}
    if scope == "layer":
        return {name: _top_k_mask(s, s.numel() - round(ratio * s.numel())) for name, s in scores.items()}
    total = sum(s.numel() for s in scores.values())
    keep_total = total - round(ratio * total)
    floors = {name: min(s.numel(), math.ceil(min_keep * s.numel())) for name, s in scores.items()}
    protected, masks = set(), {}  # layers held at their floor; the others share the rest by one threshold
    while len(protected) < len(scores):
        free = [name for name in scores if name not in protected]
        budget = min(max(0, keep_total - sum(floors[name] for name in protected)), sum(scores[n].numel() for n in free))
        kept, start = _top_k_mask(torch.cat([scores[name].flatten() for name in free]), budget), 0
        for name in free:
            masks[name] = kept[start:start + scores[name].numel()].view_as(scores[name])
            start += scores[name].numel()
        starved = {name for name in free if int(masks[name].sum()) < floors[name]}
        if not starved:
            break
        protected |= starved
    masks.update({name: _top_k_mask(scores[name], floors[name]) for name in protected})
    return {name: masks[name] for name in scores}


def prune(model, ratio, scope="layer", exclude=(), min_keep=0.02):
    """Prune `model` in place: zero the smallest weights and replace each pruned Conv2d by a
    MaskedConv2d holding its mask. Returns the masks ({conv name: bool tensor})."""
    masks = magnitude_masks(model, ratio, scope, exclude, min_keep)
    for name, mask in masks.items():
        conv = model.get_submodule(name)
        with torch.no_grad():
            conv.weight.mul_(mask.to(conv.weight.device))
        replace_module(model, name, MaskedConv2d.wrap(conv, mask))
    return masks


def replace_module(model, name, new):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


@torch.no_grad()
def zero_pruned(model):
    """Re-apply every MaskedConv2d's mask to its weight (fit's `after_step`)."""
    for m in model.modules():
        if isinstance(m, MaskedConv2d) and m.weight_mask is not None:
            m.weight.mul_(m.weight_mask)


def sparsity(model, exclude=()):
    """{"layers": {conv name: fraction of zero weights}, "zeros", "weights", "ratio"} over the convs."""
    layers, zeros, total = {}, 0, 0
    for name, m in conv_layers(model, exclude).items():
        w = m.masked_weight() if isinstance(m, MaskedConv2d) else m.weight
        z = int((w == 0).sum())
        layers[name] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
    return {"layers": layers, "zeros": zeros, "weights": total, "ratio": zeros / max(total, 1)}

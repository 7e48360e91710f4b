"""Magnitude-based one-shot unstructured pruning of convolution weights (paper §2.3): after training,
the smallest-|w| weights of every convolution are set to zero once, and stay exactly zero while the
network is fine-tuned (the mask multiplies the weight in the forward pass and is re-applied after
every optimiser step)."""
import math

import numpy as np

import torch
from torch import nn

from tinyasc.errors import TinyascError

SCOPES = ("dw_floor", "layer", "global", "global_dw_floor")
DEFAULT_SCOPE = "global_dw_floor"  # chosen by benchmarks/pruning_study.py (README, Compression)


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


def is_depthwise(conv):
    """True for a depthwise convolution (one input channel per filter, several filters): BC-ResNet's
    3×1 frequency and 1×3 temporal convs, whose filters hold only 3 weights each."""
    return conv.groups > 1 and conv.groups == conv.in_channels


def alive_filters(masks, layers=None):
    """(alive, total) output filters with at least one kept weight, over `masks` ({name: bool mask with
    filters on dim 0}); `layers` restricts the count to those names (e.g. the depthwise convs)."""
    names = masks if layers is None else [n for n in masks if n in layers]
    alive = sum(int(masks[n].flatten(1).any(1).sum()) for n in names)
    return alive, sum(masks[n].shape[0] for n in names)


def _largest_per_filter(scores):
    """(filters, weights per filter) bool mask of each filter's largest score (dim 0 = filters)."""
    flat = scores.flatten(1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.arange(flat.shape[0]), flat.argmax(1)] = True
    return mask


def _largest_remainder(shares, total):
    """Integers ≥ floor(share) summing to `total` (Hamilton apportionment; ties by position)."""
    base = {name: math.floor(x) for name, x in shares.items()}
    order = sorted(shares, key=lambda name: base[name] - shares[name])  # largest fractional part first
    for name in order[:total - sum(base.values())]:
        base[name] += 1
    return base


def _dw_floor_masks(scores, floors, keep_total):
    """Per-layer magnitude masks where every filter of a layer in `floors` keeps its largest weight, and
    the layers share `keep_total` kept weights in proportion to their size wherever that is above their
    floor (one common keep fraction q, solved for; the rest take exactly their floor)."""
    need = sum(floors.values())
    if keep_total < need:
        raise TinyascError(f"pruning ratio too high for prune_scope 'dw_floor': it keeps {keep_total} conv weights, "
                           f"fewer than the {need} depthwise filters that each keep one")
    at_floor = set()
    while True:  # layers whose proportional share q·n is below their floor are held at the floor
        free = [name for name in scores if name not in at_floor]
        q = (keep_total - sum(floors.get(n, 0) for n in at_floor)) / max(1, sum(scores[n].numel() for n in free))
        low = {n for n in free if q * scores[n].numel() < floors.get(n, 0)}
        if not low:
            break
        at_floor |= low
    keep = _largest_remainder({n: q * scores[n].numel() for n in free}, keep_total - sum(floors[n] for n in at_floor))
    keep.update({n: floors[n] for n in at_floor})
    masks = {}
    for name, s in scores.items():
        k = min(keep[name], s.numel())
        if name not in floors:
            masks[name] = _top_k_mask(s, k)
            continue
        flat, floor = s.flatten(1), _largest_per_filter(s)
        rest = _top_k_mask(torch.where(floor, -1.0, flat), k - int(floor.sum()))  # |w| ≥ 0 > −1: floor ranks last
        masks[name] = (floor | rest).view_as(s)
    return masks


def magnitude_masks(model, ratio, scope=DEFAULT_SCOPE, exclude=(), min_keep=0.02):
    """{conv name: bool mask (True = kept)} pruning a fraction `ratio` of the conv weights by |w|.

    scope="global_dw_floor" (default, chosen by benchmarks/pruning_study.py): "global" below, except that
    every depthwise filter first keeps its largest weight (those weights rank above all others), so no
    depthwise channel is cut; same total kept count.
    scope="dw_floor": as "layer", except that every depthwise filter (3 weights in
    BC-ResNet-ASC) keeps at least its largest weight, and the other layers give up what that costs, so
    the total kept count is exactly the "layer" scope's. Plain per-layer pruning at 0.89 leaves a
    3-weight filter 0.33 weights on average: ~70% of the depthwise channels lose their whole filter and
    carry only a constant (their norm's bias) — in a transition block, which has no identity shortcut,
    that channel is cut. At 0.89 each depthwise filter keeps exactly one weight, and the other layers
    are pruned a little more (BC-ResNet-ASC-8: 89.6% instead of 89%; BC-ResNet-ASC-1, whose depthwise
    convs are 16% of its conv weights: 93.2%).
    scope="layer": every conv loses round(ratio · n) of its own n weights, so every layer keeps
    1 − ratio of its weights and the achieved ratio equals the target up to rounding. Ranking within a
    layer (not across): every conv of BC-ResNet-ASC but the head feeds a BatchNorm/SubSpectralNorm, which
    makes the layer's output invariant to the scale of its weights, so |w| is comparable within a layer
    but not across layers.
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
    if scope == "dw_floor":
        floors = {name: m.out_channels for name, m in layers.items() if is_depthwise(m)}
        return _dw_floor_masks(scores, floors, sum(s.numel() - round(ratio * s.numel()) for s in scores.values()))
    total = sum(s.numel() for s in scores.values())
    keep_total = total - round(ratio * total)
    floors = {name: min(s.numel(), math.ceil(min_keep * s.numel())) for name, s in scores.items()}
    if scope == "global_dw_floor":  # every depthwise filter's largest |w| ranks above everything else
        dw = {name for name, m in layers.items() if is_depthwise(m)}
        need = sum(layers[name].out_channels for name in dw)
        if keep_total < need:
            raise TinyascError(f"pruning ratio too high for prune_scope 'global_dw_floor': it keeps {keep_total} conv "
                               f"weights, fewer than the {need} depthwise filters that each keep one")
        for name in dw:
            top = _largest_per_filter(scores[name])
            scores[name] = torch.where(top, math.inf, scores[name].flatten(1)).view_as(scores[name])
            floors[name] = max(floors[name], layers[name].out_channels)
    if keep_total < sum(floors.values()):  # every layer at its floor would already keep more than the target
        raise TinyascError(f"pruning ratio too high for prune_scope {scope!r}: it keeps {keep_total} conv weights, "
                           f"fewer than the {sum(floors.values())} that its per-layer floors keep")
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


def prune(model, ratio, scope=DEFAULT_SCOPE, exclude=(), min_keep=0.02):
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


@torch.no_grad()
def recalibrate_batchnorm(model, features, max_clips=2048, batch_size=64, device="cpu"):
    """Re-estimate every BatchNorm's running mean/variance for the network as it is now (pruned,
    fake-quantized) from `max_clips` evenly spaced rows of `features` ((N, F, T) array or memory map;
    all rows if fewer), in eval mode except the BatchNorms (no dropout), as a cumulative average over
    the batches (momentum None). Returns the number of clips used.

    Why: one-shot pruning removes part of every conv's output, so the statistics the teacher's
    BatchNorms learned no longer match their inputs; the mismatch compounds through the stages (measured,
    benchmarks/pruning_study.py: BC-ResNet-ASC-8 at 0.89 from 25 % to 54 % before fine-tuning, at 0.5 from
    57 % to 62 %, teacher 63 %)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(features) == 0 or max_clips <= 0:
        return 0
    rows = np.unique(np.linspace(0, len(features) - 1, min(len(features), max_clips)).round().astype(int))
    batches = np.array_split(rows, math.ceil(len(rows) / batch_size))  # equal sizes: each batch counts once
    was_training, saved = model.training, [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for batch in batches:
        x = torch.from_numpy(np.array(features[batch], dtype=np.float32))
        model(x.unsqueeze(1).to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
    return len(rows)

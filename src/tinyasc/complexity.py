"""Model complexity as DCASE 2021 Task 1A counts it: parameters, non-zero parameters, size in bytes
(Σ over parameter tensors of non-zero count × bytes at the stored precision; 1 KB = 1024 bytes),
multiply-accumulates, and the receptive field.

BatchNorm running statistics are buffers, not parameters, and are not counted: at deployment they
fold into the affine (this matches the paper's 15K 16-bit normalisation parameters for c=80)."""
import torch
from torch import nn

# storage schemes: bits for (conv/linear weights, everything else)
SCHEMES = {
    "fp32": (32, 32),
    "fp16": (16, 16),
    "int8": (8, 8),
    "dcase": (8, 16),  # the paper's compressed model: 8-bit conv weights, fp16 for the rest
}


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model):
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def _is_weight_of_conv(module, param_name):
    return param_name == "weight" and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))


def stored_bits(module, param_name, param, scheme=None, bits=None, full_name=None):
    """Bits per value: from `scheme` if given, else from `bits` ({full parameter name: bits}, the
    mapping a compressed checkpoint stores, see checkpoint.stored_bits), else a QAT convolution's own
    `storage_bits` for its weight, else the tensor's dtype."""
    if scheme is not None:
        weight_bits, other_bits = SCHEMES[scheme]
        return weight_bits if _is_weight_of_conv(module, param_name) else other_bits
    if bits and full_name in bits:
        return bits[full_name]
    if param_name == "weight" and getattr(module, "storage_bits", None):
        return module.storage_bits
    return param.element_size() * 8


def size_report(model, scheme=None, bits=None):
    """Per-tensor rows and totals of the DCASE size: {"rows": [...], "total_bytes", "by_bits": {bits:
    {"nonzero", "bytes"}}}. `scheme` ("fp32", "fp16", "int8", "dcase") overrides stored precisions;
    `bits` ({parameter name: bits}) gives them for a compressed model."""
    rows, by_bits = [], {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            name = f"{module_name}.{param_name}".lstrip(".")
            width = stored_bits(module, param_name, param, scheme, bits, name)
            nonzero = int(torch.count_nonzero(param))
            nbytes = nonzero * width / 8
            rows.append({"name": name, "shape": list(param.shape),
                         "params": param.numel(), "nonzero": nonzero, "bits": width, "bytes": nbytes})
            group = by_bits.setdefault(width, {"nonzero": 0, "bytes": 0.0})
            group["nonzero"] += nonzero
            group["bytes"] += nbytes
    return {"rows": rows, "total_bytes": sum(r["bytes"] for r in rows), "by_bits": by_bits}


def size_bytes(model, scheme=None, bits=None):
    return size_report(model, scheme, bits)["total_bytes"]


@torch.no_grad()
def count_macs(model, input_shape):
    """Multiply-accumulates of one forward pass on a zero input of `input_shape` (e.g. (1, 1, 256, 334)).
    Counted: Conv1d/Conv2d (output elements × in_channels/groups × kernel size) and Linear layers.
    Not counted: norms, activations, pooling, averaging and additions (elementwise, a few % at most)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        else:
            kernel = 1
            for k in module.kernel_size:
                kernel *= k
            total += output.numel() * module.in_channels // module.groups * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        model(torch.zeros(input_shape, dtype=param.dtype, device=param.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def receptive_field(layers, count_pool_window=False):
    """Receptive field (frequency, time) of a chain of layers, each ((kF, kT), (sF, sT), (dF, dT)) for a
    conv or ("pool", (kF, kT), (sF, sT), (dF, dT)) for a pooling layer.

    Convention (the paper's 109×109 for BC-ResNet-ASC): each conv adds (k − 1)·d·jump, where jump is
    the product of earlier strides; pooling multiplies the jump but its window is not counted (with
    count_pool_window=True a 2×2 pool also adds 1·jump, giving 115×115 for BC-ResNet-ASC). The
    frequency average inside BC-ResBlocks is global and not part of this count."""
    field, jump = [1, 1], [1, 1]
    for layer in layers:
        is_pool = layer[0] == "pool"
        kernel, stride, dilation = layer[1:] if is_pool else layer
        for axis in range(2):
            if count_pool_window or not is_pool:
                field[axis] += (kernel[axis] - 1) * dilation[axis] * jump[axis]
            jump[axis] *= stride[axis]
    return tuple(field)


def complexity(model, input_shape, bits=None):
    """Everything `tinyasc info` prints, as one dict (`bits`: stored widths of a compressed model)."""
    info = {
        "params": count_params(model),
        "nonzero_params": count_nonzero(model),
        "macs": count_macs(model, input_shape),
        "input_shape": list(input_shape),
        "size_bytes": {scheme: size_bytes(model, scheme) for scheme in SCHEMES},
        "size_bytes_stored": size_bytes(model, bits=bits),
    }
    if hasattr(model, "receptive_layers"):
        info["receptive_field"] = list(receptive_field(model.receptive_layers()))
    return info

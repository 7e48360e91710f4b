"""tinyasc.complexity: MACs, DCASE size rule, non-zero counting, receptive field convention."""
import torch
from torch import nn

from tinyasc.complexity import count_macs, count_nonzero, receptive_field, size_report


def test_macs_of_plain_and_depthwise_convs_and_linear():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                          nn.Flatten(), nn.Linear(4 * 5 * 6, 7))
    # conv: 4·5·6 outputs × 2·9; depthwise: 4·5·6 × 1·9; linear: 120 × 7
    assert count_macs(model, (1, 2, 5, 6)) == 120 * 18 + 120 * 9 + 120 * 7


def test_size_counts_nonzero_values_at_stored_precision():
    conv = nn.Conv2d(1, 2, 3, bias=True)  # 18 weights + 2 biases
    model = nn.Sequential(conv, nn.BatchNorm2d(2))  # + 4 affine; running stats are buffers
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0].zero_()  # prune 9
        conv.bias.fill_(0.5)
    assert count_nonzero(model) == 9 + 2 + 2  # BN weight ones count, BN bias zeros do not
    fp32 = size_report(model)
    assert fp32["total_bytes"] == (9 + 2 + 2) * 4
    dcase = size_report(model, "dcase")  # 8-bit conv weights, 16-bit everything else
    assert dcase["by_bits"][8] == {"nonzero": 9, "bytes": 9.0}
    assert dcase["by_bits"][16] == {"nonzero": 4, "bytes": 8.0}
    assert dcase["total_bytes"] == 17


def test_storage_bits_attribute_overrides_dtype():
    conv = nn.Conv2d(1, 1, 3, bias=False)
    conv.storage_bits = 8  # what quantisation marks on a module it stores as int8
    assert size_report(conv)["total_bytes"] == 9


def test_receptive_field_convention():
    conv3 = ((3, 3), (1, 1), (1, 1))
    assert receptive_field([conv3, conv3]) == (5, 5)
    strided = [((5, 5), (2, 2), (1, 1)), conv3]
    assert receptive_field(strided) == (9, 9)  # 5 + 2·jump(2)
    pooled = [conv3, ("pool", (2, 2), (2, 2), (1, 1)), conv3]
    assert receptive_field(pooled) == (7, 7)  # the pool window is not counted, its stride is
    assert receptive_field(pooled, count_pool_window=True) == (8, 8)
    assert receptive_field([((3, 1), (1, 1), (1, 1)), ((1, 3), (1, 1), (1, 2))]) == (3, 5)  # dilation 2 in time

"""C export (`tinyasc export CKPT --format c --out DIR`): a dependency-free C99 library of a BC-ResNet-ASC
checkpoint (paper §2.1, §2.3) — conv weights packed so pruned zeros take no space, every norm folded into a
per-channel multiplier and bias, one static arena whose size is planned here, and the §3.1 log-mel front end
from 16-bit PCM with its constants (window, FFT twiddles, Slaney mel filterbank) generated from tinyasc's own.

Precision: weights are the checkpoint's int8 codes (a compressed checkpoint, or a float one deployed with
8-bit conv weights) or float32; activations and the front end are float32, as in the int8 ONNX graph of a
compressed checkpoint (weight-only int8: what QAT trained), so the C model computes the same function.
"""
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc.checkpoint import apply_storage, deploy_storage, int8_codes, load_checkpoint, pick_device_model, stored_bits
from tinyasc.complexity import size_bytes
from tinyasc.errors import TinyascError
from tinyasc.features import mel_matrix
from tinyasc.models import canonical_arch
from tinyasc.models.norm import GlobalFreqNorm, ResNorm
from tinyasc.onnxmodel import sha256_file
from tinyasc.paths import check_output

CSRC = Path(__file__).resolve().parent / "csrc"
STATIC_FILES = ("tinyasc_kernels.h", "tinyasc_kernels.c", "tinyasc_main.c")
GENERATED = ("tinyasc.h", "tinyasc_model.c", "Makefile", "tinyasc_model.json")
MAX_RADIX = 32  # TA_MAX_RADIX in tinyasc_kernels.c: largest prime factor of n_fft / 2 the FFT takes
ALIGN = 4  # arena offsets in floats (16 bytes)
SKIP, END = 14, 15  # nibble codes of the sparse weight stream (tinyasc_kernels.h)
ACT = {None: "TA_ACT_NONE", "relu": "TA_ACT_RELU", "silu": "TA_ACT_SILU"}


# ---------------------------------------------------------------------------------------------
# Weights: int8 codes or floats per conv, packed; norms folded

def pack_filters(values):
    """(nibble bytes, stored values) of an (O, fan-in) array in the sparse format of tinyasc_kernels.h:
    per filter, 0..13 = skip that many zeros then one stored value, 14 = skip 14 zeros, 15 = end."""
    nibbles, kept = [], []
    for row in values:
        prev = -1
        for p in np.flatnonzero(row):
            gap = int(p) - prev - 1
            while gap >= SKIP:
                nibbles.append(SKIP)
                gap -= SKIP
            nibbles.append(gap)
            kept.append(row[p])
            prev = int(p)
        nibbles.append(END)
    if len(nibbles) % 2:
        nibbles.append(0)
    pairs = np.array(nibbles, np.uint8).reshape(-1, 2)
    return pairs[:, 0] | (pairs[:, 1] << 4), np.array(kept, values.dtype)


def unpack_filters(nib, kept, shape):
    """Inverse of pack_filters (the exporter's round-trip check of every packed layer)."""
    out, codes = np.zeros(shape, kept.dtype), np.stack([nib & 15, nib >> 4], 1).reshape(-1)
    i = v = 0
    for o in range(shape[0]):
        p = -1
        while True:
            code = int(codes[i])
            i += 1
            if code == END:
                break
            if code == SKIP:
                p += SKIP
                continue
            p += code + 1
            out[o, p] = kept[v]
            v += 1
    return out


def fold_bn(bn):
    """(a, b) float64 with bn(x) = a·x + b in eval mode."""
    a = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return a.numpy(), (bn.bias.detach().double() - bn.running_mean.double() * a).numpy()


class ConvWeights:
    """One conv's weights as stored in C: int8 codes with a per-output-channel scale, or floats (scale 1)."""

    def __init__(self, conv, codes=None, scale=None):
        self.conv = conv
        w = conv.weight.detach().float().numpy()
        if codes is None:
            self.values, self.scale = w, np.ones(w.shape[0])
        else:
            self.values = np.asarray(codes, np.int8)
            s = np.asarray(scale, np.float64).reshape(-1)
            self.scale = np.broadcast_to(s, (w.shape[0],)).copy()
            if not np.array_equal((self.values.astype(np.float32) * np.asarray(scale, np.float32)), w):
                raise TinyascError(f"conv weight {tuple(w.shape)}: int8 codes × scale differ from the model's weight")
        self.int8 = self.values.dtype == np.int8


def conv_weights(model, payload):
    """{conv module name: ConvWeights}, the precision the checkpoint deploys at: a compressed checkpoint's
    own int8 codes and scales; a float checkpoint deployed with 8-bit conv weights ("dcase"/"int8"
    storage) gets its per-tensor codes; any other float checkpoint stays float32."""
    scales = (payload.get("quantization") or {}).get("scales") or {}
    storage = deploy_storage(payload)
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        key = f"{name}.weight"
        if key in scales:
            out[name] = ConvWeights(m, payload["state_dict"][key].numpy(), scales[key].float().numpy())
        elif storage in ("dcase", "int8"):
            codes, scale = int8_codes(m.weight)
            out[name] = ConvWeights(m, codes.numpy(), scale.numpy())
        else:
            out[name] = ConvWeights(m)
    return out


# ---------------------------------------------------------------------------------------------
# C text helpers

def c_floats(values, per_line=8):
    vals = [float(v) for v in np.asarray(values, np.float32).reshape(-1)]
    if not all(np.isfinite(vals)):
        raise TinyascError("the model holds a non-finite value; it cannot be exported")
    items = [f"{v:.9g}f" if ("." in f"{v:.9g}" or "e" in f"{v:.9g}") else f"{v:.9g}.0f" for v in vals]
    return ",\n    ".join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)) or "0.0f"


def c_ints(values, per_line=20):
    items = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    return ",\n    ".join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)) or "0"


class Emitter:
    """Collects the constant arrays, conv descriptors and network calls of tinyasc_model.c, the arena
    tensors with their lifetimes (op index of first and last use), and byte counts for the manifest."""

    def __init__(self):
        self.arrays, self.ops, self.tensors, self.layers = [], [], {}, []
        self.bytes = {"weight_values": 0, "weight_index": 0, "folded_norms": 0, "other_constants": 0,
                      "frontend_constants": 0}

    def array(self, ctype, name, values, kind):
        values = np.asarray(values)
        text = c_floats(values) if ctype == "float" else c_ints(values)
        self.arrays.append(f"static const {ctype} {name}[{max(1, values.size)}] = {{\n    {text}\n}};\n")
        self.bytes[kind] += values.size * {"float": 4, "int8_t": 1, "uint8_t": 1, "uint16_t": 2, "int": 4}[ctype]
        return name

    def tensor(self, name, floats):
        self.tensors[name] = {"floats": int(floats), "first": None, "last": None}
        return name

    def op(self, code, *names):
        index = len(self.ops)
        for n in names:
            t = self.tensors[n]
            t["first"] = index if t["first"] is None else t["first"]
            t["last"] = index
        self.ops.append((code, names))

    def conv(self, name, cw, mult, bias, bands=1, act=None):
        """A ta_conv_t for conv `name`; mult/bias (O·bands,) float64 of the folded norm (before the
        weight scale)."""
        conv, values = cw.conv, cw.values
        o = values.shape[0]
        flat = values.reshape(o, -1)
        cname = "L_" + name.replace(".", "_")
        nib, kept = pack_filters(flat)
        vb = 1 if cw.int8 else 4
        sparse = nib.size + kept.size * vb
        dense = flat.size * vb
        if sparse < dense:
            if not np.array_equal(unpack_filters(nib, kept, flat.shape), flat):
                raise TinyascError(f"{name}: the packed weights do not unpack to the model's (exporter bug)")
            nib_ref = self.array("uint8_t", f"{cname}_nib", nib, "weight_index")
            stored = kept
        else:
            nib_ref, stored = "NULL", flat
        vals = self.array("int8_t" if cw.int8 else "float", f"{cname}_{'q' if cw.int8 else 'w'}", stored, "weight_values")
        m = self.array("float", f"{cname}_mult", np.repeat(cw.scale, bands) * mult, "folded_norms")
        b = "NULL" if bias is None else self.array("float", f"{cname}_bias", bias, "folded_norms")
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        ph, pw = conv.padding
        self.arrays.append(
            f"static const ta_conv_t {cname} = {{{conv.out_channels}, {conv.in_channels}, {conv.groups}, {kh}, {kw}, "
            f"{sh}, {sw}, {ph}, {pw}, {bands}, {ACT[act]}, {nib_ref if nib_ref == 'NULL' else nib_ref}, "
            f"{vals if cw.int8 else 'NULL'}, {'NULL' if cw.int8 else vals}, {m}, {b}}};\n")
        nonzero = int(np.count_nonzero(flat))
        self.layers.append({"name": name, "shape": list(values.shape), "weights": int(flat.size), "nonzero": nonzero,
                            "precision": "int8" if cw.int8 else "fp32", "packing": "sparse" if sparse < dense else "dense",
                            "bytes": int(min(sparse, dense))})
        return "&" + cname


# ---------------------------------------------------------------------------------------------
# The network, op by op

def out_len(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def emit_network(em, model, weights, n_mels, frames):
    """Append BCResNetASC's forward pass (eval mode) to `em`; returns the number of classes."""
    f, t = n_mels, frames
    x = em.tensor("x0", f * t)

    def norm_op(module, tensor, c, f, t, label):
        if isinstance(module, ResNorm):
            lam = module.lam.detach().double().numpy().reshape(-1)
            ref = em.array("float", f"{label}_lambda", lam, "other_constants")
            em.op(f"ta_resnorm({{{tensor}}}, {c}, {f}, {t}, {ref}, {lam.size}, {module.freq_in.eps!r}f);", tensor)
        elif isinstance(module, GlobalFreqNorm):
            mean = em.array("float", f"{label}_mean", module.mean.reshape(-1).numpy(), "other_constants")
            std = em.array("float", f"{label}_std", module.std.reshape(-1).numpy(), "other_constants")
            em.op(f"ta_globalnorm({{{tensor}}}, {f}, {t}, {mean}, {std}, {module.eps!r}f);", tensor)
        elif not isinstance(module, nn.Identity):
            raise TinyascError(f"{label}: norm {type(module).__name__} has no C kernel")

    def conv_op(name, src, fin, tin, dst_name, act, norm=None, bands=1, bias=None):
        conv = weights[name].conv
        o = conv.out_channels
        if conv.dilation != (1, 1) or conv.padding_mode != "zeros" or not (conv.groups == 1 or conv.groups == conv.in_channels):
            raise TinyascError(f"{name}: dilation, padding mode or grouping has no C kernel")
        if norm is not None:
            mult, add = fold_bn(norm)
        else:
            mult, add = np.ones(o * bands), bias
        ref = em.conv(name, weights[name], mult, add, bands, act)
        fout, tout = out_len(fin, conv.kernel_size[0], conv.stride[0], conv.padding[0]), \
            out_len(tin, conv.kernel_size[1], conv.stride[1], conv.padding[1])
        dst = em.tensor(dst_name, o * fout * tout)
        em.op(f"ta_conv({ref}, {{{src}}}, {fin}, {tin}, {{{dst}}}, {fout}, {tout});", src, dst)
        return dst, o, fout, tout

    em.op("ta_logmel(&ta_fe, pcm, n_valid, {x0}, {fe_scratch});", "x0", "fe_scratch")
    norm_op(model.input_norm, x, 1, f, t, "input_norm")
    stem_conv, stem_bn, stem_act = model.stem
    if not isinstance(stem_act, nn.ReLU):
        raise TinyascError("stem: only ReLU has a C kernel")
    x, c, f, t = conv_op("stem.0", x, f, t, "stem", "relu", norm=stem_bn)
    for i, (stage, norm, pool) in enumerate(zip(model.stages, model.stage_norms, model.pools)):
        for j, block in enumerate(stage):
            prefix = f"stages.{i}.{j}"
            label = prefix.replace(".", "_")
            if block.stride != (1, 1) or block.dilation != (1, 1):
                raise TinyascError(f"{prefix}: strided or dilated blocks have no C kernel")
            src = x
            fp = block.freq_path
            if block.transition:
                src, c, _, _ = conv_op(f"{prefix}.freq_path.0", x, f, t, f"{label}_pw", "relu", norm=fp[1])
                dw, ssn = f"{prefix}.freq_path.3", fp[4]
            else:
                dw, ssn = f"{prefix}.freq_path.0", fp[1]
            h, _, _, _ = conv_op(dw, src, f, t, f"{label}_freq", None, norm=ssn.bn, bands=ssn.sub_bands)
            if f % ssn.sub_bands:
                raise TinyascError(f"{prefix}: {f} frequency bins do not split into {ssn.sub_bands} sub-bands")
            mean = em.tensor(f"{label}_mean", c * t)
            em.op(f"ta_freq_mean({{{h}}}, {{{mean}}}, {c}, {f}, {t});", h, mean)
            tp = block.time_path
            u, _, _, _ = conv_op(f"{prefix}.time_path.0", mean, 1, t, f"{label}_time", "silu", norm=tp[1])
            v, _, _, _ = conv_op(f"{prefix}.time_path.3", u, 1, t, f"{label}_mix", None)
            shortcut = "NULL" if block.transition else f"{{{x}}}"
            em.op(f"ta_broadcast_add_relu({{{h}}}, {{{v}}}, {shortcut}, {c}, {f}, {t});",
                  h, v, *(() if block.transition else (x,)))
            x = h
        norm_op(norm, x, c, f, t, f"stage{i}_norm")
        if isinstance(pool, nn.MaxPool2d):
            if pool.kernel_size not in (2, (2, 2)) or pool.stride not in (2, (2, 2)) or pool.padding not in (0, (0, 0)):
                raise TinyascError(f"pool {i}: only a 2×2 max-pool with stride 2 has a C kernel")
            p = em.tensor(f"pool{i}", c * (f // 2) * (t // 2))
            em.op(f"ta_maxpool2({{{x}}}, {{{p}}}, {c}, {f}, {t});", x, p)
            x, f, t = p, f // 2, t // 2
        elif not isinstance(pool, nn.Identity):
            raise TinyascError(f"pool {i}: {type(pool).__name__} has no C kernel")
    pooled = em.tensor("pooled", c)
    em.op(f"ta_global_mean({{{x}}}, {{{pooled}}}, {c}, {f}, {t});", x, pooled)
    # mean over (F, T) first, then the 1×1 head: the same as the model's head-then-mean (both linear)
    head = model.head
    ref = em.conv("head", weights["head"], np.ones(head.out_channels), head.bias.detach().double().numpy(), 1, None)
    em.op(f"ta_conv({ref}, {{{pooled}}}, 1, 1, logits, 1, 1);", pooled)
    return head.out_channels


def plan_arena(tensors):
    """Offsets (in floats) of the tensors in one arena: largest first, each at the lowest aligned offset
    that overlaps no placed tensor alive at the same time. Returns (offsets, arena floats)."""
    placed, offsets = [], {}
    for name, t in sorted(tensors.items(), key=lambda kv: (-kv[1]["floats"], kv[0])):
        size = -(-t["floats"] // ALIGN) * ALIGN
        busy = sorted((offsets[n], offsets[n] + tensors[n]["floats"]) for n in placed
                      if not (tensors[n]["last"] < t["first"] or t["last"] < tensors[n]["first"]))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, -(-hi // ALIGN) * ALIGN)
        offsets[name] = offset
        placed.append(name)
    total = max((offsets[n] + tensors[n]["floats"] for n in tensors), default=0)
    return offsets, -(-total // ALIGN) * ALIGN


# ---------------------------------------------------------------------------------------------
# Front end constants

def factorize(n):
    """Prime factors of n (4s first as 2·2 is fine for the generic butterflies), smallest first."""
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def emit_frontend(em, fcfg, frames):
    if fcfg.kind != "logmel":
        raise TinyascError(f"feature kind {fcfg.kind!r}: only the log-mel front end has a C kernel")
    if fcfg.n_fft % 2:
        raise TinyascError(f"n_fft = {fcfg.n_fft}: the C front end needs an even FFT size")
    factors = factorize(fcfg.n_fft // 2)
    if max(factors, default=1) > MAX_RADIX:
        raise TinyascError(f"n_fft = {fcfg.n_fft}: n_fft / 2 has a prime factor above {MAX_RADIX}, which the C FFT lacks")
    window = torch.hann_window(fcfg.win_length, periodic=True, dtype=torch.float64).numpy()
    k = np.arange(fcfg.n_fft // 2)
    twiddle = np.stack([np.cos(2 * np.pi * k / fcfg.n_fft), -np.sin(2 * np.pi * k / fcfg.n_fft)], 1)
    mel = mel_matrix(fcfg)
    rows, cols = np.nonzero(mel)  # row-major order: CSR
    starts = np.searchsorted(rows, np.arange(fcfg.n_mels + 1))
    if len(cols) >= 2 ** 16:
        raise TinyascError("the mel filterbank has too many weights for the C front end's 16-bit indices")
    em.array("float", "fe_window", window, "frontend_constants")
    em.array("float", "fe_twiddle", twiddle, "frontend_constants")
    em.array("int", "fe_factors", factors + [0], "frontend_constants")
    em.array("uint16_t", "fe_mel_rows", starts, "frontend_constants")
    em.array("uint16_t", "fe_mel_cols", cols, "frontend_constants")
    em.array("float", "fe_mel_weights", mel[rows, cols], "frontend_constants")
    em.arrays.append(
        f"static const ta_frontend_t ta_fe = {{{fcfg.n_fft}, {fcfg.hop_length}, {frames}, {fcfg.n_mels}, "
        f"{fcfg.n_fft // 2 + 1}, {(fcfg.n_fft - fcfg.win_length) // 2}, {fcfg.win_length}, fe_window, fe_twiddle, "
        f"fe_factors, fe_mel_rows, fe_mel_cols, fe_mel_weights, {fcfg.log_offset!r}f}};\n")
    em.tensor("fe_scratch", 2 * fcfg.n_fft + fcfg.n_fft // 2 + 1)


# ---------------------------------------------------------------------------------------------
# Files

def c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_header(meta):
    classes = meta["classes"]
    return f"""/* tinyasc C export of {Path(meta['source_checkpoint']['path']).name} (sha256 {meta['source_checkpoint']['sha256'][:12]}…):
 * {meta['arch']} with {meta['weight_precision']} weights; generated by `tinyasc export --format c`. */
#ifndef TINYASC_H
#define TINYASC_H

#include <stdint.h>

#define TA_SAMPLE_RATE {meta['sample_rate']}
#define TA_WINDOW_SAMPLES {meta['window_samples']}L /* one classification window ({meta['clip_seconds']:g} s) */
#define TA_N_MELS {meta['n_mels']}
#define TA_FRAMES {meta['frames']}
#define TA_NUM_CLASSES {len(classes)}
#define TA_ARENA_BYTES {meta['arena_bytes']}L

extern const char *const ta_classes[TA_NUM_CLASSES];

/* log-mel features (TA_N_MELS x TA_FRAMES, row-major) of one window: pcm holds n_valid <= TA_WINDOW_SAMPLES
 * samples, the rest of the window counts as zeros. The result lives in the arena until ta_network runs. */
const float *ta_features(const int16_t *pcm, long n_valid);
/* logits of the features the last ta_features call computed (overwrites them) */
void ta_network(float logits[TA_NUM_CLASSES]);
/* ta_features + ta_network; returns the index of the top class */
int ta_classify_window(const int16_t *pcm, long n_valid, float logits[TA_NUM_CLASSES]);
/* softmax of logits, and the index of the largest */
int ta_softmax(const float logits[TA_NUM_CLASSES], float probs[TA_NUM_CLASSES]);

#endif
"""


def render_model(em, offsets, arena_floats, classes, meta):
    calls = []
    for code, _ in em.ops:
        calls.append("    " + code.format(**{n: f"(ta_arena + {offsets[n]})" for n in em.tensors}))
    split = next(i for i, (code, _) in enumerate(em.ops) if code.startswith("ta_logmel"))
    front, net = calls[:split + 1], calls[split + 1:]
    names = ",\n    ".join(c_string(c) for c in classes)
    return f"""/* Generated by `tinyasc export --format c`: the weights, front-end constants and forward pass of one
 * model (see tinyasc_model.json for the numbers). Weights: {meta['weight_precision']}; activations: float32. */
#include "tinyasc.h"
#include "tinyasc_kernels.h"

#include <math.h>
#include <stddef.h>

const char *const ta_classes[TA_NUM_CLASSES] = {{
    {names}
}};

/* every activation and the front end's scratch: {arena_floats * 4} bytes, offsets planned by the exporter */
static float ta_arena[{arena_floats}];

{''.join(em.arrays)}
const float *ta_features(const int16_t *pcm, long n_valid)
{{
    if (n_valid > TA_WINDOW_SAMPLES)
        n_valid = TA_WINDOW_SAMPLES;
{chr(10).join(front)}
    return ta_arena + {offsets['x0']};
}}

void ta_network(float logits[TA_NUM_CLASSES])
{{
{chr(10).join(net)}
}}

int ta_classify_window(const int16_t *pcm, long n_valid, float logits[TA_NUM_CLASSES])
{{
    float probs[TA_NUM_CLASSES];
    ta_features(pcm, n_valid);
    ta_network(logits);
    return ta_softmax(logits, probs);
}}

int ta_softmax(const float logits[TA_NUM_CLASSES], float probs[TA_NUM_CLASSES])
{{
    int k, best = 0;
    float sum = 0.0f;
    for (k = 1; k < TA_NUM_CLASSES; k++)
        if (logits[k] > logits[best])
            best = k;
    for (k = 0; k < TA_NUM_CLASSES; k++) {{
        probs[k] = expf(logits[k] - logits[best]);
        sum += probs[k];
    }}
    for (k = 0; k < TA_NUM_CLASSES; k++)
        probs[k] /= sum;
    return best;
}}
"""


MAKEFILE = """# Host build of the exported model: `make` gives ./tinyasc_c (see tinyasc_main.c for its modes).
CC ?= cc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror
tinyasc_c: tinyasc_main.c tinyasc_model.c tinyasc_kernels.c tinyasc.h tinyasc_kernels.h
\t$(CC) $(CFLAGS) -o $@ tinyasc_main.c tinyasc_model.c tinyasc_kernels.c -lm
clean:
\trm -f tinyasc_c
"""


def export_c(checkpoint, out, force=False, log=print, device_model=None):
    """Write the C library of `checkpoint` into folder `out` (see the module docstring); refuses a folder
    holding files unless `force`, and then replaces only the files it writes. A devices.pt needs
    `device_model` ("general" or a device id). Returns the manifest dict."""
    out = Path(out)
    model, fcfg, classes, payload = load_checkpoint(checkpoint)
    model = pick_device_model(checkpoint, model, payload, device_model)
    if canonical_arch(payload["arch"]) != "bc_resnet_asc":
        raise TinyascError(f"{checkpoint}: architecture {payload['arch']!r} has no C export (only bc_resnet_asc)")
    from tinyasc.predict import clip_seconds_of

    check_output(out, force=force, kind="dir")
    clip_seconds = clip_seconds_of(payload)
    window = int(round(clip_seconds * fcfg.sample_rate))
    frames = fcfg.num_frames(window)
    if frames < model.cfg.min_frames():
        raise TinyascError(f"{checkpoint}: a {clip_seconds:g} s window gives {frames} frames, fewer than the model's "
                           f"minimum {model.cfg.min_frames()}")
    # the weights `tinyasc predict` runs (checkpoint.deployed_checkpoint): a float checkpoint of the int8 preset
    # holds off-grid conv weights (ConvWeights refused them) and fp16 norms; the fp16 preset rounds to fp16
    model = apply_storage(model, deploy_storage(payload))
    weights = conv_weights(model, payload)
    em = Emitter()
    emit_frontend(em, fcfg, frames)
    num_classes = emit_network(em, model, weights, fcfg.n_mels, frames)
    if num_classes != len(classes):
        raise TinyascError(f"{checkpoint}: {num_classes} outputs but {len(classes)} classes")
    offsets, arena_floats = plan_arena(em.tensors)

    bits = stored_bits(payload)
    storage = deploy_storage(payload)
    dcase = size_bytes(model, bits=bits) if bits else size_bytes(model, scheme=storage or "fp32")
    precisions = sorted({layer["precision"] for layer in em.layers})
    b = em.bytes
    meta = {
        "format": "tinyasc-c", "version": 1, "arch": canonical_arch(payload["arch"]),
        "model_config": payload["model_config"], "feature_config": fcfg.to_dict(), "classes": list(classes),
        "clip_seconds": clip_seconds, "sample_rate": fcfg.sample_rate, "window_samples": window,
        "n_mels": fcfg.n_mels, "frames": frames,
        "weight_precision": "+".join(precisions), "activation_precision": "fp32",
        "source_checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint)},
        "arena_bytes": arena_floats * 4,
        "bytes": {**b, "model_parameters": b["weight_values"] + b["weight_index"] + b["folded_norms"] + b["other_constants"]},
        "dcase_size_bytes": dcase,
        "conv_weights": sum(layer["weights"] for layer in em.layers),
        "conv_nonzero": sum(layer["nonzero"] for layer in em.layers),
        "packing": "per filter: a stream of 4-bit codes (0-13: skip that many zeros, then one stored value; "
                   "14: skip 14 zeros; 15: end of filter) + the non-zero values; a layer is stored dense "
                   "when that is smaller",
        "layers": em.layers,
        "arena_tensors": {n: {"offset_bytes": offsets[n] * 4, "bytes": t["floats"] * 4, "ops": [t["first"], t["last"]]}
                          for n, t in em.tensors.items()},
    }
    files = {"tinyasc.h": render_header(meta), "tinyasc_model.c": render_model(em, offsets, arena_floats, classes, meta),
             "Makefile": MAKEFILE, "tinyasc_model.json": json.dumps(meta, indent=2) + "\n"}
    files.update({name: (CSRC / name).read_text() for name in STATIC_FILES})
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tinyasc-export-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        for name in files:  # each file lands whole (rename); other files in `out` are left alone
            os.replace(Path(tmp) / name, out / name)
    mb = meta["bytes"]
    log(f"wrote {out}/: C99 library of {checkpoint} ({meta['weight_precision']} weights, fp32 activations); "
        f"model parameters {mb['model_parameters']:,} B (weights {mb['weight_values']:,} + index {mb['weight_index']:,} "
        f"+ folded norms {mb['folded_norms']:,} + other {mb['other_constants']:,}) vs DCASE count {dcase:,.0f} B; "
        f"front-end constants {mb['frontend_constants']:,} B; arena {meta['arena_bytes']:,} B")
    return meta

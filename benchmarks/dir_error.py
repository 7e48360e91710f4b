"""How far is the mel-domain device-response shortcut from true convolution? (issue 13, item 2)

For impulse responses of several lengths, compares log-mel(x * h) with log-mel(x) + mel_log_gain(h)
on 10 s signals (noise-like and music-like, seeded; plus data/bench audio if present), after removing
each comparison's overall level offset (the shortcut removes the mean band gain). Reports the mean and
95th-percentile absolute error in dB over all bands and frames (frames 0.3 s from each end ignored).
Run: OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dir_error.py  → benchmarks/results/dir_error.json
"""
import json
from pathlib import Path

import numpy as np
import torch

from tinyasc.device_response import mel_log_gain, random_response
from tinyasc.features import FeatureConfig
from tinyasc.frontend import LogMel

RATE = 16000
DB = 10 / np.log(10)


def signals(rng):
    n = 10 * RATE
    t = np.arange(n) / RATE
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20)), n)
    env = 1 + 0.8 * np.sin(2 * np.pi * 0.7 * t) * np.sin(2 * np.pi * 3.1 * t)
    out = {"pink_noise_modulated": pink * env}
    notes = rng.uniform(110, 880, 20)
    music = np.zeros(n)
    for i, f0 in enumerate(notes):
        seg = slice(i * n // 20, (i + 1) * n // 20)
        for k in range(1, 8):
            music[seg] += np.sin(2 * np.pi * f0 * k * t[seg]) / k * np.exp(-3 * (t[seg] - t[seg][0]))
    out["harmonic_notes"] = music + 0.01 * white
    bench = sorted(Path("data/bench/audio").glob("*.wav"))[:4] if Path("data/bench/audio").is_dir() else []
    for p in bench:
        from tinyasc.audio import load_audio
        out[f"bench:{p.name}"] = load_audio(p, RATE).astype(np.float64)
    return out


def decaying_noise(rng, ms):
    m = max(int(ms / 1000 * RATE), 1)
    h = rng.standard_normal(m) * np.exp(-6.91 * np.arange(m) / m)  # 60 dB decay over its length
    h[0] = 3 * np.sqrt(np.sum(h ** 2))  # a direct path about 10 dB above the tail
    return h


def main():
    cfg = FeatureConfig()
    logmel = LogMel(cfg)
    rng = np.random.default_rng(0)
    sigs = signals(rng)
    edge = int(0.3 * RATE / cfg.hop_length)
    rows = []
    kinds = [(f"decaying_noise_{ms}ms", ms, lambda ms=ms: decaying_noise(rng, ms)) for ms in (5, 20, 65, 130, 300)]
    kinds.append(("make_responses_family", None, lambda: random_response(rng, RATE)))
    with torch.no_grad():
        base = {k: logmel(torch.from_numpy(v).float()[None])[0, 0] for k, v in sigs.items()}
        for name, ms, make in kinds:
            errs = []
            for _ in range(5):
                h = make()
                g = mel_log_gain(h, cfg)
                for k, x in sigs.items():
                    y = np.convolve(x, h)[:len(x)]
                    true = logmel(torch.from_numpy(y).float()[None])[0, 0]
                    approx = base[k] + g[:, None]
                    d = (true - approx)[:, edge:-edge]
                    d = d - d.mean()
                    errs.append(d.abs().flatten().numpy() * DB)
            e = np.concatenate(errs)
            rows.append({"response": name, "length_ms": ms if ms is not None else round(len(h) / RATE * 1000, 1),
                         "mean_abs_error_db": round(float(e.mean()), 3),
                         "p95_abs_error_db": round(float(np.percentile(e, 95)), 3)})
            print(rows[-1], flush=True)
    out = {"conditions": {"signals": list(sigs), "responses_per_kind": 5, "seed": 0,
                          "window_ms": 130, "hop_ms": 30, "n_mels": cfg.n_mels,
                          "level_offset_removed": True}, "rows": rows}
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/dir_error.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

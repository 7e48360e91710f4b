"""soxr's HQ against VHQ (tinyasc's resampler setting, audio.RESAMPLE_QUALITY): decode + resample time per
file (alternating rounds, medians, one thread) and what it does to a trained model's predictions on the
evaluate split (top-1 agreement, max |probability difference|). The issue's bar for switching: top-1
agreement >= 99.9 %.

    python benchmarks/resample_quality.py --data data/synthetic --model runs/x/best.pt [--rounds 3]

Writes benchmarks/results/resample_quality.json."""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tinyasc import audio  # noqa: E402
from tinyasc.data.tau import read_split  # noqa: E402
from tinyasc.predict import load  # noqa: E402
from tinyasc.system import cpu_flags  # noqa: E402

QUALITIES = ("VHQ", "HQ")


def decode_all(files, quality):
    audio.RESAMPLE_QUALITY = quality
    start = time.perf_counter()
    for f in files:
        audio.load_audio(f)
    return (time.perf_counter() - start) / len(files)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data/synthetic"))
    parser.add_argument("--model", required=True, help="a trained checkpoint or .onnx for the agreement check")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/resample_quality.json"))
    args = parser.parse_args()
    files = [str(Path(args.data) / c.filename) for c in read_split(args.data, "evaluate")]
    rates = sorted({audio.soundfile.info(f).samplerate for f in files[:20]})
    decode_all(files[:50], "VHQ")  # warm the page cache
    times = {q: [] for q in QUALITIES}
    for _ in range(args.rounds):
        for q in QUALITIES:  # alternate: load on a shared machine hits both alike
            times[q].append(decode_all(files, q))
    clf = load(args.model, threads=1)
    probs = {}
    for q in QUALITIES:
        audio.RESAMPLE_QUALITY = q
        probs[q] = clf.predict(files).probabilities
    audio.RESAMPLE_QUALITY = "VHQ"
    agree = float((probs["VHQ"].argmax(1) == probs["HQ"].argmax(1)).mean())
    result = {"what": "decode + resample per file (audio.load_audio), and predictions with each resampler quality",
              "files": len(files), "source_rates": rates, "model": Path(args.model).name,
              "ms_per_file": {q: 1000 * statistics.median(t) for q, t in times.items()},
              "hq_over_vhq_time": statistics.median(times["HQ"]) / statistics.median(times["VHQ"]),
              "top1_agreement": agree, "max_abs_prob_diff": float(np.abs(probs["VHQ"] - probs["HQ"]).max()),
              "rounds": args.rounds, "load_average": os.getloadavg(), "cpu_flags": cpu_flags()}
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

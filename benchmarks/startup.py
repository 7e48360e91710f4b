"""Start-up time of the `tinyasc predict` path: wall time of a fresh interpreter importing what
`tinyasc predict MODEL.onnx` imports (the CLI, the predict module, and the front end it builds), for one or more
source trees side by side (alternating runs, medians), e.g. before/after a change:

    python benchmarks/startup.py --src before=OLD/src --src after=src

Writes benchmarks/results/startup.json (paths are written relative to the repository)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("import sys, tinyasc.cli, tinyasc.predict, tinyasc.features as f; c = f.FeatureConfig(); "
        "f.NumpyFrontend(c) if hasattr(f, 'NumpyFrontend') else f.make_frontend(c); "  # a tree before the numpy front end
        "print('librosa' in sys.modules, 'torch' in sys.modules)")


def one_run(src):
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    librosa, torch = out.stdout.split()
    return time.perf_counter() - start, librosa == "True", torch == "True"


def split_label(text):
    """'NAME=PATH' → (NAME, PATH); a bare PATH is labelled by its position."""
    return tuple(text.split("=", 1)) if "=" in text else (None, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", help="a src/ folder holding tinyasc (repeatable; default ./src)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/startup.json"))
    args = parser.parse_args()
    named = [split_label(s) for s in (args.src or [str(ROOT / "src")])]
    names = {src: name or f"tree{i}" for i, (name, src) in enumerate(named)}
    srcs = [src for _, src in named]
    for src in srcs:
        one_run(src)  # warm the page cache
    times = {src: [] for src in srcs}
    librosa, torch = {}, {}
    for _ in range(args.repeats):
        for src in srcs:  # alternate, so load on a shared machine hits every tree alike
            t, librosa[src], torch[src] = one_run(src)
            times[src].append(t)
    rows = [{"src": names[src], "median_s": statistics.median(ts), "min_s": min(ts), "imports_librosa": librosa[src],
             "imports_torch": torch[src], "runs": len(ts)} for src, ts in times.items()]
    for i, row in enumerate(rows):
        row["ratio_to_first"] = row["median_s"] / rows[0]["median_s"]
        print(f"{row['src']:30s} median {row['median_s']:.3f} s  min {row['min_s']:.3f} s  "
              f"librosa imported: {row['imports_librosa']}  torch imported: {row['imports_torch']}  ratio {row['ratio_to_first']:.2f}")
    result = {"what": "fresh interpreter: import tinyasc.cli and tinyasc.predict and build the front end that "
                      "`predict MODEL.onnx` uses",
              "load_average": os.getloadavg(), "python": sys.version.split()[0], "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {Path(args.out).relative_to(ROOT) if Path(args.out).resolve().is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

"""Time of `tinyasc.load` on a checkpoint: a fresh interpreter per run (imports excluded from the
timed part, reported apart), the export cache off (every load exports the graph: the behaviour before the
cache), the cache warm (the graph is read), and the model's exported `.onnx` for reference; alternating
runs, medians, ratios from the same run. One torch / ONNX Runtime thread.

    python benchmarks/load_time.py [--preset bc_resnet_asc_1] [--repeats 5]

Writes benchmarks/results/load_time.json."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = """
import time, sys
start = time.perf_counter()
import torch, tinyasc
imported = time.perf_counter()
clf = tinyasc.load(sys.argv[1])
loaded = time.perf_counter()
print(imported - start, loaded - imported)
"""


def one_run(model, cache):
    env = {**os.environ, "TINYASC_ONNX_CACHE": cache, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", CODE, str(model)], env=env, capture_output=True, text=True, check=True)
    imports, load = map(float, out.stdout.split())
    return imports, load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bc_resnet_asc_1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/load_time.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.export import export
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model
    from tinyasc.system import cpu_flags

    with tempfile.TemporaryDirectory() as tmp:
        ckpt, onnx, cache = Path(tmp) / "m.pt", Path(tmp) / "m.onnx", str(Path(tmp) / "cache")
        save_checkpoint(ckpt, create_model(args.preset), "bc_resnet_asc", FeatureConfig(),
                        [f"s{i}" for i in range(10)], clip_seconds=1.0)
        export(ckpt, onnx, log=lambda _: None)
        cases = {"checkpoint, cache off (export at load)": (ckpt, "off"),
                 "checkpoint, cache warm": (ckpt, cache), ".onnx + sidecar": (onnx, "off")}
        one_run(ckpt, cache)  # fills the cache and the page cache
        runs = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (model, c) in cases.items():  # alternate: load on a shared machine hits every case alike
                runs[name].append(one_run(model, c))
    rows = []
    for name, times in runs.items():
        rows.append({"case": name, "load_median_s": statistics.median(t[1] for t in times),
                     "load_min_s": min(t[1] for t in times),
                     "import_median_s": statistics.median(t[0] for t in times), "runs": len(times)})
    base = rows[0]["load_median_s"]
    for row in rows:
        row["ratio_to_cache_off"] = row["load_median_s"] / base
        print(f"{row['case']:40s} load median {row['load_median_s']:.3f} s (min {row['load_min_s']:.3f})  "
              f"imports {row['import_median_s']:.2f} s  ×{row['ratio_to_cache_off']:.3f}")
    result = {"what": f"tinyasc.load of a {args.preset} checkpoint in a fresh interpreter, imports timed apart",
              "load_average": os.getloadavg(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(), "python": sys.version.split()[0],
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Peak memory (max RSS) and wall time of `tinyasc predict` on one long file, before vs after streaming:
10- and 60-minute 44.1 kHz 16-bit WAVs, a BC-ResNet-ASC-1 checkpoint with 10 s windows, each run in a
fresh process. `--src NAME=PATH` adds a source tree to compare (e.g. the code before the change).

    python benchmarks/long_file_memory.py --src before=OLD/src --src after=src

Writes benchmarks/results/long_file_memory.json."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
RUN = ("import resource, sys; from tinyasc.cli import main; code = main(sys.argv[1:]); "
       "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def write_wav(path, minutes, rate=44100):
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(int(minutes * 60)):  # one second at a time: the writer itself stays small
            f.write((0.1 * rng.standard_normal(rate)).astype(np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", help="NAME=PATH of a src/ folder (default after=src)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    args = parser.parse_args()
    trees = [s.split("=", 1) for s in (args.src or [f"after={ROOT / 'src'}"])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sys.path.insert(0, str(ROOT / "src"))
        from tinyasc.checkpoint import save_checkpoint
        from tinyasc.dcase import SCENES
        from tinyasc.features import FeatureConfig
        from tinyasc.models import create_model

        ckpt = tmp / "m.pt"
        save_checkpoint(ckpt, create_model("bc_resnet_asc_1"), "bc_resnet", FeatureConfig(), SCENES, clip_seconds=10.0)
        for minutes in args.minutes:
            wav = tmp / f"{minutes:g}min.wav"
            write_wav(wav, minutes)
            for name, src in trees:
                env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
                start = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", RUN, "predict", str(ckpt), str(wav), "--out",
                                      str(tmp / f"{name}.tsv"), "--force"], env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                rss = next((int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("MAXRSS_KB")), None)
                row = {"tree": name, "minutes": minutes, "file_mb": round(wav.stat().st_size / 2**20, 1),
                       "exit_code": out.returncode, "peak_rss_mb": round(rss / 1024, 1) if rss else None,
                       "seconds": round(seconds, 1)}
                rows.append(row)
                print(row, flush=True)
            wav.unlink()
    result = {"what": "tinyasc predict CHECKPOINT FILE.wav (BC-ResNet-ASC-1, 10 s windows), one fresh process per run",
              "load_average": [round(v, 2) for v in os.getloadavg()], "rows": rows}
    out = ROOT / "benchmarks" / "results" / "long_file_memory.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

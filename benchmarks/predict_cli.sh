#!/usr/bin/env bash
# End-to-end throughput of the default `tinyasc predict CHECKPOINT FOLDER` path (decode 44.1 kHz 24-bit
# WAV + resample + log-mel + network; checkpoints run through an in-memory ONNX Runtime graph on CPU).
# Start-up (imports, export, session) is measured with one clip and subtracted: throughput =
# (N − 1) / (t_N − t_1), best of 3 runs each. Writes benchmarks/results/predict_cli.txt.
set -euo pipefail
N=${N:-288}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$N" <<'PY'
import sys, numpy as np, soundfile, torch
from tinyasc.checkpoint import save_checkpoint
from tinyasc.data.tau import SCENES
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
work, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(n):  # 10 s clips as TAU has them; random weights: speed does not depend on them
    soundfile.write(f"{work}/clip{i:03d}.wav", (0.1 * rng.standard_normal(441000)).astype(np.float32), 44100, subtype="PCM_24")
for name in ("bc_resnet_asc_1", "bc_resnet_asc_8"):
    torch.manual_seed(0)
    save_checkpoint(f"{work}/{name}.pt", create_model(name), "bc_resnet", FeatureConfig(), SCENES, clip_samples=160000)
PY
ls "$work"/clip000.wav > "$work/one.txt"
best() { for _ in 1 2 3; do /usr/bin/time -f "%e" tinyasc predict "$@" --out "$work/out.tsv" --force 2>&1 >/dev/null | tail -1; done | sort -n | head -1; }
out=benchmarks/results/predict_cli.txt
{
  echo "tinyasc predict CHECKPOINT FOLDER, $N clips of 10 s (44.1 kHz PCM-24), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  for m in bc_resnet_asc_1 bc_resnet_asc_8; do
    t1=$(best "$work/$m.pt" "$work/one.txt"); tn=$(best "$work/$m.pt" "$work")
    python3 -c "print(f'$m: start-up {$t1:.2f} s, $N clips {$tn:.2f} s, throughput {($N - 1) / ($tn - $t1):.0f} clips/s')"
  done
} | tee "$out"

"""`tinyasc predict` of an exported .onnx model runs without importing torch (issue 26: `import torch` alone
was 69 % of a 200-clip run of 1 s clips): numpy front end + ONNX Runtime, the same table as the checkpoint's."""
import subprocess
import sys

import numpy as np
import soundfile

from tinyasc.checkpoint import save_checkpoint
from tinyasc.export import export
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
from tinyasc.predict import load

CODE = """
import sys
from tinyasc.cli import main
code = main(sys.argv[1:])
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def test_predict_of_an_onnx_model_never_imports_torch_and_matches_the_checkpoint(tmp_path):
    ckpt, onnx = tmp_path / "m.pt", tmp_path / "m.onnx"
    save_checkpoint(ckpt, create_model("bc_resnet_asc_1"), "bc_resnet_asc", FeatureConfig(), [f"s{i}" for i in range(10)],
                    clip_seconds=1.0)
    export(ckpt, onnx, log=lambda _: None)
    rng = np.random.default_rng(0)
    files = []
    for i, seconds in enumerate((1.0, 2.5, 0.4)):  # one window, several (the last zero-padded), a short clip
        files.append(tmp_path / f"x{i}.wav")
        soundfile.write(files[-1], 0.1 * rng.standard_normal(int(16000 * seconds)).astype(np.float32), 16000)
    out = tmp_path / "o.tsv"
    done = subprocess.run([sys.executable, "-c", CODE, "predict", str(onnx), *map(str, files), "--out", str(out),
                           "--workers", "1"], capture_output=True, text=True)
    assert done.returncode == 0 and "torch imported: False" in done.stderr, done.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    expected = load(ckpt).predict(files).probabilities
    np.testing.assert_allclose(np.array([r[2:] for r in rows], dtype=float), expected, atol=2e-5)

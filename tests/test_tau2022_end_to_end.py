"""The DCASE 2025 workflow on a TAU 2022-layout folder, end to end through the command line:
train on split25 → evaluate → fine-tune per device → predict with device ids → submission files that
pass the validator's rules."""
import json

import pytest

from tinyasc.cli import main
from tinyasc.data.synthetic import generate
from tinyasc.submission import validate_files

pytestmark = pytest.mark.slow


def test_split25_train_evaluate_device_models_predict_and_submit(tmp_path):
    data = tmp_path / "tau2022"
    generate(data, seed=0, scale="small", clip_seconds=2.0, layout="tau2022", workers=1, progress=False,
             sample_rate=16000)
    tiny = ["--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "train.warmup_epochs=0",
            "--set", "runtime.extract_workers=0", "--set", "train.select_on='macro_accuracy'", "--quiet"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--train-split", "split25", *tiny]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["rules"]["dcase2025"]["pass"] and "macro_accuracy" in results["last"]
    assert main(["evaluate", str(tmp_path / "run" / "last.pt"), "--data", str(data), "--out", str(tmp_path / "eval"),
                 "--quiet"]) == 0
    assert main(["finetune-devices", str(tmp_path / "run" / "last.pt"), "--data", str(data), "--out",
                 str(tmp_path / "dev"), "--set", "train.epochs=1", "--set", "train.batch_size=8", "--min-clips", "8",
                 "--quiet"]) == 0
    # one evaluate call on the device checkpoint: device-specific results and the general model's
    assert main(["evaluate", str(tmp_path / "dev" / "devices.pt"), "--data", str(data), "--out",
                 str(tmp_path / "eval_dev"), "--quiet"]) == 0
    assert "general" in json.loads((tmp_path / "eval_dev" / "metrics.json").read_text())
    audio = sorted(str(p) for p in (data / "audio").glob("*.wav"))[:12]
    assert main(["predict", str(tmp_path / "dev" / "devices.pt"), *audio, "--out", str(tmp_path / "eval.tsv"),
                 "--device-ids", str(data / "meta.csv"), "--workers", "1"]) == 0
    assert main(["submission", "--label", "Kim_QTI_task1_1", "--predictions", str(tmp_path / "eval.tsv"),
                 "--metrics", str(tmp_path / "eval_dev" / "metrics.json"), "--model", str(tmp_path / "dev" / "devices.pt"),
                 "--name", "BC-ResNet-ASC-1", "--abbreviation", "BCRes1", "--author", "Kim,B,a@b.c,QTI",
                 "--inference-code", "https://github.com/kim/Kim_QTI_task1", "--out", str(tmp_path / "sub")]) == 0
    folder = tmp_path / "sub" / "task1" / "Kim_QTI_task1_1"
    assert validate_files(folder / "Kim_QTI_task1_1.output.csv", folder / "Kim_QTI_task1_1.meta.yaml") == []
    # the inference package of the trained device checkpoint runs under the template's call order
    assert main(["package", str(tmp_path / "dev" / "devices.pt"), "--label", "Kim_QTI_task1_1", "--data", str(data),
                 "--out", str(tmp_path / "pkg")]) == 0
    assert (tmp_path / "pkg" / "Kim_QTI_task1" / "resources" / "test.csv").is_file()

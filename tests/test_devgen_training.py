"""Device-generalisation options in training, end to end on the small benchmark: Freq-MixStyle,
device-response augmentation from `tinyasc make-responses`, and distillation from a teacher-logits
file written by `tinyasc predict --logits` (keys relative to the dataset root)."""
import subprocess
import sys

import numpy as np
import pytest

from tinyasc.data.tau import read_split
from tinyasc.errors import TinyascError
from tinyasc.experiment import load_experiment
from tinyasc.runs import run_training

TINY = ["train.epochs=1", "train.batch_size=16", "train.warmup_epochs=0", "runtime.extract_workers=0"]


def tiny(*extra):
    return load_experiment(None, TINY + list(extra), base={"model": {"preset": "bc_resnet_asc_1"}})


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tinyasc", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_mixstyle_responses_and_logit_distillation_train_end_to_end(small_benchmark, tmp_path):
    irs = tmp_path / "irs"
    assert cli("make-responses", str(irs), "--count", "4", "--seed", "1").returncode == 0
    assert len(list(irs.glob("*.wav"))) == 4
    teacher = run_training(tiny(), small_benchmark, tmp_path / "teacher", progress=False)
    assert teacher["last"]["clips"] > 0
    logits = tmp_path / "teacher.npz"
    result = cli("predict", str(tmp_path / "teacher" / "last.pt"), str(small_benchmark / "audio"), "--out",
                 str(tmp_path / "t.tsv"), "--logits", str(logits), "--relative-to", str(small_benchmark))
    assert result.returncode == 0, result.stderr
    with np.load(logits) as f:
        names = set(f["filenames"].tolist())
    assert {c.filename for c in read_split(small_benchmark, "train")} <= names
    student = tiny("train.freq_mixstyle_p=0.4", f"train.dir_folder='{irs}'", "train.dir_p=0.6",
                   f"train.teacher_logits='{logits}'")
    results = run_training(student, small_benchmark, tmp_path / "student", progress=False)
    assert np.isfinite(results["last"]["log_loss"])
    # the options change training: the student's weights differ from a run without them
    plain = run_training(tiny(), small_benchmark, tmp_path / "plain", progress=False)
    assert results["last"]["log_loss"] != plain["last"]["log_loss"]


def test_a_teacher_file_missing_training_clips_is_refused_before_training(small_benchmark, tmp_path):
    from tinyasc.distill import write_logits

    bad = tmp_path / "bad.npz"
    write_logits(bad, ["audio/nope.wav"], np.zeros((1, 10), np.float32),
                 ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
                  "street_pedestrian", "street_traffic", "tram"])
    with pytest.raises(TinyascError, match="bad.npz"):
        run_training(tiny(f"train.teacher_logits='{bad}'"), small_benchmark, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # a run that failed before its first epoch leaves nothing behind
    assert run_training(tiny(), small_benchmark, tmp_path / "run", progress=False)["last"]["clips"] > 0

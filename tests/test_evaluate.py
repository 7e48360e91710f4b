"""tinyasc.evaluate and tinyasc.report: DCASE log loss = sklearn's, per-device/group metrics, ensembles,
Table 3 formatting, mean ± std aggregation over seeds, and the evaluate/report commands."""
import json

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from tinyasc.cli import main
from tinyasc.evaluate import ensemble, format_table, log_loss, metrics, softmax
from tinyasc.report import aggregate, format_aggregate, report

CLASSES = ["airport", "bus", "metro"]


def test_log_loss_equals_sklearn_including_extreme_probabilities():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(50, 3)) * 4)
    labels = rng.integers(0, 3, 50)
    assert log_loss(probs, labels) == pytest.approx(sk_log_loss(labels, probs, labels=[0, 1, 2]), rel=1e-12)
    hard = np.eye(3)[[0, 1, 2, 0]]  # a confidently wrong prediction is clipped, not infinite
    wrong = np.array([1, 1, 2, 0])
    assert log_loss(hard, wrong) == pytest.approx(sk_log_loss(wrong, hard, labels=[0, 1, 2]), rel=1e-12)


def test_metrics_per_device_group_class_and_confusion():
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])
    devices = np.array(["a", "a", "s4", "b"])
    m = metrics(probs, labels, devices, CLASSES)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["per_device"]["a"]["accuracy"] == 1.0 and m["per_device"]["s4"]["accuracy"] == 0.0
    assert m["per_group"]["real"]["clips"] == 3 and m["per_group"]["unseen"]["accuracy"] == 0.0
    assert "seen" not in m["per_group"]  # no S1-S3 clips
    assert m["per_class"]["bus"]["accuracy"] == 0.5
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["log_loss"] == pytest.approx(log_loss(probs, labels))
    table = format_table([("model", m)])
    assert table.splitlines()[0].startswith("| Method | A | B | C | S1")
    assert "| model | 100.0 | 100.0 | – |" in table


def test_ensemble_averages_probabilities():
    a, b = np.array([[0.8, 0.2, 0.0]]), np.array([[0.2, 0.6, 0.2]])
    assert np.allclose(ensemble([a, b]), [[0.5, 0.4, 0.1]])


def fake_run(path, name, accuracies, chosen_on=None):
    per_device = {d: {"accuracy": acc, "log_loss": 1.0, "clips": 10} for d, acc in accuracies.items()}
    m = {"accuracy": float(np.mean(list(accuracies.values()))), "log_loss": 1.0, "clips": 90,
         "per_device": per_device, "per_group": {}, "per_class": {}, "confusion": [], "classes": []}
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"name": name, "model": "bc_resnet_asc_1"}))
    protocol = {"selected_on": {"split": chosen_on, "metric": "accuracy"}} if chosen_on else {}
    (path / "results.json").write_text(json.dumps({"last": m, "best": m, **protocol}))


def test_report_says_per_row_which_split_chose_the_best_epoch(tmp_path):
    fake_run(tmp_path / "v" / "seed0", "held", {"a": 0.5}, chosen_on="validation")
    fake_run(tmp_path / "old" / "seed0", "old", {"a": 0.5})  # written before validation splits existed
    text, data = report([tmp_path / "v" / "seed0", tmp_path / "old" / "seed0"])
    assert "| held | 1 | validation | 50.0 |" in text and "| old | 1 | evaluate | 50.0 |" in text
    assert data["best"]["held"]["chosen_on"] == "validation"


def test_aggregate_gives_mean_and_std_over_seeds(tmp_path):
    fake_run(tmp_path / "s0", "x", {"a": 0.8, "s4": 0.4})
    fake_run(tmp_path / "s1", "x", {"a": 0.6, "s4": 0.6})
    table = aggregate([tmp_path / "s0", tmp_path / "s1"])
    assert table["x"]["seeds"] == 2
    assert table["x"]["mean"][0] == pytest.approx(70.0)  # device A
    assert table["x"]["std"][0] == pytest.approx(10.0)
    assert table["x"]["mean"][9] == pytest.approx(60.0)  # overall
    text = format_aggregate(table, "t")
    assert "| x | 2 | 70.0 |" in text and "60.0 ± 0.0" in text


def test_report_command_finds_runs_and_writes_markdown(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "seed0", "x", {"a": 0.5})
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "t.md")]) == 0
    assert "Last epoch" in (tmp_path / "t.md").read_text()
    assert json.loads((tmp_path / "t.json").read_text())["best"]["x"]["seeds"] == 1
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_train_then_evaluate_and_ensemble_commands(small_benchmark, tmp_path, capsys):
    common = ["--data", str(small_benchmark), "--quiet", "--set", "train.epochs=1", "--set", "train.batch_size=16",
              "--set", "train.extract_workers=0"]
    assert main(["train", "--out", str(tmp_path / "r0"), *common]) == 0
    assert main(["train", "--out", str(tmp_path / "r1"), "--seed", "1", *common]) == 0
    capsys.readouterr()
    ckpts = [str(tmp_path / "r0" / "last.pt"), str(tmp_path / "r1" / "last.pt")]
    assert main(["evaluate", *ckpts, "--data", str(small_benchmark), "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2" in out and "| Method | A |" in out
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["clips"] == 90 and set(saved["per_device"]) >= {"a", "s6"}
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000


def test_report_counts_a_run_and_a_sweeps_seed0_of_the_same_training_once(tmp_path, capsys):
    for folder in ("runs/x", "runs/x_sweep/seed0", "runs/x_sweep/seed1"):
        fake_run(tmp_path / folder, "x", {"a": 0.5 if folder.endswith("seed1") else 0.7})
        seed = 1 if folder.endswith("seed1") else 0
        (tmp_path / folder / "config.json").write_text(json.dumps({"name": "x", "model": "bc_resnet_asc_1",
                                                                   "train": {"seed": seed}}))
        (tmp_path / folder / "data.json").write_text('{"files": 90}')
    assert main(["report", str(tmp_path / "runs"), str(tmp_path / "runs" / "x_sweep"), "--out", str(tmp_path / "t.md")]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["last"]["x"]["seeds"] == 2 and len(data["duplicates"]) == 1
    assert "counted once" in capsys.readouterr().out


def test_report_keeps_runs_of_different_configs_apart(tmp_path):
    fake_run(tmp_path / "a", "x", {"a": 0.8})
    fake_run(tmp_path / "b", "x", {"a": 0.4})
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    (tmp_path / "b" / "config.json").write_text(json.dumps({**config, "features": {"kind": "pcen"}}))
    table = aggregate([tmp_path / "a", tmp_path / "b"])
    assert len(table) == 2 and all(name.startswith("x [") and row["seeds"] == 1 for name, row in table.items())


def test_macro_accuracy_is_the_mean_of_the_class_accuracies():
    from tinyasc.evaluate import metrics

    probs = np.eye(3)[[0, 0, 0, 1, 2, 2]]  # predictions
    labels = np.array([0, 0, 0, 0, 1, 2])  # class 0: 3 of 4 right, class 1: 0 of 1, class 2: 1 of 1
    m = metrics(probs, labels, np.array(["a"] * 6), ["x", "y", "z"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_accuracy"] == pytest.approx((0.75 + 0 + 1) / 3)

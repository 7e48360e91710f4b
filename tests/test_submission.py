"""DCASE 2024/2025 submission files: names, header, separators, column order, probability columns and the
meta.yaml blocks the published validator requires; the YAML we write is read back by PyYAML unchanged."""
import numpy as np
import pytest
import yaml

from tinyasc.errors import TinyascError

from tinyasc.submission import (DESCRIPTION_FIELDS, HEADER, SCENES, SubmissionError, meta, output_name,
                                output_table, to_yaml, validate_files, validate_output_text, write_package)

LABEL = "Kim_QTI_task1_1"
AUTHORS = [{"lastname": "Kim", "firstname": "Byeonggeun", "email": "a@b.c", "affiliation": "QTI", "corresponding": True},
           {"lastname": "Yang", "firstname": "Seunghan", "email": "d@e.f", "affiliation": "QTI"}]


def results():
    return {"accuracy": 0.6, "log_loss": 1.1, "macro_accuracy": 0.58,
            "per_class": {c: {"accuracy": 0.5 + i / 100, "log_loss": 1.0} for i, c in enumerate(SCENES)},
            "per_device": {d: {"accuracy": 0.6, "log_loss": 1.1} for d in ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")}}


def test_output_table_has_dcase_header_tabs_and_reorders_columns_by_name():
    classes = list(reversed(SCENES))  # a model whose class order differs
    probs = np.zeros((2, 10))
    probs[0, classes.index("park")] = 1.0
    probs[1, classes.index("tram")] = 1.0
    text = output_table(["0.wav", "1.wav"], probs, classes)
    lines = text.splitlines()
    assert lines[0].split("\t") == list(HEADER)
    row = lines[1].split("\t")
    assert row[1] == "park" and float(row[2 + SCENES.index("park")]) == 1.0
    assert lines[2].split("\t")[1] == "tram"
    assert validate_output_text(text, numeric_names=True) == []


@pytest.mark.parametrize("bad, problem", [
    ("filename,scene_label\n", "header"),
    ("\t".join(HEADER) + "\n0.wav\tpark\t" + "\t".join(["0.1"] * 9) + "\n", "fields"),
    ("\t".join(HEADER) + "\n0.wav\tbeach\t" + "\t".join(["0.1"] * 10) + "\n", "unknown scene"),
    ("\t".join(HEADER) + "\n0.wav\tpark\t" + "\t".join(["x"] + ["0.1"] * 9) + "\n", "not a finite number"),
    ("\t".join(HEADER) + "\n0.mp3\tpark\t" + "\t".join(["0.1"] * 10) + "\n", ".wav"),
    ("\t".join(HEADER) + "\n" + 2 * ("0.wav\tpark\t" + "\t".join(["0.1"] * 10) + "\n"), "duplicate"),
])
def test_the_checker_finds_what_the_validator_rejects(bad, problem):
    assert any(problem in p for p in validate_output_text(bad))


def test_names_and_labels_follow_the_rules():
    assert output_name(LABEL) == "Kim_QTI_task1_1.output.csv"
    assert output_name(LABEL, 25) == "Kim_QTI_task1_1.output.split_25.csv"
    for bad in ("Kim_QTI_task1_5", "Kim_task1_1", "Kim_QTI_task2_1", ""):
        with pytest.raises(SubmissionError, match="LASTNAME_INSTITUTE_task1_N"):
            output_name(bad)
    with pytest.raises(SubmissionError, match="subset"):
        output_name(LABEL, 30)


def test_meta_yaml_round_trips_and_holds_every_required_block():
    m = meta(LABEL, name="BC-ResNet-ASC", abbreviation="BCRes", authors=AUTHORS, results=results(),
             complexity={"total_model_size": 61000, "total_parameters": 315000, "total_parameters_non_zero": 33000,
                         "memory_use": 100000, "macs": 28000000})
    loaded = yaml.safe_load(to_yaml(m))
    assert loaded["submission"]["label"] == LABEL
    assert sum(bool(a.get("corresponding")) for a in loaded["submission"]["authors"]) == 1
    assert set(DESCRIPTION_FIELDS) <= set(loaded["system"]["description"])
    assert loaded["system"]["complexity"]["total_parameters"] == 315000
    assert set(loaded["system"]["energy_consumption"]) == {"training", "inference", "baseline_inference"}
    dev = loaded["results"]["development_dataset"]
    assert dev["overall"] == {"accuracy": 58.0, "logloss": 1.1}  # the macro accuracy is the headline
    assert set(dev["class_wise"]) == set(SCENES) and set(dev["device_wise"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    assert dev["class_wise"]["bus"] == {"accuracy": 51.0, "logloss": 1.0}


def test_meta_refuses_what_the_validator_refuses():
    with pytest.raises(SubmissionError, match="corresponding"):
        meta(LABEL, name="x", abbreviation="x", authors=[dict(AUTHORS[1])])
    with pytest.raises(SubmissionError, match="longer than 10"):
        meta(LABEL, name="x", abbreviation="a" * 11, authors=AUTHORS)


def test_package_is_written_per_subset_and_validates(tmp_path):
    probs = np.full((3, 10), 0.1)
    table = output_table([f"audio/{i}.wav" for i in range(3)], probs, SCENES)
    m = meta(LABEL, name="x", abbreviation="x", authors=AUTHORS, results=results())
    paths = write_package(tmp_path, LABEL, {25: table, 100: table}, m)
    assert [p.name for p in paths] == ["Kim_QTI_task1_1.output.split_25.csv", "Kim_QTI_task1_1.output.split_100.csv",
                                       "Kim_QTI_task1_1.meta.yaml"]
    assert validate_files(paths[0], paths[-1]) == []
    with pytest.raises(TinyascError, match="exists"):
        write_package(tmp_path, LABEL, {25: table}, m)  # no overwrite without force
    write_package(tmp_path, LABEL, {25: table}, m, force=True)


def test_validate_files_finds_a_mismatched_label(tmp_path):
    table = output_table(["0.wav"], np.full((1, 10), 0.1), SCENES)
    (tmp_path / "Kim_QTI_task1_1.output.csv").write_text(table)
    (tmp_path / "Lee_QTI_task1_1.meta.yaml").write_text(to_yaml(meta("Lee_QTI_task1_1", name="x", abbreviation="x",
                                                                    authors=AUTHORS)))
    problems = validate_files(tmp_path / "Kim_QTI_task1_1.output.csv", tmp_path / "Lee_QTI_task1_1.meta.yaml")
    assert any("label differs" in p for p in problems)





def test_submission_command_builds_a_valid_package(tmp_path):
    import json
    import subprocess
    import sys

    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model

    ckpt = tmp_path / "m.pt"
    classes = list(reversed(SCENES))
    save_checkpoint(ckpt, create_model("bc_resnet_asc_1"), "bc_resnet", FeatureConfig(), classes)
    table = "\t".join(["filename", "scene_label", *classes]) + "\n" + "".join(
        f"audio/{i}.wav\tpark\t" + "\t".join(["0.1"] * 10) + "\n" for i in range(4))
    (tmp_path / "pred.tsv").write_text(table)
    (tmp_path / "metrics.json").write_text(json.dumps(results()))
    cmd = [sys.executable, "-m", "tinyasc", "submission", "--label", LABEL, "--predictions", f"25={tmp_path / 'pred.tsv'}",
           "--metrics", str(tmp_path / "metrics.json"), "--model", str(ckpt), "--name", "BC-ResNet-ASC-1",
           "--abbreviation", "BCRes1", "--author", "Kim,B,a@b.c,QTI", "--out", str(tmp_path / "sub")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "sub" / LABEL
    loaded = yaml.safe_load((folder / f"{LABEL}.meta.yaml").read_text())
    assert loaded["system"]["complexity"]["total_parameters"] == 8055
    assert validate_files(folder / f"{LABEL}.output.split_25.csv", folder / f"{LABEL}.meta.yaml") == []
    again = subprocess.run(cmd, capture_output=True, text=True)  # no overwrite without --force, one line
    assert again.returncode == 2 and "Traceback" not in again.stderr and "exists" in again.stderr

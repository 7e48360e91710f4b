"""DCASE 2024/2025 submission files: names, header, separators, column order, probability columns and the
meta.yaml blocks the published validator requires; the YAML we write is read back by PyYAML unchanged."""
import numpy as np
import pytest
import yaml

from tinyasc.errors import TinyascError

from tinyasc.submission import (HEADER, SCENES, SubmissionError, meta, output_name, output_table, to_yaml,
                                validate_files, validate_meta, validate_output_text, write_package)

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


# The published validators' required fields, rewritten here from their schema (not imported from tinyasc, so
# that the package is checked against the rules and not against itself). 2024: toni-heittola/
# dcase2024_task1_submission_validator main.py; 2025: the 2025 template's fields (inference_code,
# device_information, num_models_at_inference, model_weight_sharing, device_specific and general results).
RESULT = {"overall": ["accuracy", "logloss"], "class_wise": {c: ["accuracy", "logloss"] for c in SCENES},
          "device_wise": {d: ["accuracy", "logloss"] for d in ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")}}
DESCRIPTION_2024 = ["input_sampling_rate", "acoustic_features", "data_augmentation", "machine_learning_method",
                    "external_data_usage", "complexity_management", "pipeline", "framework", "split_adaptations",
                    "system_adaptations"]
SCHEMA = {
    2024: {"submission": ["label", "name", "abbreviation", "authors"],
           "system": {"description": DESCRIPTION_2024, "complexity": ["total_model_size", "total_parameters", "macs"],
                      "external_datasets": [], "source_code": None},
           "results": {"development_dataset": {f"split_{n}": RESULT for n in (5, 10, 25, 50, 100)}}},
    2025: {"submission": ["label", "name", "abbreviation", "authors"],
           "system": {"description": DESCRIPTION_2024[:8] + ["device_information"],
                      "complexity": ["total_model_size", "total_parameters", "macs", "num_models_at_inference",
                                     "model_weight_sharing"],
                      "external_datasets": [], "source_code": None, "inference_code": None},
           "results": {"development_dataset": {"device_specific": RESULT, "general": RESULT}}},
}


def validator_errors(node, schema, where="meta"):
    """The validator's checks: every required field at every level; numeric values where it wants numbers
    (we also require them finite); plus its label, author and abbreviation checks at the top."""
    errors = []
    if schema is None:
        return errors
    if not isinstance(node, dict):
        return [f"{where} missing"]
    fields = schema if isinstance(schema, list) else list(schema)
    errors += [f"{where}.{f} missing" for f in fields if f not in node]
    if isinstance(schema, list) and schema and schema[0] == "accuracy":
        errors += [f"{where}.{f} not numeric" for f in schema if f in node and
                   (isinstance(node[f], bool) or not isinstance(node[f], (int, float)) or node[f] != node[f])]
    if isinstance(schema, dict):
        for f, sub in schema.items():
            if f in node and isinstance(sub, (dict, list)) and sub and f != "external_datasets":
                errors += validator_errors(node[f], sub, f"{where}.{f}")
    if where == "meta" and "submission" in node:
        sub = node["submission"]
        parts = sub["label"].split("_")
        if len(parts) != 4 or parts[2] != "task1" or not 1 <= int(parts[3]) <= 4:
            errors.append("label")
        if sum(bool(a.get("corresponding")) for a in sub["authors"]) != 1:
            errors.append("corresponding")
        errors += [f"author field {f}" for a in sub["authors"] for f in ("lastname", "firstname", "email", "affiliation")
                   if f not in a]
        if len(sub["abbreviation"]) > 10:
            errors.append("abbreviation")
        if not isinstance(node["system"]["complexity"]["total_parameters"], int):
            errors.append("total_parameters")
    return errors


COMPLEXITY = {"total_model_size": 127758, "total_parameters": 63879, "macs": 11880000}
COMPLEXITY_2025 = {**COMPLEXITY, "num_models_at_inference": 7, "model_weight_sharing": False}


def meta_2024(**kw):
    return meta(LABEL, name="BC-ResNet-ASC", abbreviation="BCRes", authors=AUTHORS, year=2024,
                results={n: results() for n in (5, 10, 25, 50, 100)}, complexity=COMPLEXITY, **kw)


def meta_2025(**kw):
    general = results()
    return meta(LABEL, name="BC-ResNet-ASC", abbreviation="BCRes", authors=AUTHORS, year=2025,
                results={"device_specific": results(), "general": {**general, "macro_accuracy": 0.5}},
                complexity=COMPLEXITY_2025, inference_code="https://github.com/kim/Kim_QTI_task1", **kw)


@pytest.mark.parametrize("year,build", [(2024, meta_2024), (2025, meta_2025)])
def test_meta_yaml_of_each_year_passes_the_validators_schema(year, build):
    loaded = yaml.safe_load(to_yaml(build()))
    assert validator_errors(loaded, SCHEMA[year]) == []
    assert validate_meta(loaded) == []
    # and the other year's schema finds what is missing: the two years' files really differ
    assert validator_errors(loaded, SCHEMA[2025 if year == 2024 else 2024])


def test_2024_meta_holds_every_training_subset_and_the_macro_accuracy_headline():
    dev = yaml.safe_load(to_yaml(meta_2024()))["results"]["development_dataset"]
    assert list(dev) == ["split_5", "split_10", "split_25", "split_50", "split_100"]
    assert "overall" not in dev  # the 2024 validator crashes (KeyError 'overall') on a top-level overall block
    assert dev["split_25"]["overall"] == {"accuracy": 58.0, "logloss": 1.1}
    assert dev["split_25"]["class_wise"]["bus"] == {"accuracy": 51.0, "logloss": 1.0}


def test_2025_meta_has_device_specific_and_general_results_and_the_2025_fields():
    loaded = yaml.safe_load(to_yaml(meta_2025()))
    dev = loaded["results"]["development_dataset"]
    assert dev["device_specific"]["overall"]["accuracy"] == 58.0 and dev["general"]["overall"]["accuracy"] == 50.0
    assert loaded["system"]["inference_code"].startswith("https://")
    assert loaded["system"]["complexity"]["num_models_at_inference"] == 7
    for obsolete in ("energy_consumption", "memory_use", "total_parameters_non_zero", "embeddings"):
        assert obsolete not in str(loaded)


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.pop(10), "training subset 10"),
    (lambda r: r[25].update(log_loss=float("nan")), "not a finite number"),
    (lambda r: r[5]["per_device"].pop("s6"), "device s6"),
    (lambda r: r[50]["per_class"]["bus"].update(accuracy=float("inf")), "not a finite number"),
])
def test_missing_or_non_finite_results_are_refused(change, problem):
    res = {n: results() for n in (5, 10, 25, 50, 100)}
    change(res)
    with pytest.raises(SubmissionError, match=problem):
        meta(LABEL, name="x", abbreviation="x", authors=AUTHORS, year=2024, results=res, complexity=COMPLEXITY)


def test_validate_meta_refuses_nan_that_the_validator_lets_through():
    loaded = yaml.safe_load(to_yaml(meta_2024()))
    loaded["results"]["development_dataset"]["split_5"]["overall"]["accuracy"] = float("nan")
    assert any("not a finite number" in p for p in validate_meta(loaded))


def test_2025_needs_the_inference_code_link():
    with pytest.raises(SubmissionError, match="inference_code"):
        meta(LABEL, name="x", abbreviation="x", authors=AUTHORS, year=2025, complexity=COMPLEXITY_2025,
             results={"device_specific": results(), "general": results()})


def test_meta_refuses_what_the_validator_refuses():
    with pytest.raises(SubmissionError, match="corresponding"):
        meta(LABEL, name="x", abbreviation="x", authors=[dict(AUTHORS[1])], year=2024, results={},
             complexity=COMPLEXITY)
    with pytest.raises(SubmissionError, match="1 to 10"):
        meta(LABEL, name="x", abbreviation="a" * 11, authors=AUTHORS, results={}, complexity=COMPLEXITY)


def test_package_is_written_per_subset_and_validates(tmp_path):
    probs = np.full((3, 10), 0.1)
    table = output_table([f"audio/{i}.wav" for i in range(3)], probs, SCENES)
    paths = write_package(tmp_path, LABEL, {n: table for n in (5, 10, 25, 50, 100)}, meta_2024())
    assert [p.name for p in paths][:2] == ["Kim_QTI_task1_1.output.split_5.csv", "Kim_QTI_task1_1.output.split_10.csv"]
    assert validate_files(paths[0], paths[-1]) == []
    with pytest.raises(SubmissionError, match="one output per training subset"):
        write_package(tmp_path / "b", LABEL, {25: table}, meta_2024())
    with pytest.raises(TinyascError, match="exists"):
        write_package(tmp_path, LABEL, {n: table for n in (5, 10, 25, 50, 100)}, meta_2024())
    paths = write_package(tmp_path / "y25", LABEL, {None: table}, meta_2025())
    assert paths[0].name == "Kim_QTI_task1_1.output.csv" and validate_files(paths[0], paths[-1]) == []


def test_validate_files_finds_a_mismatched_label(tmp_path):
    table = output_table(["0.wav"], np.full((1, 10), 0.1), SCENES)
    (tmp_path / "Kim_QTI_task1_1.output.csv").write_text(table)
    m = meta("Lee_QTI_task1_1", name="x", abbreviation="x", authors=AUTHORS, year=2025, complexity=COMPLEXITY_2025,
             results={"device_specific": results(), "general": results()}, inference_code="x")
    (tmp_path / "Lee_QTI_task1_1.meta.yaml").write_text(to_yaml(m))
    problems = validate_files(tmp_path / "Kim_QTI_task1_1.output.csv", tmp_path / "Lee_QTI_task1_1.meta.yaml")
    assert any("label differs" in p for p in problems)


def test_submission_command_builds_valid_2024_and_2025_files(tmp_path):
    import json
    import subprocess
    import sys

    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model

    ckpt = tmp_path / "m.pt"
    classes = list(reversed(SCENES))
    # the fp16 preset, trained: its total_model_size is counted at fp16 (127,758 B), not as stored fp32
    save_checkpoint(ckpt, create_model("bc_resnet_asc_dcase2024_fp16"), "bc_resnet_asc", FeatureConfig(), classes,
                    experiment={"model": "bc_resnet_asc_dcase2024_fp16"})
    table = "\t".join(["filename", "scene_label", *classes]) + "\n" + "".join(
        f"audio/{i}.wav\tpark\t" + "\t".join(["0.1"] * 10) + "\n" for i in range(4))
    (tmp_path / "pred.tsv").write_text(table)
    (tmp_path / "metrics.json").write_text(json.dumps({**results(), "general": results()}))
    common = [sys.executable, "-m", "tinyasc", "submission", "--label", LABEL, "--model", str(ckpt), "--name", "B",
              "--abbreviation", "BCRes1", "--author", "Kim,B,a@b.c,QTI"]
    y24 = common + ["--year", "2024", "--out", str(tmp_path / "s24")]
    for n in (5, 10, 25, 50, 100):
        y24 += ["--predictions", f"{n}={tmp_path / 'pred.tsv'}", "--metrics", f"{n}={tmp_path / 'metrics.json'}"]
    y25 = common + ["--predictions", str(tmp_path / "pred.tsv"), "--metrics", str(tmp_path / "metrics.json"),
                    "--inference-code", "https://github.com/kim/pkg", "--out", str(tmp_path / "s25")]
    for year, cmd, output in ((2024, y24, f"{LABEL}.output.split_25.csv"), (2025, y25, f"{LABEL}.output.csv")):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        folder = tmp_path / f"s{year % 100}" / "task1" / LABEL
        loaded = yaml.safe_load((folder / f"{LABEL}.meta.yaml").read_text())
        assert loaded["system"]["complexity"]["total_model_size"] == 127_758
        assert validator_errors(loaded, SCHEMA[year]) == []
        assert validate_files(folder / output, folder / f"{LABEL}.meta.yaml") == []
    again = subprocess.run(y25, capture_output=True, text=True)  # no overwrite without --force, one line
    assert again.returncode == 2 and "Traceback" not in again.stderr and "exists" in again.stderr
    missing = subprocess.run(y25[:-2] + ["--out", str(tmp_path / "x")], capture_output=True, text=True)
    missing_code = subprocess.run([a for a in y25 if a not in ("--inference-code", "https://github.com/kim/pkg")],
                                  capture_output=True, text=True)
    assert missing.returncode == 0 and missing_code.returncode == 2 and "inference_code" in missing_code.stderr


def validator_package_errors(zip_path):
    """The 2024 validator's package mode (toni-heittola/dcase2024_task1_submission_validator, main.py, `-p`),
    rewritten: every file whose path holds 'task1' (PDFs aside) must sit in a folder whose first part is the
    task, `task1`, and whose last part is the submission label; outputs are LABEL.output.split_N.csv
    (N = 5, 10, 25, 50, 100), the meta file LABEL.meta.yaml, and the meta's label is the folder's."""
    import zipfile

    errors, labels = [], {}
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            if info.is_dir() or "task1" not in info.filename or ".pdf" in info.filename:
                continue
            parts = info.filename.rsplit("/", 1)[0].split("/")
            if parts[0] != "task1":
                errors.append(f"unknown task indicator {parts[0]!r}")
                continue
            entry = labels.setdefault(parts[-1], {"output": [], "meta": None})
            name = info.filename
            if any(f".output.split_{n}.csv" in name for n in (5, 10, 25, 50, 100)):
                entry["output"].append(name)
            elif ".meta.yaml" in name:
                entry["meta"] = yaml.safe_load(z.read(name))
            else:
                errors.append(f"wrongly formatted filename {name}")
        for label, entry in labels.items():
            if entry["meta"] is None or entry["meta"]["submission"]["label"] != label:
                errors.append(f"{label}: meta label differs from the folder")
            errors += [f"{o}: file label differs" for o in entry["output"] if o.rsplit("/", 1)[1].split(".")[0] != label]
            if len(entry["output"]) != 5:
                errors.append(f"{label}: {len(entry['output'])} outputs")
    return errors, labels


def test_the_written_folder_zips_to_the_layout_the_2024_validator_reads(tmp_path):
    import zipfile

    table = output_table([f"audio/{i}.wav" for i in range(3)], np.full((3, 10), 0.1), SCENES)
    paths = write_package(tmp_path / "out", LABEL, {n: table for n in (5, 10, 25, 50, 100)}, meta_2024())
    assert {p.parent for p in paths} == {tmp_path / "out" / "task1" / LABEL}
    # what the command prints: cd OUT && python -m zipfile -c ../submission.zip task1 (+ the report PDF)
    with zipfile.ZipFile(tmp_path / "submission.zip", "w") as z:
        for p in paths:
            z.write(p, p.relative_to(tmp_path / "out").as_posix())
        z.writestr("Kim_QTI_task1.technical_report.pdf", b"%PDF-1.4")
    errors, labels = validator_package_errors(tmp_path / "submission.zip")
    assert errors == [] and list(labels) == [LABEL]
    # the layout the validator refuses: files straight under a folder named after the label, no task1/
    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as z:
        for p in paths:
            z.write(p, f"{LABEL}/{p.name}")
    assert validator_package_errors(tmp_path / "flat.zip")[0]
    (tmp_path / LABEL).mkdir()
    flat = [(tmp_path / LABEL / p.name) for p in (paths[0], paths[-1])]
    for src, dst in zip((paths[0], paths[-1]), flat):
        dst.write_bytes(src.read_bytes())
    assert any("task1/LABEL" in p for p in validate_files(*flat))


@pytest.mark.parametrize("name", ["airport-lisbon-1000-40000-0-a.wav", "135730.wav", "audio/x1.wav"])
def test_2024_outputs_name_the_evaluation_files_by_their_index(tmp_path, name):
    """The 2024 validator reads int(<base name without .wav>) of every row, index 0 … 135729: a development
    file name would crash it, so such a table is refused before anything is written."""
    names = ["audio/0.wav", name, "audio/2.wav"]
    table = output_table(names, np.full((3, 10), 0.1), SCENES)
    with pytest.raises(SubmissionError, match="evaluation-set name"):
        write_package(tmp_path, LABEL, {n: table for n in (5, 10, 25, 50, 100)}, meta_2024())
    assert not (tmp_path / "task1").exists()


def test_the_templates_output_csv_is_accepted_as_2025_predictions(tmp_path):
    """evaluate_submission.py of CPJKU/dcase2025_task1_inference writes predictions/LABEL/output.csv: tab-separated,
    header filename, scene_label and the module's class order, the evaluation set's file names as
    fold1_test.csv gives them, softmax probabilities at full precision. `tinyasc submission` takes that file as
    --predictions and writes it as LABEL.output.csv in DCASE column order."""
    import json
    import subprocess
    import sys

    classes = list(reversed(SCENES))  # a module whose class order is not DCASE's
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=3)
    lines = ["\t".join(["filename", "scene_label", *classes])]
    lines += ["\t".join([f"audio/{i}.wav", classes[int(p.argmax())], *map(repr, p.tolist())]) for i, p in enumerate(probs)]
    (tmp_path / "output.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "metrics.json").write_text(json.dumps({**results(), "general": results()}))
    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model

    save_checkpoint(tmp_path / "m.pt", create_model("bc_resnet_asc_dcase2024_fp16"), "bc_resnet_asc", FeatureConfig(),
                    SCENES, experiment={"model": "bc_resnet_asc_dcase2024_fp16"})
    run = subprocess.run([sys.executable, "-m", "tinyasc", "submission", "--label", LABEL, "--model", str(tmp_path / "m.pt"),
                          "--name", "B", "--abbreviation", "B", "--author", "Kim,B,a@b.c,QTI", "--predictions",
                          str(tmp_path / "output.csv"), "--metrics", str(tmp_path / "metrics.json"), "--inference-code",
                          "https://github.com/kim/pkg", "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    written = (tmp_path / "s" / "task1" / LABEL / f"{LABEL}.output.csv").read_text().splitlines()
    assert written[0].split("\t") == list(HEADER)
    row = written[1].split("\t")
    assert row[0] == "audio/0.wav" and row[1] == classes[int(probs[0].argmax())]
    np.testing.assert_allclose([float(v) for v in row[2:]], [probs[0][classes.index(c)] for c in SCENES], atol=1e-6)

"""DCASE 2024/2025 Task 1 submission files: the system output `<label>.output.csv` (one per system, or
`<label>.output.split_<N>.csv` per training subset in 2024) and `<label>.meta.yaml`, filled from
tinyasc's results, in the folder layout of the submission zip (`task1/<label>/…`), plus a checker of the
published validator's rules (header, tab separator, column order, probability columns, scene labels,
evaluation-set file names, file names and the meta blocks), written from its rules.

The YAML is emitted by a small writer of our own (nested mappings, lists and scalars; strings quoted),
so no YAML package is needed at run time."""
import csv
import io
import json
import math
import re
from pathlib import Path

from tinyasc.dcase import DEVICES, SCENES
from tinyasc.errors import TinyascError
from tinyasc.paths import atomic_write_text

# DCASE column order of the output file (the validator checks the header in this order)
HEADER = ("filename", "scene_label", *SCENES)
SUBSETS = (5, 10, 25, 50, 100)  # 2024: one output per training subset; 2025: split 25 only
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z-]*_[A-Za-z0-9-]+_task1_[1-4]$")  # Lastname_Institute_task1_N
YEARS = (2024, 2025)
# the submission zip's layout, as the 2024 validator reads it (toni-heittola/dcase2024_task1_submission_validator,
# main.py, package mode): the first folder of every path is the task, `task1`; the last one the submission label
TASK_FOLDER = "task1"
# the 2024 evaluation set (same validator: filename index 0 … 135729, 135,730 unique files); its rows are
# named <index>.wav, and the validator reads int(<index>) of every row's base name
EVAL_FILES_2024 = 135_730
# system.description fields each year's validator requires (2024: toni-heittola/dcase2024_task1_submission_validator;
# 2025: the task's meta template — the 2024 fields plus how device information is used)
DESCRIPTION_FIELDS_2024 = ("input_sampling_rate", "acoustic_features", "data_augmentation", "machine_learning_method",
                           "external_data_usage", "complexity_management", "pipeline", "framework",
                           "split_adaptations", "system_adaptations")
DESCRIPTION_FIELDS = {2024: DESCRIPTION_FIELDS_2024,
                      2025: tuple(f for f in DESCRIPTION_FIELDS_2024 if f not in ("split_adaptations", "system_adaptations"))
                      + ("device_information",)}
COMPLEXITY_FIELDS = {2024: ("total_model_size", "total_parameters", "macs"),
                     2025: ("total_model_size", "total_parameters", "macs", "num_models_at_inference",
                            "model_weight_sharing")}
SYSTEM_FIELDS = {2024: ("description", "complexity", "external_datasets", "source_code"),
                 2025: ("description", "complexity", "external_datasets", "source_code", "inference_code")}
# results.development_dataset blocks: 2024 one per training subset; 2025 device-specific and general results
# (both from one `tinyasc evaluate devices.pt` call, trained on split 25)
RESULT_BLOCKS = {2024: tuple(f"split_{n}" for n in SUBSETS), 2025: ("device_specific", "general")}


class SubmissionError(TinyascError):
    """Submission files that break the DCASE Task 1 rules."""


def check_label(label):
    if not LABEL_PATTERN.match(label or ""):
        raise SubmissionError(f"submission label {label!r}: expected LASTNAME_INSTITUTE_task1_N with N in 1…4, "
                              "e.g. Kim_QTI_task1_1")
    return label


def output_name(label, subset=None):
    """`<label>.output.csv`, or `<label>.output.split_<N>.csv` for a 2024 training subset."""
    if subset is not None and subset not in SUBSETS:
        raise SubmissionError(f"subset {subset!r}: expected one of {', '.join(map(str, SUBSETS))}")
    return f"{check_label(label)}.output.csv" if subset is None else f"{label}.output.split_{subset}.csv"


def output_table(filenames, probs, classes):
    """The output file's text: tab-separated, header HEADER, one row per file with the predicted label and
    the ten probabilities in DCASE order (columns are reordered from `classes` by name)."""
    if sorted(classes) != sorted(SCENES):
        raise SubmissionError(f"classes {list(classes)} are not the ten DCASE scenes")
    order = [list(classes).index(c) for c in SCENES]
    lines = ["\t".join(HEADER)]
    for name, p in zip(filenames, probs):
        name = str(name)
        if any(ch in name for ch in "\t\n\r"):
            raise SubmissionError(f"file name {name!r} holds a tab or line break; the output file cannot carry it")
        row = [float(p[i]) for i in order]
        if not all(math.isfinite(v) for v in row):
            raise SubmissionError(f"{name}: non-finite probability")
        lines.append("\t".join([name, SCENES[max(range(10), key=row.__getitem__)], *(f"{v:.6f}" for v in row)]))
    return "\n".join(lines) + "\n"


def result_block(results, where="results"):
    """{overall, class_wise, device_wise} of one tinyasc metrics dict (evaluate's metrics.json): accuracy in %
    (overall: the class-wise mean, DCASE's ranking metric since 2022) and log loss. Every class and device
    must be present with finite numbers: a missing or NaN result is refused, never written."""
    if not isinstance(results, dict):
        raise SubmissionError(f"{where}: no results (give an evaluate metrics.json)")

    def number(value, what):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SubmissionError(f"{where}: {what} is {value!r}, not a finite number")
        return float(value)

    def cell(d, what):
        if not isinstance(d, dict):
            raise SubmissionError(f"{where}: no result for {what} (every class and device A…S6 must be evaluated)")
        return {"accuracy": round(100 * number(d.get("accuracy"), f"{what} accuracy"), 2),
                "logloss": round(number(d.get("log_loss"), f"{what} log loss"), 4)}

    per_class, per_device = results.get("per_class") or {}, results.get("per_device") or {}
    class_wise = {c: cell(per_class.get(c), f"class {c}") for c in SCENES}
    macro = results.get("macro_accuracy")
    if macro is None:
        macro = sum(v["accuracy"] for v in class_wise.values()) / 100 / len(class_wise)
    return {"overall": {"accuracy": round(100 * number(macro, "macro accuracy"), 2),
                        "logloss": round(number(results.get("log_loss"), "log loss"), 4)},
            "class_wise": class_wise,
            "device_wise": {d: cell(per_device.get(d), f"device {d}") for d in DEVICES}}


def meta(label, *, name, abbreviation, authors, results, complexity, year=2024, description=None,
         external_datasets=(), source_code="", inference_code=""):
    """The meta.yaml content of `year` as a dict. `results`: 2024 {subset (5 … 100): metrics dict}; 2025
    {"device_specific": metrics, "general": metrics} (tinyasc evaluate devices.pt writes both in one
    metrics.json). `complexity`: total_model_size (bytes by the 2022+ rule: every parameter at its stored
    width), total_parameters, macs (per 1 s); 2025 also num_models_at_inference and model_weight_sharing.
    Refuses what the validator refuses, and missing or non-finite results."""
    if year not in YEARS:
        raise SubmissionError(f"year {year!r}: expected one of {', '.join(map(str, YEARS))}")
    check_label(label)
    if not abbreviation or len(abbreviation) > 10:
        raise SubmissionError(f"abbreviation {abbreviation!r}: expected 1 to 10 characters")
    if sum(bool(a.get("corresponding")) for a in authors) != 1:
        raise SubmissionError("exactly one author must be marked corresponding: true")
    for author in authors:
        missing = [f for f in ("lastname", "firstname", "email", "affiliation") if not author.get(f)]
        if missing:
            raise SubmissionError(f"author {author}: missing {', '.join(missing)}")
    results = results or {}
    blocks = {}
    for block in RESULT_BLOCKS[year]:
        key = int(block.split("_")[1]) if year == 2024 else block
        if key not in results:
            what = f"training subset {key} (--metrics {key}=metrics.json)" if year == 2024 else \
                f"the {block} results (evaluate devices.pt: metrics.json and its 'general' block)"
            raise SubmissionError(f"{year} meta.yaml needs results for {what}")
        blocks[block] = result_block(results[key], where=f"results {block}")
    system_description = {field: "" for field in DESCRIPTION_FIELDS[year]}
    system_description.update({"input_sampling_rate": 16, "acoustic_features": "log-mel energies",
                               "machine_learning_method": "BC-ResNet-ASC (CNN)", "external_data_usage": "",
                               "framework": "pytorch (tinyasc)", "pipeline": "log-mel > BC-ResNet-ASC > softmax"})
    if year == 2025:
        system_description["device_information"] = "device-specific fine-tuning; unknown devices use the general model"
    system_description.update(description or {})
    complexity = complexity or {}
    missing = [f for f in COMPLEXITY_FIELDS[year] if complexity.get(f) is None]
    if missing:
        raise SubmissionError(f"complexity {', '.join(missing)} missing (give --model CHECKPOINT)")
    for field in ("total_model_size", "total_parameters", "macs") + (("num_models_at_inference",) if year == 2025 else ()):
        if isinstance(complexity[field], bool) or not isinstance(complexity[field], int) or complexity[field] < 0:
            raise SubmissionError(f"complexity {field} = {complexity[field]!r}: expected a whole number")
    if year == 2025 and not inference_code:
        raise SubmissionError("2025 meta.yaml needs system.inference_code: the link to your inference package "
                              "(tinyasc package writes it; publish it, e.g. on GitHub)")
    system = {"description": system_description,
              "complexity": {f: complexity[f] for f in COMPLEXITY_FIELDS[year]},
              "external_datasets": list(external_datasets), "source_code": source_code}
    if year == 2025:
        system["inference_code"] = inference_code
    return {
        "submission": {"label": label, "name": name, "abbreviation": abbreviation, "authors": list(authors)},
        "system": system,
        "results": {"development_dataset": blocks},
    }


def to_yaml(obj, indent=0):
    """Block-style YAML of nested dicts/lists/scalars (strings JSON-quoted, which YAML reads as is)."""
    pad = "  " * indent

    def scalar(v):
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return ".nan" if isinstance(v, float) and math.isnan(v) else repr(v)
        return json.dumps(str(v), ensure_ascii=False)

    lines = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {'[]' if value == [] else '{}' if value == {} else scalar(value)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                first, *rest = to_yaml(item, indent + 1).splitlines()
                lines.append(f"{pad}- {first.lstrip()}")
                lines += rest
            else:
                lines.append(f"{pad}- {scalar(item)}")
    return "\n".join(lines)


def write_package(out_dir, label, outputs, meta_dict, *, force=False):
    """Write `outputs` ({subset or None: output table text}) and the meta file into OUT/task1/<label>/ (OUT is
    the root of the submission zip, where the technical report goes too), after checking the meta dict
    (validate_meta) and every output table, and return the written paths. 2024 outputs must name the
    evaluation set's files <index>.wav, as the 2024 validator reads them."""
    from tinyasc.paths import check_output

    folder = Path(out_dir) / TASK_FOLDER / check_label(label)
    problems = validate_meta(meta_dict)
    year = meta_year(meta_dict)
    if year == 2024 and set(outputs) != set(SUBSETS):
        problems.append(f"2024 needs one output per training subset ({', '.join(map(str, SUBSETS))}), "
                        f"got {', '.join(str(k) for k in outputs)}")
    if year == 2025 and set(outputs) != {None}:
        problems.append("2025 has one output file, LABEL.output.csv (give --predictions FILE without a subset)")
    problems += [f"{output_name(label, subset)}: {p}" for subset, text in outputs.items()
                 for p in validate_output_text(text, numeric_names=year == 2024)]
    if problems:
        raise SubmissionError(f"{folder}: the files would break the rules: {problems[0]}")
    paths = [folder / output_name(label, subset) for subset in outputs] + [folder / f"{label}.meta.yaml"]
    for path in paths:
        check_output(path, force=force, kind="file", what="submission file")
    for (subset, text), path in zip(outputs.items(), paths):
        atomic_write_text(path, text)
    atomic_write_text(paths[-1], to_yaml(meta_dict) + "\n")
    return paths


def validate_output_text(text, numeric_names=False):
    """Problems (list of strings) of an output table by the published validator's rules. The evaluation
    set's files are named <index>.wav (2024: index 0 … 135729); with numeric_names=False other names are
    allowed (development)."""
    problems = []
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows or tuple(rows[0]) != HEADER:
        return [f"header must be {' '.join(HEADER)} (tab-separated), found {rows[0] if rows else 'nothing'}"]
    seen = set()
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            problems.append(f"line {number}: {len(row)} fields, expected {len(HEADER)}")
            continue
        base = row[0].replace("\\", "/").rsplit("/", 1)[-1]
        if base in seen:
            problems.append(f"line {number}: duplicate file {row[0]}")
        seen.add(base)
        if not base.endswith(".wav"):
            problems.append(f"line {number}: {row[0]} does not end in .wav")
        if numeric_names and not (base[:-4].isdigit() and int(base[:-4]) < EVAL_FILES_2024):
            problems.append(f"line {number}: {row[0]} is not an evaluation-set name <index>.wav "
                            f"(index 0 … {EVAL_FILES_2024 - 1})")
        if row[1] not in SCENES:
            problems.append(f"line {number}: unknown scene label {row[1]!r}")
        for column, value in zip(HEADER[2:], row[2:]):
            try:
                if not math.isfinite(float(value)):
                    raise ValueError
            except ValueError:
                problems.append(f"line {number}: {column} = {value!r} is not a finite number")
    return problems


def meta_year(m):
    """2025 when the results hold device-specific and general blocks, else 2024."""
    dev = ((m or {}).get("results") or {}).get("development_dataset") or {}
    return 2025 if isinstance(dev, dict) and "device_specific" in dev else 2024


def _is_number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def validate_meta(m, year=None):
    """Problems of a meta dict by the validator's rules for `year` (default: meta_year): the top blocks,
    every required field of submission / authors / system / description / complexity / external datasets,
    one corresponding author, label LASTNAME_INSTITUTE_task1_N, abbreviation ≤ 10 characters, whole-number
    total_parameters, and each results block's overall / class_wise (10 scenes) / device_wise (A…S6) with
    finite accuracy and logloss (the validator accepts NaN; we do not)."""
    year = year or meta_year(m)
    problems = []

    def need(block, fields, where):
        if not isinstance(block, dict):
            problems.append(f"{where}: missing")
            return False
        problems.extend(f"{where}.{f}: missing" for f in fields if f not in block)
        return True

    if not need(m, ("submission", "system", "results"), "meta"):
        return problems
    sub = m.get("submission") or {}
    if need(sub, ("label", "name", "abbreviation", "authors"), "submission"):
        authors = sub.get("authors") or []
        for i, author in enumerate(authors):
            need(author, ("lastname", "firstname", "email", "affiliation"), f"submission.authors[{i}]")
        if sum(bool(isinstance(a, dict) and a.get("corresponding")) for a in authors) != 1:
            problems.append("submission.authors: exactly one author must be marked corresponding")
        if not LABEL_PATTERN.match(str(sub.get("label", ""))):
            problems.append(f"submission.label {sub.get('label')!r}: expected LASTNAME_INSTITUTE_task1_N (N = 1…4)")
        if len(str(sub.get("abbreviation", ""))) > 10:
            problems.append("submission.abbreviation: longer than 10 characters")
    system = m.get("system") or {}
    if need(system, SYSTEM_FIELDS[year], "system"):
        need(system.get("description"), DESCRIPTION_FIELDS[year], "system.description")
        if need(system.get("complexity"), COMPLEXITY_FIELDS[year], "system.complexity"):
            total = system["complexity"].get("total_parameters")
            if isinstance(total, bool) or not isinstance(total, int):
                problems.append(f"system.complexity.total_parameters = {total!r}: not a whole number")
        for i, item in enumerate(system.get("external_datasets") or []):
            need(item, ("name", "url", "total_audio_length"), f"system.external_datasets[{i}]")
        if year == 2025 and not system.get("inference_code"):
            problems.append("system.inference_code: empty (the link to the inference package)")
    dev = (m.get("results") or {}).get("development_dataset")
    if need(m.get("results"), ("development_dataset",), "results") and need(dev, RESULT_BLOCKS[year],
                                                                          "results.development_dataset"):
        for block in RESULT_BLOCKS[year]:
            where = f"results.development_dataset.{block}"
            if not need(dev.get(block), ("overall", "class_wise", "device_wise"), where):
                continue
            cells = [("overall", dev[block].get("overall"))]
            for group, names in (("class_wise", SCENES), ("device_wise", DEVICES)):
                if need(dev[block].get(group), names, f"{where}.{group}"):
                    cells += [(f"{group}.{n}", dev[block][group].get(n)) for n in names]
            for name, cell in cells:
                if need(cell, ("accuracy", "logloss"), f"{where}.{name}"):
                    problems.extend(f"{where}.{name}.{k} = {cell[k]!r}: not a finite number"
                                    for k in ("accuracy", "logloss") if k in cell and not _is_number(cell[k]))
    return problems


def output_rows(text):
    """The number of data rows of an output table (the 2024 validator wants EVAL_FILES_2024)."""
    return max(0, len([line for line in text.splitlines() if line.strip()]) - 1)


def validate_files(output_path, meta_path, meta_dict=None):
    """Problems of an output file + meta file pair: file names (label.output[.split_N].csv, label.meta.yaml),
    label format, the folder they sit in (task1/LABEL/, the zip layout), the output table, and the meta
    file by validate_meta (read with PyYAML when it is installed, else `meta_dict` must be given)."""
    output_path, meta_path = Path(output_path), Path(meta_path)
    problems = []
    for path in (output_path, meta_path):
        parts = path.resolve().parts
        if len(parts) < 3 or parts[-3] != TASK_FOLDER:
            problems.append(f"{path.name}: expected in {TASK_FOLDER}/LABEL/ (the submission zip's layout), "
                            f"found in {path.parent}")
    m = re.match(r"^(.+)\.output(\.split_(5|10|25|50|100))?\.csv$", output_path.name)
    if not m:
        problems.append(f"{output_path.name}: expected LABEL.output.csv or LABEL.output.split_N.csv")
    if not meta_path.name.endswith(".meta.yaml") or meta_path.name.count(".") != 2:
        problems.append(f"{meta_path.name}: expected LABEL.meta.yaml")
    label = m.group(1) if m else ""
    if not LABEL_PATTERN.match(label):
        problems.append(f"{output_path.name}: label {label!r} is not LASTNAME_INSTITUTE_task1_N (N = 1…4)")
    if meta_path.name.split(".")[0] != label:
        problems.append(f"{meta_path.name}: label differs from the output file's {label!r}")
    for path in (output_path, meta_path):
        if path.resolve().parent.name != label:
            problems.append(f"{path.name}: its folder {path.resolve().parent.name!r} is not the label {label!r}")
    problems += [f"{output_path.name}: {p}" for p in validate_output_text(output_path.read_text(encoding="utf-8"))]
    if meta_dict is None:
        try:
            import yaml
        except ImportError:
            raise SubmissionError("validate_files: install PyYAML to read the meta file, or pass meta_dict") from None
        try:
            meta_dict = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            return problems + [f"{meta_path.name}: not valid YAML ({str(e).splitlines()[0]})"]
    if ((meta_dict or {}).get("submission") or {}).get("label") != label:
        problems.append(f"{meta_path.name}: submission.label is not {label!r}")
    if meta_year(meta_dict) == 2024:
        if m and not m.group(2):
            problems.append(f"{output_path.name}: 2024 outputs are LABEL.output.split_N.csv, one per training subset")
        problems += [f"{output_path.name}: {p}" for p in
                     validate_output_text(output_path.read_text(encoding="utf-8"), numeric_names=True)
                     if "evaluation-set name" in p]
    problems += [f"{meta_path.name}: {p}" for p in validate_meta(meta_dict)]
    return problems

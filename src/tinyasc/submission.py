"""DCASE 2024/2025 Task 1 submission files: the system output `<label>.output.csv` (one per system, or
`<label>.output.split_<N>.csv` per training subset in 2024) and `<label>.meta.yaml`, filled from
tinyasc's results, plus a checker of the published validator's rules (header, tab separator, column
order, probability columns, scene labels, file names and the meta blocks), written from its rules.

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
DESCRIPTION_FIELDS = ("input_sampling_rate", "acoustic_features", "embeddings", "data_augmentation",
                      "machine_learning_method", "ensemble_method_subsystem_count", "decision_making",
                      "external_data_usage", "complexity_management", "pipeline", "framework")
COMPLEXITY_FIELDS = ("total_model_size", "total_parameters", "total_parameters_non_zero", "memory_use", "macs")


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


def meta(label, *, name, abbreviation, authors, results=None, complexity=None, description=None,
         external_datasets=(), source_code=""):
    """The meta.yaml content as a dict. `results`: tinyasc metrics (evaluate's metrics.json: accuracy,
    macro_accuracy if present, log_loss, per_class, per_device). `complexity`: total_model_size (bytes),
    total_parameters, total_parameters_non_zero, memory_use (bytes), macs (per 1 s clip)."""
    check_label(label)
    if len(abbreviation) > 10:
        raise SubmissionError(f"abbreviation {abbreviation!r} is longer than 10 characters")
    if sum(bool(a.get("corresponding")) for a in authors) != 1:
        raise SubmissionError("exactly one author must be marked corresponding: true")
    results = results or {}

    def cell(d):
        d = d or {}
        return {"accuracy": round(100 * d.get("accuracy", float("nan")), 2), "logloss": round(d.get("log_loss", float("nan")), 4)}

    per_class, per_device = results.get("per_class", {}), results.get("per_device", {})
    # the ranking metric since 2022 is the class-wise (macro) average accuracy
    macro = results.get("macro_accuracy")
    if macro is None and per_class:
        macro = sum(per_class[c]["accuracy"] for c in per_class) / len(per_class)
    overall = {"accuracy": round(100 * macro, 2) if macro is not None else float("nan"),
               "logloss": round(results.get("log_loss", float("nan")), 4)}
    system_description = {field: "" for field in DESCRIPTION_FIELDS}
    system_description.update({"input_sampling_rate": 16, "acoustic_features": "log-mel energies",
                               "embeddings": None, "machine_learning_method": "BC-ResNet-ASC (CNN)",
                               "ensemble_method_subsystem_count": None, "decision_making": None,
                               "external_data_usage": None, "framework": "pytorch (tinyasc)",
                               "pipeline": "log-mel > BC-ResNet-ASC > softmax"})
    system_description.update(description or {})
    complexity = {field: (complexity or {}).get(field) for field in COMPLEXITY_FIELDS}
    return {
        "submission": {"label": label, "name": name, "abbreviation": abbreviation, "authors": list(authors)},
        "system": {"description": system_description, "complexity": complexity,
                   "energy_consumption": {"training": None, "inference": None, "baseline_inference": None},
                   "external_datasets": list(external_datasets), "source_code": source_code},
        "results": {"development_dataset": {
            "overall": overall,
            "class_wise": {c: cell(per_class.get(c)) for c in SCENES},
            "device_wise": {d: cell(per_device.get(d)) for d in DEVICES}}},
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
    """Write `outputs` ({subset or None: output table text}) and the meta file into OUT/<label>/, check
    them with `validate_files` and return the written paths."""
    from tinyasc.paths import check_output

    folder = Path(out_dir) / check_label(label)
    paths = [folder / output_name(label, subset) for subset in outputs] + [folder / f"{label}.meta.yaml"]
    for path in paths:
        check_output(path, force=force, kind="file", what="submission file")
    for (subset, text), path in zip(outputs.items(), paths):
        atomic_write_text(path, text)
    atomic_write_text(paths[-1], to_yaml(meta_dict) + "\n")
    problems = [p for path in paths[:-1] for p in validate_files(path, paths[-1])]
    if problems:
        raise SubmissionError(f"{folder}: written files break the rules: {problems[0]}")
    return paths


def validate_output_text(text, numeric_names=False):
    """Problems (list of strings) of an output table by the published validator's rules. The evaluation
    set's files are named <index>.wav; with numeric_names=False other names are allowed (development)."""
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
        if numeric_names and not base[:-4].isdigit():
            problems.append(f"line {number}: {row[0]} is not an evaluation-set name <index>.wav")
        if row[1] not in SCENES:
            problems.append(f"line {number}: unknown scene label {row[1]!r}")
        for column, value in zip(HEADER[2:], row[2:]):
            try:
                if not math.isfinite(float(value)):
                    raise ValueError
            except ValueError:
                problems.append(f"line {number}: {column} = {value!r} is not a finite number")
    return problems


def validate_files(output_path, meta_path):
    """Problems of an output file + meta file pair: file names (label.output[.split_N].csv, label.meta.yaml),
    label format, the output table, and the meta blocks the validator requires (parsed by our reader of
    the YAML we write; other YAML is checked for the labels and names only)."""
    output_path, meta_path = Path(output_path), Path(meta_path)
    problems = []
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
    problems += [f"{output_path.name}: {p}" for p in validate_output_text(output_path.read_text(encoding="utf-8"))]
    text = meta_path.read_text(encoding="utf-8")
    if f'label: {json.dumps(label)}' not in text:
        problems.append(f"{meta_path.name}: submission.label is not {label!r}")
    for block in ("submission:", "system:", "results:", "description:", "complexity:", "development_dataset:",
                  "overall:", "class_wise:", "device_wise:", *(f"{f}:" for f in DESCRIPTION_FIELDS + COMPLEXITY_FIELDS)):
        if not re.search(rf"^\s*{re.escape(block)}", text, re.M):
            problems.append(f"{meta_path.name}: missing {block.rstrip(':')}")
    return problems

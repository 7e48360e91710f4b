"""Bad input to the commands that train, evaluate, report and draw (issues 14 and 16): every case is
(arguments, text the one-line error must contain); each must exit with 1 or 2, print one
`tinyasc: error:` line naming the offending option or path, raise nothing, and leave no output behind
(an output given in the arguments is absent afterwards, or unchanged if it existed)."""
import json

import pytest

from tinyasc.cli import main
from tinyasc.experiment import load_experiment
from tinyasc.runs import run_training


@pytest.fixture(scope="module")
def setup(small_benchmark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    exp = load_experiment(None, ["train.epochs=1", "train.batch_size=16", "train.warmup_epochs=0",
                                 "runtime.extract_workers=0"], base={"model": {"preset": "bc_resnet_asc_1"}})
    run_training(exp, small_benchmark, root / "run", progress=False)
    (root / "a_file").write_text("not a folder\n")
    (root / "exists.md").write_text("keep me\n")
    (root / "exists.json").write_text("{}\n")
    (root / "exists.png").write_bytes(b"keep me")
    (root / "not_a_checkpoint.pt").write_text("hello\n")
    (root / "bad.toml").write_text("[model\npreset = \n")
    (root / "evaldir").mkdir()
    (root / "evaldir" / "metrics.json").write_text("{\"keep\": true}\n")
    broken = root / "runs_bad_config" / "r"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    (broken / "results.json").write_text("{}")
    # issue 25: TOML of the wrong shape, and datasets whose splits share clips or recording locations
    (root / "model_string.toml").write_text('model = "x"\n')
    (root / "train_array.toml").write_text("[[train]]\nepochs = 1\n")
    (root / "train_number.toml").write_text("train = 3\n")
    overlapping_datasets(small_benchmark, root)
    scenes = "airport bus metro metro_station park public_square shopping_mall street_pedestrian street_traffic tram"
    table = "filename\tscene_label\t" + "\t".join(scenes.split()) + "\n"
    (root / "pred.tsv").write_text(table + "audio/x-a.wav\tairport\t" + "\t".join(["0.1"] * 10) + "\n")
    (root / "nan_metrics.json").write_text('{"accuracy": NaN, "log_loss": 1.0}')
    empty = root / "runs_empty_results" / "r"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text(json.dumps({"name": "x", "model": "bc_resnet_asc_1"}))
    (empty / "results.json").write_text("")
    return {"data": str(small_benchmark), "root": root, "ckpt": str(root / "run" / "last.pt")}


def overlapping_datasets(source, root):
    """ROOT/overlap_clips: the train list also lists the evaluate clips; ROOT/overlap_location: one
    evaluate clip is recorded at a training location (meta.csv). Audio is shared by symbolic links."""
    for name in ("overlap_clips", "overlap_location"):
        (root / name / "evaluation_setup").mkdir(parents=True)
        (root / name / "audio").symlink_to(source / "audio")
        for csv in (source / "evaluation_setup").iterdir():
            (root / name / "evaluation_setup" / csv.name).write_text(csv.read_text())
        (root / name / "meta.csv").write_text((source / "meta.csv").read_text())
    train_csv = root / "overlap_clips" / "evaluation_setup" / "fold1_train.csv"
    evaluate_rows = (source / "evaluation_setup" / "fold1_evaluate.csv").read_text().splitlines()[1:]
    train_csv.write_text(train_csv.read_text().rstrip("\n") + "\n" + "\n".join(evaluate_rows) + "\n")
    meta = [line.split("\t") for line in (source / "meta.csv").read_text().splitlines()]
    train_names = {line.split("\t")[0] for line in train_csv.read_text().splitlines()[1:]} - {
        r.split("\t")[0] for r in evaluate_rows}
    evaluate_name = evaluate_rows[0].split("\t")[0]
    scene = next(r[1] for r in meta if r[0] == evaluate_name)
    location = next(r[2] for r in meta if r[0] in train_names and r[1] == scene)
    meta = [[r[0], r[1], location, r[3]] if r[0] == evaluate_name else r for r in meta]
    (root / "overlap_location" / "meta.csv").write_text("\n".join("\t".join(r) for r in meta) + "\n")


T = ["train", "--data", "{data}", "--out", "{root}/new_run", "--quiet"]
SUB = ["submission", "--label", "Kim_QTI_task1_1", "--name", "x", "--abbreviation", "x", "--author", "A,B,c@d,E",
       "--out", "{root}/sub"]
CASES = [
    # --set values: words, fractions, ranges, unknown keys (issue 14.3)
    (T + ["--set", "features.n_mels=abc"], "n_mels must be a number"),
    (T + ["--set", "features.sample_rate=abc"], "sample_rate must be a number"),
    (T + ["--set", "train.epochs=1e9"], "epochs must be a whole number"),
    (T + ["--set", "train.epochs=0"], "epochs must be >= 1"),
    (T + ["--set", "features.n_mels=128"], "features.n_mels = 128 but the model expects"),
    (T + ["--set", "features.n_mels=100", "--set", "model.n_mels=100"], "use a multiple of 32"),
    (T + ["--set", "train.lr=inf"], "train.lr must be a finite number > 0"),
    (T + ["--set", "train.lr=-1"], "train.lr must be > 0"),
    (T + ["--set", "train.momentum=1.5"], "momentum"),
    (T + ["--set", "train.spec_augment=maybe"], "spec_augment must be"),
    (T + ["--set", "train.freq_mixstyle_p=2"], "freq_mixstyle_p"),
    (T + ["--set", "train.kd_weight=-0.1"], "kd_weight"),
    (T + ["--set", "runtime.device=tpu"], "device must be"),
    (T + ["--set", "runtime.cache_dtype=int4"], "cache_dtype"),
    (T + ["--set", "runtime.threads=-2"], "threads"),
    (T + ["--set", "train.nope=1"], "unknown TrainConfig field"),
    (T + ["--set", "data.x=1"], "bad --set key"),
    (T + ["--set", "oops"], "expected SECTION.FIELD=VALUE"),
    (T + ["--set", "model.preset=nope"], "unknown model"),
    (T + ["--set", "model.resnorm=sometimes"], "resnorm"),
    (T + ["--set", "train.batch_size=100000"], "larger than the"),
    (T + ["--set", "train.teacher_logits='{root}/missing.npz'"], "missing.npz"),
    (T + ["--set", "train.dir_folder='{root}/no_irs'"], "no_irs"),
    # issue 25, tracebacks: values that validated but broke the network, TOML of the wrong shape, huge seeds
    (T + ["--set", "features.hop_length=100000"], "give 1 frame(s), but bc_resnet_asc_1 needs at least 7"),
    (T + ["--set", "features.sample_rate=1000"], "give 3 frame(s)"),
    (T + ["--set", "model.sub_bands=0"], "model.sub_bands must be >= 1"),
    (T + ["--set", "model.stage_blocks=[2, 0, 2, 3]"], "model.stage_blocks[1] must be >= 1"),
    (T + ["--set", "model.stage_widths=[1, -1, 2, 2]"], "model.stage_widths[1] must be > 0"),
    (T + ["--set", "features.kind='pcen'", "--set", "features.pcen_time_constant=0"],
     "features.pcen_time_constant must be > 0"),
    (T + ["--set", "train.seed=99999999999999999999"], "train.seed must be in [0, 4294967295]"),
    (T + ["--seed", "99999999999999999999"], "train.seed must be in [0, 4294967295]"),
    (T + ["--set", "runtime.extract_workers=99999999999999999999"], "must fit in 64 bits"),
    (T + ["--config", "{root}/model_string.toml"], "model must be a [model] table"),
    (T + ["--config", "{root}/train_array.toml"], "array of tables ([[train]])"),
    (T + ["--config", "{root}/train_number.toml"], "train must be a [train] table"),
    (T + ["--set", "train.dir_folder=2024"], "2024: no such impulse-response folder"),  # a path, not a number
    # issue 25, silently wrong before: accepted values that trained at chance, at lr 0, to NaN or unloadable
    (T + ["--set", "features.f_min=9000"], "features.f_min (9000) must be below"),
    (T + ["--set", "features.f_max=9000"], "Nyquist"),
    (T + ["--set", "train.warmup_epochs=inf"], "train.warmup_epochs must be a finite number >= 0"),
    (T + ["--set", "train.weight_decay=inf"], "train.weight_decay must be a finite number >= 0"),
    (T + ["--set", "train.lr=nan"], "train.lr must be a finite number > 0"),
    (T + ["--set", "model.num_classes=5"], "model.num_classes = 5 but --data"),
    (T + ["--set", "train.spec_fill=3"], "train.spec_fill must be a string"),
    (T + ["--set", "model.resnorm=1"], "model.resnorm must be a string"),
    (["train", "--data", "{root}/overlap_clips", "--out", "{root}/new_run", "--quiet"],
     "clips of the train split are also in the evaluate split"),
    (["train", "--data", "{root}/overlap_location", "--out", "{root}/new_run", "--quiet"],
     "recording locations (meta.csv identifiers) of the train split"),
    (SUB + ["--predictions", "{root}/pred.tsv", "--metrics", "{root}/nan_metrics.json"], "metrics.accuracy is not a finite"),
    (SUB + ["--predictions", "25={root}/pred.tsv", "--predictions", "25={root}/pred.tsv"], "subset 25 is given twice"),
    # configs, data, subsets, resume
    (["train", "--config", "{root}/missing.toml", "--data", "{data}", "--out", "{root}/new_run"], "missing.toml"),
    (["train", "--config", "{root}/bad.toml", "--data", "{data}", "--out", "{root}/new_run"], "not valid TOML"),
    (["train", "--data", "{root}/no_data", "--out", "{root}/new_run"], "no_data"),
    (T + ["--train-split", "split7"], "split7"),
    (T + ["--resume"], "nothing to resume"),
    (["train", "--data", "{data}", "--out", "{root}/run", "--quiet"], "already holds files"),
    (["train", "--data", "{data}", "--out", "{root}/run", "--resume", "--quiet"], "different config"),
    (["train", "--data", "{data}", "--out", "{root}/run", "--resume", "--quiet", "--set", "train.epochs=1",
      "--set", "train.batch_size=16", "--set", "train.warmup_epochs=0"], "the run is finished"),
    # output paths (issue 14.1)
    (["train", "--data", "{data}", "--out", "{root}/a_file/run", "--quiet"], "a_file"),
    (["train", "--data", "{data}", "--out", "{root}/a_file", "--quiet"], "a_file"),
    (["sweep", "--data", "{data}", "--out", "{root}/a_file/sweep", "--seeds", "0", "--quiet"], "a_file"),
    (["evaluate", "{ckpt}", "--data", "{data}", "--out", "{root}/a_file", "--quiet"], "a_file"),
    (["evaluate", "{ckpt}", "--data", "{data}", "--out", "{root}/evaldir", "--quiet"], "exists"),
    (["report", "{root}/run", "--out", "{root}/exists.md"], "exists"),
    (["report", "{root}/run", "--out", "{root}/a_file/r.md"], "a_file"),
    (["figure", "tsne", "{ckpt}", "--data", "{data}", "--out", "{root}/exists.png", "--quiet"], "exists"),
    (["figure", "tsne", "{ckpt}", "--data", "{data}", "--out", "{root}/evaldir", "--quiet"], "evaldir"),
    # files that are not what they claim, and data edge cases (issue 14.4)
    (["evaluate", "{root}/not_a_checkpoint.pt", "--data", "{data}", "--quiet"], "not_a_checkpoint.pt"),
    (["evaluate", "{root}/missing.pt", "--data", "{data}", "--quiet"], "missing.pt"),
    (["evaluate", "{ckpt}", "--data", "{root}/no_data", "--quiet"], "no_data"),
    (["report", "{root}/runs_bad_config"], "config.json"),
    (["report", "{root}/runs_empty_results"], "results.json"),
    (["report", "{root}/nothing_here"], "no finished runs"),
    (["figure", "tsne", "{ckpt}", "--data", "{data}", "--out", "{root}/f.png", "--per-device", "-3", "--quiet"],
     "--per-device"),
    (["figure", "tsne", "{ckpt}", "--data", "{data}", "--out", "{root}/f.png", "--split", "evaluate",
      "--per-device", "1", "--quiet"], "--per-device"),
    # compress
    (["compress", "{root}/missing.pt", "--data", "{data}", "--out", "{root}/c"], "missing.pt"),
    (["compress", "{ckpt}", "--data", "{data}", "--out", "{root}/c", "--prune", "1.5"], "prune must be"),
    (["compress", "{ckpt}", "--data", "{data}", "--out", "{root}/c", "--bits", "12"], "bits must be"),
    (["compress", "{ckpt}", "--data", "{data}", "--out", "{root}/c", "--kd-alpha", "3"], "kd_alpha"),
    (["compress", "{ckpt}", "--data", "{data}", "--out", "{root}/c", "--set", "compress.prune_scope=nope"],
     "prune_scope"),
    # the benchmark and the other writers
    (["synth", "{root}/a_file"], "a_file"),
    (["synth", "{root}/s", "--seed", "-1"], "seed"),
    (["synth", "{root}/s", "--clip-seconds", "0"], "clip_seconds"),
    (["synth", "{root}/s", "--layout", "tau2022", "--clip-seconds", "2.5"], "multiple of snippet_seconds"),
    (["data-info", "{root}/no_data"], "no_data"),
    (["make-responses", "{root}/irs", "--count", "0"], "--count"),
    (["submission", "--label", "bad", "--predictions", "{root}/exists.md", "--name", "x", "--abbreviation", "x",
      "--author", "A,B,c@d,E", "--out", "{root}/sub"], "label"),
    (["submission", "--label", "Kim_QTI_task1_1", "--predictions", "{root}/missing.tsv", "--name", "x",
      "--abbreviation", "x", "--author", "A,B,c@d,E", "--out", "{root}/sub"], "missing.tsv"),
]


def fill(args, setup):
    return [a.format(**setup) for a in args]


@pytest.mark.parametrize("args, message", CASES, ids=[f"{i:02d}-{' '.join(a[:1] + a[-2:])}"[:60]
                                                      for i, (a, _) in enumerate(CASES)])
def test_bad_input_gives_one_line_and_leaves_nothing(setup, args, message, capsys):
    args = fill(args, setup)
    before = {p: p.stat().st_mtime_ns for p in setup["root"].rglob("*") if p.is_file() and ".lock" not in p.name}
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code in (1, 2), f"exit code {code}: {err}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("tinyasc: error:")]
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    # nothing half-written: new outputs do not exist, existing files are untouched
    for name in ("new_run", "c", "s", "sub", "irs", "f.png"):
        assert not (setup["root"] / name).exists(), f"{name} left behind"
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before


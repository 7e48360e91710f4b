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
    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model

    save_checkpoint(root / "mels128.pt", create_model("bc_resnet_asc_1", n_mels=128), "bc_resnet_asc",
                    FeatureConfig(n_mels=128), [f"s{i}" for i in range(10)])
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
    (["compress", "{ckpt}", "--data", "{data}", "--out", "{root}/c", "--distill", "--kd-teacher", "{root}/mels128.pt"],
     "trained on other features (n_mels 128 vs 256"),  # issue 25: a teacher fed the student's input
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



# ---- issue 25: the one edge, full disks, diverged runs, local split files ------------------------------

FAST = ["--quiet", "--set", "train.epochs=1", "--set", "train.batch_size=16", "--set", "train.warmup_epochs=0",
        "--set", "runtime.extract_workers=0"]


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("tinyasc: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("debug", ["", "--debug", "env"])
def test_an_unexpected_exception_is_one_line_naming_the_command_and_its_inputs(setup, debug, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("something tinyasc did not foresee")

    monkeypatch.setattr("tinyasc.runs.run_training", broken)
    if debug == "env":
        monkeypatch.setenv("TINYASC_DEBUG", "1")
    args = ["train", "--data", setup["data"], "--out", str(setup["root"] / "edge"), "--quiet"]
    code = main(args + ([debug] if debug == "--debug" else []))
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert code == 1 and line.startswith("tinyasc: error: train failed on ")
    assert f"--data {setup['data']}" in line and "ValueError: something tinyasc did not foresee" in line
    assert ("Traceback" in err) == bool(debug), err


def test_a_disk_full_error_outside_tinyasc_is_one_line_naming_the_file(setup, monkeypatch, capsys):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/cache/file")

    monkeypatch.setattr("tinyasc.runs.run_training", full)
    assert main(["train", "--data", setup["data"], "--out", str(setup["root"] / "edge"), "--quiet"]) == 1
    assert "train: disk full writing /some/cache/file" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("fails", ["last.pt", "metrics.jsonl"])
def test_a_full_disk_while_saving_stops_in_one_line_and_the_run_resumes_with_every_epoch_logged(
        setup, fails, tmp_path, monkeypatch, capsys):
    """The second epoch's last.pt (or the first epoch's metrics line, written after its last.pt) finds the
    disk full: one line, and --resume finishes the run with every epoch in metrics.jsonl, once each."""
    import builtins
    import errno

    import tinyasc.checkpoint
    import tinyasc.paths
    import tinyasc.train

    run = tmp_path / "run"
    calls = {"n": 0}

    def no_space(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_bytes, real_open = tinyasc.checkpoint.atomic_write_bytes, builtins.open

    def writer(path, data):  # the second last.pt finds the disk full, inside paths.atomic_write
        if fails == "last.pt" and path.name == "last.pt":
            calls["n"] += 1
            if calls["n"] == 2:
                return tinyasc.paths.atomic_write(path, no_space)
        return real_bytes(path, data)

    def opener(path, mode="r", *args, **kwargs):  # the second metrics line finds the disk full
        if fails == "metrics.jsonl" and str(path).endswith("metrics.jsonl") and "a" in mode:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(tinyasc.checkpoint, "atomic_write_bytes", writer)
    monkeypatch.setattr(tinyasc.train, "open", opener, raising=False)
    epochs = 2 if fails == "last.pt" else 1
    args = ["train", "--data", setup["data"], "--out", str(run)] + FAST + ["--set", f"train.epochs={epochs}"]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "disk full" in line and "--resume" in line and fails in line, line
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == \
        list(range(1, epochs + 1))
    assert (run / "results.json").is_file()


def test_non_finite_weights_stop_the_run_and_last_pt_keeps_the_last_finite_epoch(setup, tmp_path, capsys):
    """Weights that become non-finite while the loss stays finite (injected in epoch 2 into a BatchNorm
    running mean, which training-mode forward passes do not use) stop the run before last.pt is saved."""
    import torch

    from tinyasc.checkpoint import read_checkpoint
    from tinyasc.errors import TinyascError

    exp = load_experiment(None, ["train.epochs=2", "train.batch_size=16", "train.warmup_epochs=0",
                                 "runtime.extract_workers=0"], base={"model": {"preset": "bc_resnet_asc_1"}})
    finished = []

    def overflow(model):
        if finished:  # every step of epoch 2
            model.stem[1].running_mean[0] = float("nan")

    with pytest.raises(TinyascError, match="diverged in epoch 2: non-finite weights") as e:
        run_training(exp, setup["data"], tmp_path / "run", progress=False, after_step=overflow,
                     on_epoch_end=finished.append)
    assert "holds epoch 1, the last finite one" in str(e.value)
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1
    assert all(bool(torch.isfinite(t).all()) for t in state["state_dict"].values() if t.is_floating_point())


@pytest.mark.parametrize("sets", [
    ["train.lr=1e8", "train.mixup_alpha=0"],  # the diverged run
    ["train.weight_decay=1e30"],
    ["train.warmup_epochs=1e9"],  # lr ≈ 0 throughout: trains, finite
])
def test_extreme_recipe_values_never_save_non_finite_weights(setup, sets, tmp_path, capsys):
    import torch

    from tinyasc.checkpoint import read_checkpoint

    run = tmp_path / "run"
    args = ["train", "--data", setup["data"], "--out", str(run)] + FAST
    code = main(args + [a for s in sets for a in ("--set", s)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code:
        line = one_error_line(err)
        assert code == 2 and "training diverged" in line, line
        assert ("holds epoch" in line) == (run / "last.pt").exists(), line
    else:
        assert (run / "results.json").is_file()
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            state = read_checkpoint(run / name)["state_dict"]
            assert all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()), name


def test_a_local_split_file_is_used_as_given_not_the_datasets_split_of_that_name(setup, tmp_path, monkeypatch):
    from tinyasc.data.tau import read_train_subset
    from tinyasc.errors import TinyascError

    data = setup["root"] / "overlap_location"  # any copy of the benchmark: give it a split25.csv of its own
    train_rows = (data / "evaluation_setup" / "fold1_train.csv").read_text().splitlines()
    (data / "evaluation_setup" / "split25.csv").write_text("\n".join(train_rows[:20]) + "\n")
    local = tmp_path / "split25.csv"
    local.write_text("\n".join(train_rows[:1] + train_rows[-5:]) + "\n")
    monkeypatch.chdir(tmp_path)
    assert len(read_train_subset(data, "./split25.csv")) == 5
    assert len(read_train_subset(data, str(local))) == 5
    assert len(read_train_subset(data, "split25")) == 19
    with pytest.raises(TinyascError, match="both .* exist; write ./split25.csv for the local file"):
        read_train_subset(data, "split25.csv")
    (data / "evaluation_setup" / "split25.csv").unlink()


def test_resume_refuses_a_run_whose_teacher_logits_changed(setup, tmp_path):
    from tinyasc.errors import TinyascError
    from tinyasc.runs import input_digests, prepare_run_dir

    logits = tmp_path / "teacher.npz"
    logits.write_bytes(b"first teacher")
    exp = load_experiment(None, [f"train.teacher_logits='{logits}'"], base={"model": {"preset": "bc_resnet_asc_1"}})
    run = tmp_path / "run"
    prepare_run_dir(run, exp, False, False, {"sha256": "d", "inputs": input_digests(exp.train)})
    (run / "last.pt").write_bytes(b"")  # an interrupted run
    prepare_run_dir(run, exp, True, False, {"sha256": "d", "inputs": input_digests(exp.train)})  # unchanged: fine
    logits.write_bytes(b"another teacher")
    with pytest.raises(TinyascError, match="train.teacher_logits changed"):
        prepare_run_dir(run, exp, True, False, {"sha256": "d", "inputs": input_digests(exp.train)})


def finished_run(path, seed, accuracy, data=None, epochs=1):
    m = {"accuracy": accuracy, "log_loss": 1.0, "clips": 90, "per_device": {"a": {"accuracy": accuracy}},
         "per_group": {}, "per_class": {}, "confusion": [], "classes": []}
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"name": "x", "model": "bc_resnet_asc_1",
                                                  "train": {"seed": seed, "epochs": epochs}}))
    (path / "results.json").write_text(json.dumps({"last": m, "best": m}))
    if data:
        (path / "data.json").write_text(json.dumps(data))


def test_report_keeps_datasets_subsets_and_devices_apart_and_counts_a_seed_once(tmp_path):
    """Issue 25: three seed-0 runs on split5/25/100 were one row "3 seeds"; device fine-tunes counted as seeds."""
    from tinyasc.report import report

    runs = []
    for i, subset in enumerate(["split5", "split25", "split100"]):
        runs.append(tmp_path / subset)
        finished_run(runs[-1], 0, 0.1 * (i + 1), {"sha256": f"d{i}", "train_split": subset})
    for device in ("a", "b"):
        runs.append(tmp_path / "dev" / device)
        finished_run(runs[-1], 0, 0.5, {"sha256": "d1", "train_split": "split25", "device": device})
    runs.append(tmp_path / "copy")  # split25's seed 0 again
    finished_run(runs[-1], 0, 0.9, {"sha256": "d1", "train_split": "split25"})
    text, data = report(runs)
    rows = data["last"]
    assert set(rows) == {"x on split5", "x on split25", "x on split100", "x on split25 (device a)",
                         "x on split25 (device b)"}
    assert all(row["seeds"] == 1 for row in rows.values())
    assert rows["x on split25"]["mean"][0] == pytest.approx(20.0)  # the first run of the seed, not the copy
    assert f"{tmp_path / 'copy'} repeats seed 0 of x on split25" in text


def test_sweep_refuses_a_finished_seed_of_another_recipe_and_says_why(setup, tmp_path, capsys):
    """Issue 25: a second sweep (or `demo --epochs 4`) reported old runs of another recipe as its own."""
    from tinyasc.runs import sweep

    exp = load_experiment(None, ["train.epochs=4"], base={"model": {"preset": "bc_resnet_asc_1"}})
    finished_run(tmp_path / "seed0", 0, 0.5, epochs=1)
    (tmp_path / "seed0" / "config.json").write_text(json.dumps(
        {**exp.resolved(), "train": {**exp.resolved()["train"], "epochs": 1}}))
    from tinyasc.errors import TinyascError

    with pytest.raises(TinyascError, match=r"holds a finished run of another recipe \(train.epochs 1 ≠ 4\)"):
        sweep(exp, setup["data"], tmp_path, [0], progress=False)


def test_compress_resume_refuses_a_changed_teacher(setup, tmp_path, capsys):
    """Issue 25, root cause 3: --resume did not notice a changed compress teacher (up to 63 int8 codes apart
    from an uninterrupted run)."""
    import shutil

    teacher = tmp_path / "teacher.pt"
    shutil.copy(setup["ckpt"], teacher)
    out = tmp_path / "c"
    args = ["compress", str(teacher), "--data", setup["data"], "--out", str(out), "--epochs", "1", "--quiet",
            "--set", "train.batch_size=16"]
    assert main(args) == 0
    (out / "results.json").unlink()  # as if cut after its last epoch's checkpoint
    shutil.copy(setup["root"] / "run" / "best.pt", teacher)  # another file at the teacher's path
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("tinyasc: error:") == 1 and "the teacher changed" in err, err
    assert not (out / "results.json").exists()
    shutil.copy(setup["ckpt"], teacher)  # the teacher restored: the run finishes
    assert main([*args, "--resume"]) == 0 and (out / "results.json").is_file()

"""tinyasc.train / tinyasc.runs: schedule, experiment configs, deterministic training, exact resume,
run-dir safety, 2-process DDP (gloo)."""
import json
from pathlib import Path
import os
import socket
import subprocess
import sys

import pytest
import torch

from tinyasc.checkpoint import load_checkpoint
from tinyasc.errors import TinyascError
from tinyasc.runs import run_training, sweep
from tinyasc.experiment import load_experiment
from tinyasc.train import TrainConfig, lr_at

TINY = ["train.epochs=2", "train.batch_size=16", "train.warmup_epochs=1", "train.extract_workers=0"]


def test_lr_warms_up_linearly_then_cosine_decays_to_zero():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, lr=0.06)
    steps = 5
    assert lr_at(0, steps, cfg) == 0
    assert lr_at(5, steps, cfg) == pytest.approx(0.03)  # halfway through warm-up
    assert lr_at(10, steps, cfg) == pytest.approx(0.06)  # peak at the end of warm-up
    assert lr_at(30, steps, cfg) == pytest.approx(0.03)  # cosine midpoint
    assert lr_at(50, steps, cfg) == pytest.approx(0.0, abs=1e-12)
    values = [lr_at(s, steps, cfg) for s in range(10, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.warmup_epochs) == (100, 64, 0.06, 5)
    assert (cfg.momentum, cfg.weight_decay, cfg.mixup_alpha, cfg.roll_seconds) == (0.9, 1e-3, 0.3, 1.5)


def test_experiment_file_and_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('name = "x"\n[model]\npreset = "bc_resnet_asc_1"\nresnorm = "input"\n[train]\nepochs = 7\n')
    exp = load_experiment(path, ["train.epochs=3", "model.resnorm_lambda=0.0", "features.kind=pcen"])
    assert exp.name == "x" and exp.train.epochs == 3 and exp.features.kind == "pcen"
    resolved = exp.resolved()
    assert resolved["model_config"]["resnorm"] == "input" and resolved["model_config"]["resnorm_lambda"] == 0.0


@pytest.mark.parametrize("sets,message", [
    (["train.epochs=0"], "epochs must be >= 1"),
    (["train.nope=1"], "unknown TrainConfig field"),
    (["model.resnorm=sometimes"], "resnorm must be"),
    (["oops"], "expected SECTION.FIELD=VALUE"),
    (["data.x=1"], "bad --set key"),
])
def test_bad_config_values_give_one_line_errors(sets, message):
    with pytest.raises(TinyascError, match=message):
        load_experiment(None, sets, base={"model": {"preset": "bc_resnet_asc_1"}})


def test_every_shipped_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        load_experiment(path).resolved()


def tiny_experiment(*extra):
    return load_experiment(None, TINY + list(extra), base={"model": {"preset": "bc_resnet_asc_1"}})


def weights(path):
    return load_checkpoint(path)[0].state_dict()


def test_training_writes_a_complete_run_and_is_deterministic(small_benchmark, tmp_path):
    exp = tiny_experiment()
    results = run_training(exp, small_benchmark, tmp_path / "a", progress=False)
    run = tmp_path / "a"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "last.pt", "best.pt", "results.json"}
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert set(lines[0]) >= {"train_loss", "eval_accuracy", "eval_per_device", "lr", "epoch_seconds", "data_wait_fraction"}
    assert set(results["last"]["per_device"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    model, feature_cfg, classes, payload = load_checkpoint(run / "last.pt")
    assert payload["experiment"]["name"] == exp.name and len(classes) == 10 and payload["clip_samples"] == 16000
    run_training(exp, small_benchmark, tmp_path / "b", progress=False)
    a, b = weights(run / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(small_benchmark, tmp_path):
    exp = tiny_experiment("train.epochs=3")
    run_training(exp, small_benchmark, tmp_path / "full", progress=False)

    class Interrupted(Exception):
        pass

    def stop_after_first(epoch):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_training(exp, small_benchmark, tmp_path / "cut", progress=False, on_epoch_end=stop_after_first)
    assert not (tmp_path / "cut" / "results.json").exists()
    run_training(exp, small_benchmark, tmp_path / "cut", resume=True, progress=False)
    a, b = weights(tmp_path / "full" / "last.pt"), weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


def test_existing_run_dir_is_not_overwritten_and_resume_checks_config(small_benchmark, tmp_path):
    exp = tiny_experiment("train.epochs=1")
    run_training(exp, small_benchmark, tmp_path / "r", progress=False)
    before = (tmp_path / "r" / "last.pt").read_bytes()
    with pytest.raises(TinyascError, match="already holds files"):
        run_training(exp, small_benchmark, tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "last.pt").read_bytes() == before
    with pytest.raises(TinyascError, match="different config"):
        run_training(tiny_experiment("train.epochs=2", "train.lr=0.1"), small_benchmark, tmp_path / "r",
                     resume=True, progress=False)
    with pytest.raises(TinyascError, match="nothing to resume"):
        run_training(exp, small_benchmark, tmp_path / "empty", resume=True, progress=False)


def test_sweep_skips_finished_seeds(small_benchmark, tmp_path):
    exp = tiny_experiment("train.epochs=1")
    runs = sweep(exp, small_benchmark, tmp_path / "sw", [0, 1], progress=False)
    assert [r.name for r in runs] == ["seed0", "seed1"]
    stamp = (runs[0] / "results.json").stat().st_mtime_ns
    sweep(exp, small_benchmark, tmp_path / "sw", [0, 1], progress=False)
    assert (runs[0] / "results.json").stat().st_mtime_ns == stamp
    a, b = weights(runs[0] / "last.pt"), weights(runs[1] / "last.pt")
    assert not all(torch.equal(a[k], b[k]) for k in a)  # different seeds, different models


def test_global_freq_norm_is_fitted_before_training(small_benchmark, tmp_path):
    exp = tiny_experiment("train.epochs=1", "model.resnorm=none", "model.input_norm=global_freq")
    run_training(exp, small_benchmark, tmp_path / "g", progress=False)
    model = load_checkpoint(tmp_path / "g" / "last.pt")[0]
    assert bool(model.input_norm.fitted) and model.input_norm.std.min() > 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_process_ddp_with_gloo(small_benchmark, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", free_port(),
           "-m", "tinyasc", "train", "--data", str(small_benchmark), "--out", str(tmp_path / "ddp"), "--quiet",
           *[a for s in TINY for a in ("--set", s)]]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # only rank 0 writes
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["last"]["clips"] == 90  # predictions of both ranks' shards were gathered


def test_a_wrong_data_folder_leaves_no_run_folder_behind(tmp_path):
    with pytest.raises(TinyascError, match="dataset root not found"):
        run_training(tiny_experiment(), tmp_path / "no_such_data", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_resuming_a_finished_run_is_refused_and_number_fields_reject_words(small_benchmark, tmp_path):
    run_training(tiny_experiment("train.epochs=1"), small_benchmark, tmp_path / "done", progress=False)
    with pytest.raises(TinyascError, match="the run is finished"):
        run_training(tiny_experiment("train.epochs=1"), small_benchmark, tmp_path / "done", resume=True, progress=False)
    with pytest.raises(TinyascError, match="epochs must be a number, not 'abc'"):
        tiny_experiment("train.epochs=abc")


def test_set_features_n_mels_to_a_word_is_one_line_and_leaves_no_run(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tinyasc", "train", "--config", "configs/bc_resnet_asc_1_resnorm.toml",
                             "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--set", "features.n_mels=abc"],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "n_mels must be a number, not 'abc'" in result.stderr
    assert not (tmp_path / "run").exists()


def test_features_and_model_n_mels_must_agree():
    with pytest.raises(TinyascError, match="features.n_mels = 128 but the model expects model.n_mels = 256"):
        tiny_experiment("features.n_mels=128")
    assert tiny_experiment("features.n_mels=128", "model.n_mels=128").features.n_mels == 128


def test_old_flat_configs_put_runtime_fields_under_runtime_and_auto_spec_augment_follows_the_width():
    from tinyasc.experiment import experiment_from_sections, recipe_of

    old = {"model": {"preset": "bc_resnet_asc_8"}, "train": {"threads": 1, "extract_workers": 0, "cache_dtype": "float16",
                                                            "spec_augment": "auto", "epochs": 3}}
    exp = experiment_from_sections(old)
    assert (exp.runtime.threads, exp.runtime.extract_workers, exp.runtime.cache_dtype) == (1, 0, "float16")
    assert exp.train.spec_augment == "on" and exp.train.epochs == 3
    small = experiment_from_sections({"model": {"preset": "bc_resnet_asc_1"}, "train": {"spec_augment": "auto"}})
    assert small.train.spec_augment == "off"
    # a config.json written before the split has the same recipe as the new layout
    flat = exp.recipe()
    flat["train"] = {**flat["train"], "threads": 1, "spec_augment": "auto"}
    assert recipe_of(flat) == recipe_of(exp.resolved())


def test_resume_accepts_other_runtime_settings_but_not_another_recipe(small_benchmark, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_experiment("runtime.threads=2"), small_benchmark, run_dir, progress=False,
                     on_epoch_end=lambda epoch: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(TinyascError, match="different config"):
        run_training(tiny_experiment("train.lr=0.01"), small_benchmark, run_dir, resume=True, progress=False)
    results = run_training(tiny_experiment("runtime.threads=1"), small_benchmark, run_dir, resume=True, progress=False)
    assert results["last_epoch"] == 2


def test_resume_after_the_last_epoch_finishes_the_run(small_benchmark, tmp_path):
    run_dir = tmp_path / "run"
    run_training(tiny_experiment(), small_benchmark, run_dir, progress=False)
    expected = json.loads((run_dir / "results.json").read_text())
    (run_dir / "results.json").unlink()  # killed after the last checkpoint, before results.json
    results = run_training(tiny_experiment(), small_benchmark, run_dir, resume=True, progress=False)
    assert results["last"]["accuracy"] == expected["last"]["accuracy"] and (run_dir / "results.json").is_file()


def test_a_second_writer_is_refused_while_a_run_holds_its_folder(small_benchmark, tmp_path):
    from tinyasc.lock import run_lock

    with run_lock(tmp_path / "run", what="train"):
        with pytest.raises(TinyascError, match="pid"):
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                message = pool.apply(_try_to_train, (str(small_benchmark), str(tmp_path / "run")))
            raise TinyascError(message)


def _try_to_train(root, run_dir):
    try:
        run_training(tiny_experiment(), root, run_dir, progress=False)
    except TinyascError as e:
        return str(e)
    return "trained: the lock did not hold"


def test_resume_on_other_data_is_refused(small_benchmark, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_benchmark, copy, ignore=shutil.ignore_patterns(".tinyasc_cache"))
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_experiment(), copy, run_dir, progress=False,
                     on_epoch_end=lambda epoch: (_ for _ in ()).throw(KeyboardInterrupt()))
    lines = (copy / "evaluation_setup" / "fold1_train.csv").read_text().splitlines()
    (copy / "evaluation_setup" / "fold1_train.csv").write_text("\n".join(lines[:-3]) + "\n")  # files changed
    with pytest.raises(TinyascError, match="other data"):
        run_training(tiny_experiment(), copy, run_dir, resume=True, progress=False)


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_writes_no_nan(small_benchmark, tmp_path):
    with pytest.raises(TinyascError, match="training diverged"):
        run_training(tiny_experiment("train.lr=1e30", "train.warmup_epochs=0", "train.mixup_alpha=0"),
                     small_benchmark, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "results.json").exists()  # no NaN result; nothing half-made left


def test_report_counts_a_run_given_twice_once(small_benchmark, tmp_path):
    from tinyasc.report import aggregate, report

    run_training(tiny_experiment("train.epochs=1"), small_benchmark, tmp_path / "r", progress=False)
    _, data = report([tmp_path / "r", tmp_path / "r", tmp_path / ".." / tmp_path.name / "r"])
    assert [row["seeds"] for row in data["last"].values()] == [1]
    assert [row["seeds"] for row in aggregate([tmp_path / "r"]).values()] == [1]


def test_evaluating_a_model_that_knows_fewer_classes_than_the_data_is_one_line(small_benchmark, tmp_path):
    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model
    from tinyasc.runs import evaluate_checkpoints

    five = tmp_path / "five.pt"
    save_checkpoint(five, create_model("bc_resnet_asc_1", num_classes=5), "bc_resnet_asc", FeatureConfig(),
                    ["airport", "bus", "metro", "metro_station", "park"], clip_seconds=1.0)
    with pytest.raises(TinyascError, match="knows 5 classes but the data has labels up to"):
        evaluate_checkpoints([five], small_benchmark, progress=False)


@pytest.mark.parametrize("split,prefix", [("validation", "val_"), ("evaluate", "eval_")])
def test_best_checkpoint_is_chosen_on_the_stated_split_and_metric(small_benchmark, tmp_path, split, prefix):
    results = run_training(tiny_experiment("train.epochs=3", "train.select_on='macro_accuracy'",
                                           f"train.select_split='{split}'"), small_benchmark,
                           tmp_path / "r", progress=False)
    history = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: h[f"{prefix}macro_accuracy"])  # first of equals, as `fit` keeps it
    assert results["best_epoch"] == best["epoch"]
    assert results["best"]["macro_accuracy"] == pytest.approx(best["eval_macro_accuracy"])  # reported: evaluate
    assert results["selected_on"]["split"] == split and results["selected_on"]["validation_clips"] > 0
    assert results["best_validation"]["macro_accuracy"] == pytest.approx(best["val_macro_accuracy"])


def test_validation_holds_out_whole_locations_with_every_device_reproducibly(small_benchmark):
    from tinyasc.runs import hold_out_locations, load_split

    exp = tiny_experiment()
    train = load_split(small_benchmark, "train", exp, progress=False)
    part, held = hold_out_locations(train, 0.2, seed=0)
    assert len(part) + len(held) == len(train) and not set(part.filenames) & set(held.filenames)
    segments = lambda s: {Path(f).stem.rsplit("-", 1)[0] for f in s.filenames}  # noqa: E731
    assert not segments(part) & segments(held)  # no recording straddles the two parts
    again = hold_out_locations(train, 0.2, seed=0)[1]
    assert again.filenames == held.filenames and hold_out_locations(train, 0.2, seed=1)[1].filenames != held.filenames
    assert set(held.labels) <= set(part.labels)  # every held-out scene keeps training recordings


def test_validation_on_a_realistic_layout_is_location_disjoint_and_near_its_fraction(tmp_path):
    import numpy as np

    from tinyasc.dcase import SCENES
    from tinyasc.runs import hold_out_locations
    from tinyasc.train import Split

    names, locations, labels = [], [], []
    for scene in range(10):
        for loc in range(12):  # 12 locations per scene, 3 segments each, recorded by 1–6 devices
            for seg in range(3):
                for dev in ["a", "b", "c", "s1", "s2", "s3"][: 1 + (loc + seg) % 6]:
                    names.append(f"audio/{SCENES[scene]}-city-{scene}{loc:02d}-{seg}-{dev}.wav")
                    locations.append(f"city-{scene}{loc:02d}")
                    labels.append(scene)
    split = Split(np.zeros((len(names), 1, 1)), np.array(labels), np.array([n[-6:-4].strip("-") for n in names]),
                  SCENES, 10.0, tuple(names), tuple(locations))
    part, held = hold_out_locations(split, 0.1, seed=3)
    assert not set(part.locations) & set(held.locations)
    assert 0.07 < len(held) / len(split) < 0.13 and set(held.labels) == set(range(10))
    for loc in set(held.locations):  # every clip of a held-out location, all devices, is held out
        assert sum(1 for x in split.locations if x == loc) == sum(1 for x in held.locations if x == loc)


def test_select_split_validation_needs_a_validation_fraction():
    with pytest.raises(TinyascError, match="needs validation > 0"):
        load_experiment(None, ["train.validation=0"], base={"model": {"preset": "bc_resnet_asc_1"}})
    exp = load_experiment(None, ["train.validation=0", "train.select_split='evaluate'"],
                          base={"model": {"preset": "bc_resnet_asc_1"}})
    assert exp.train.select_split == "evaluate"


def test_runs_saved_before_the_mask_fill_and_validation_fields_keep_their_recipe():
    from tinyasc.experiment import recipe_of

    exp = load_experiment(None, ["train.spec_fill='clip_mean'", "train.validation=0", "train.select_split='evaluate'"],
                          base={"model": {"preset": "bc_resnet_asc_8"}})
    old = exp.resolved()
    for field in ("spec_fill", "validation", "select_split", "validation_seed", "spec_time_masks", "spec_freq_masks"):
        del old["train"][field]
    assert recipe_of(old) == recipe_of(exp.resolved())
    assert recipe_of(old) != recipe_of(load_experiment(None, base={"model": {"preset": "bc_resnet_asc_8"}}).resolved())



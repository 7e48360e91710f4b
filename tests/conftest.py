"""Shared test settings and fixtures: a small synthetic TAU-layout benchmark generated once per session."""
import os
import tempfile

import pytest
import torch

torch.set_num_threads(2)
# the checkpoints' exported graphs go to a cache of this run (and its subprocesses), never the user's
os.environ["TINYASC_ONNX_CACHE"] = tempfile.mkdtemp(prefix="tinyasc-test-onnx-")


@pytest.fixture(scope="session")
def small_benchmark(tmp_path_factory):
    """Root of the 'small' synthetic benchmark (1 s clips, 75 train / 90 evaluate clips)."""
    from tinyasc.data.synthetic import generate

    root = tmp_path_factory.mktemp("bench") / "small"
    generate(root, seed=0, scale="small", workers=2, progress=False)
    return root


# End-to-end tests that train, spawn processes or build whole benchmarks: marked `slow`, so that
# `make test-fast` (pytest -m "not slow") stays under a minute; `make test` and CI run them all.
SLOW_FILES = {"test_synthetic.py", "test_tau2022.py", "test_devgen_training.py"}
SLOW_TESTS = {
    "test_two_process_ddp_with_gloo", "test_a_killed_build_leaves_no_workers_and_its_temporary_is_cleaned",
    "test_submission_command_builds_valid_2024_and_2025_files", "test_info_rules_prints_pass_fail_and_check_sets_exit_code",
    "test_parallel_extraction_equals_serial", "test_ensemble_averages_the_members_probabilities",
    "test_compress_command_end_to_end_then_evaluate_and_info", "test_interrupted_compression_resumes_to_the_same_compressed_model",
    "test_resume_reaches_the_same_weights_as_an_uninterrupted_run", "test_training_writes_a_complete_run_and_is_deterministic",
    "test_allocator_opt_out_and_glibc_choice_and_user_wait_policy_are_respected",
    "test_a_tinyasc_process_and_its_spawned_workers_get_the_fast_allocator_and_passive_waiting",
    "test_the_re_exec_keeps_the_process_arguments_and_happens_once", "test_training_with_a_very_short_first_clip_keeps_the_datasets_length",
    "test_baselines_take_any_class_count_and_input_length", "test_sweep_skips_finished_seeds",
    "test_train_then_evaluate_and_ensemble_commands", "test_figure_command_writes_png",
    # issue 25: runs that train two epochs (and resume) to fault a save or diverge
    "test_a_full_disk_while_saving_stops_in_one_line_and_the_run_resumes_with_every_epoch_logged",
    "test_non_finite_weights_stop_the_run_and_last_pt_keeps_the_last_finite_epoch",
    "test_extreme_recipe_values_never_save_non_finite_weights",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)

"""Shared test settings and fixtures: a small synthetic TAU-layout benchmark generated once per session."""
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_benchmark(tmp_path_factory):
    """Root of the 'small' synthetic benchmark (1 s clips, 75 train / 90 evaluate clips)."""
    from tinyasc.data.synthetic import generate

    root = tmp_path_factory.mktemp("bench") / "small"
    generate(root, seed=0, scale="small", workers=2, progress=False)
    return root

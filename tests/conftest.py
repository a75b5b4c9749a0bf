"""Shared fixtures. Tests named ``*_gpu.py`` (or marked ``gpu``) skip themselves without CUDA."""
from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.fspath.basename.endswith("_gpu.py") or "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    """Unit tests use tiny models: more threads than cores only adds contention."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the seeded tiny random Llama, float32 on CPU."""
    from lorasoups.models import load_base

    return load_base("tiny-random-llama", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The tiny random Llama saved as a normal model directory."""
    from lorasoups.models import save_tiny_random_llama

    return save_tiny_random_llama(tmp_path_factory.mktemp("tiny-llama"))

"""GPU-only: the default model in bf16 on CUDA (skipped without CUDA)."""
import torch

from lorasoups.checks import greedy_answer
from lorasoups.models import load_base


def test_default_model_bf16_cuda():
    model, tok = load_base("smollm2-135m-instruct", device="cuda")
    assert next(model.parameters()).dtype == torch.bfloat16
    a = greedy_answer(model, tok, "Name the largest planet of the solar system in one word.", 12)
    assert a == greedy_answer(model, tok, "Name the largest planet of the solar system in one word.", 12)

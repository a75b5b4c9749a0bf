"""Evaluation: generation, program extraction and sandboxed execution, QA metrics, LLM judges, ELO,
the prompt-format robustness grid, super-linearity tables and the retrieval upper bound.

Submodules are imported on demand (``from lorasoups.evaluation import sandbox``) so that scoring
code does not pay for torch or openai imports it does not use.
"""

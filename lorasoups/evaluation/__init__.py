"""Evaluation: every number the paper reports, computed reproducibly and safely.

* ``generation``  batched, left-padded, KV-cached decoding (the paper's settings, or greedy)
* ``extract``     program and last-number extraction from generations
* ``sandbox``     ``run_program(code, timeout)``: untrusted programs in isolated processes
* ``gsm_hard``    execution accuracy and last-number accuracy (both GSM-Hard scorings)
* ``qa_metrics``  normalised exact match, token F1, containment
* ``judge``       QA (0-2) and pairwise (0-3) LLM judges via the ``openai`` client, cached
* ``elo``         sequential Elo with the paper's constants, bootstrap CIs, win fractions
* ``robustness``  prompt-format accuracy grid (Figure 10)
* ``superlinear`` super-linearity table (Table 1)
* ``retrieval``   FAISS + all-MiniLM-L6-v2 retrieval upper bound for QABot
* ``reporting`` / ``tasks``  result JSON + per-example JSONL through ``lorasoups.results``

Submodules are imported on demand (``from lorasoups.evaluation import sandbox``) so scoring code
does not pay for torch, openai or sentence-transformers imports it does not use.
"""

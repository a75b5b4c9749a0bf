"""lorasoups: merge skill LoRAs (LoRA Soups, Prabhakar et al., COLING 2025) on current peft."""
from __future__ import annotations

import logging
import os
import random
import warnings

__version__ = "0.1.0"


def setup(seed: int = 0, quiet: bool = True) -> None:
    """One call at the top of every notebook and script: seed everything, quiet the noisy logs."""
    # before transformers imports tqdm.auto: no ipywidgets warning in every notebook's output
    warnings.filterwarnings("ignore", message="IProgress not found")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if quiet:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        for name in ("transformers", "datasets", "peft", "trl", "accelerate", "httpx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")

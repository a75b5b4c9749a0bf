"""Training with TRL and accelerate: skill LoRAs, DATA-MIX, CAT alphas, MoE routers, LoraHub.

    from lorasoups.training import SftConfig, train_sft, train_cat, SoupTrainConfig
    math = train_sft("smollm2-135m-instruct", load("metamathqa", "train"), SftConfig(), name="math")
    code = train_sft("smollm2-135m-instruct", load("code_alpaca", "train"), SftConfig(), name="code")
    cat = train_cat("smollm2-135m-instruct", [math.adapter_dir, code.adapter_dir], mixture, validation)

Every run lives in a directory keyed by the hash of its resolved config (:mod:`.runs`): a finished
run is reused, a killed one resumes from its last complete checkpoint. Several GPUs:
``accelerate launch --config_file configs/accelerate/ddp.yaml -m lorasoups.training.sft ...``.
"""
from lorasoups.training.datamix import train_datamix_concat, train_datamix_sequential
from lorasoups.training.lorahub import LoraHubConfig, train_lorahub
from lorasoups.training.moe import train_moe
from lorasoups.training.runs import Run, RunError, check_adapter_base
from lorasoups.training.sft import RunResult, SftConfig, make_sft_trainer, train_sft
from lorasoups.training.soup import RECIPES, SoupTrainConfig, train_cat, train_soup

__all__ = [
    "LoraHubConfig", "RECIPES", "Run", "RunError", "RunResult", "SftConfig", "SoupTrainConfig",
    "check_adapter_base", "make_sft_trainer", "train_cat", "train_datamix_concat", "train_datamix_sequential",
    "train_lorahub", "train_moe", "train_sft", "train_soup",
]

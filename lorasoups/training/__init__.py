"""Training with TRL and accelerate: skill LoRAs, DATA-MIX, CAT alphas, MoE routers, LoraHub.

Every run lives in a directory keyed by the hash of its resolved config (:mod:`.runs`): a finished
run is reused, a killed one resumes from its last complete checkpoint.
"""

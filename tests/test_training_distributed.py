"""Processes, not functions: a run SIGKILLed mid-training resumes to the same adapter as an
uninterrupted run, and a real 2-process ``accelerate launch`` (gloo on CPU) ends with identical
adapters on both ranks. Each spawns Python processes (torch imports dominate the time)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorasoups import paths
from lorasoups.training.runs import CHECKPOINT_OK, COMPLETE

DRIVER = textwrap.dedent('''
    import os, sys, time
    from datasets import Dataset
    from transformers import TrainerCallback
    from lorasoups.training.sft import SftConfig, train_sft

    class Slow(TrainerCallback):
        """Slows each step so the test can kill the process mid-run (not part of the run's config)."""
        def on_step_end(self, args, state, control, **kw):
            time.sleep(float(os.environ.get("STEP_SLEEP", "0")))

    base, out = sys.argv[1], sys.argv[2]
    ds = Dataset.from_list([{"prompt": f"Q{i}: what is {i} times 7?\\n", "completion": f"{i * 7}"} for i in range(16)])
    cfg = SftConfig(r=4, lora_alpha=8, lora_dropout=0.1, max_steps=int(os.environ.get("MAX_STEPS", "8")),
                    per_device_train_batch_size=2, gradient_accumulation_steps=2, warmup_steps=2,
                    learning_rate=1e-2, save_steps=2, logging_steps=1, max_length=32)
    res = train_sft(base, ds, cfg, name="proc", callbacks=[Slow()])
    import torch.distributed as dist
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file
    rank = dist.get_rank() if dist.is_initialized() else 0
    model = res.model.module if hasattr(res.model, "module") else res.model
    save_file({k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()},
              f"{out}/rank{rank}.safetensors")
    from accelerate import PartialState
    backend = f"{PartialState().backend}:{dist.get_backend_config()}" if dist.is_initialized() else "none"
    world = dist.get_world_size() if dist.is_initialized() else 1
    print(f"DONE rank={rank} world={world} backend={backend} resumed={res.summary['resumed_from']}", flush=True)
''')


def _env(runs: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LORASOUPS_RUNS": str(runs), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(paths.ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(extra)
    return env


def _adapter(run_root: Path) -> dict[str, torch.Tensor]:
    (run_dir,) = [p for p in (run_root / "training").iterdir() if p.is_dir()]
    assert (run_dir / COMPLETE).is_file()
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tiny_dir, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    killed_runs, ref_runs = tmp_path / "killed", tmp_path / "reference"
    cmd = [sys.executable, str(script), str(tiny_dir), str(out)]

    proc = subprocess.Popen(cmd, env=_env(killed_runs, STEP_SLEEP="0.5"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    marked: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        marked = list(killed_runs.glob(f"training/*/checkpoints/checkpoint-*/{CHECKPOINT_OK}"))
        if marked:
            break
        time.sleep(0.05)
    assert marked, f"no checkpoint was written before the run ended:\n{proc.stdout.read() if proc.stdout else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = list((killed_runs / "training").iterdir())
    assert not (run_dir / COMPLETE).exists() and not (run_dir / "adapter").exists()

    resumed = subprocess.run(cmd, env=_env(killed_runs), capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed=" in resumed.stdout and "resumed=None" not in resumed.stdout, resumed.stdout

    reference = subprocess.run(cmd, env=_env(ref_runs), capture_output=True, text=True, timeout=180)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert "resumed=None" in reference.stdout

    got, want = _adapter(killed_runs), _adapter(ref_runs)
    assert sorted(got) == sorted(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=1e-5)
    assert any(t.abs().sum() > 0 for k, t in want.items() if "lora_B" in k)  # it trained
    steps = [r["step"] for r in json.loads((run_dir / "log_history.json").read_text()) if "loss" in r]
    assert steps == list(range(1, 9))  # one loss per step, none lost or repeated across the kill


@pytest.mark.slow
def test_two_process_accelerate_launch_gives_identical_adapters(tiny_dir, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # accelerate's --cpu launcher only spawns several processes through mpirun; --multi_gpu starts
    # them with torchrun, and ACCELERATE_USE_CPU keeps them on CPU, where torch uses gloo.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), str(script), str(tiny_dir), str(out)]
    done = subprocess.run(cmd, env=_env(tmp_path / "runs", ACCELERATE_USE_CPU="1", MAX_STEPS="3"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("DONE"))
    assert lines == ["DONE rank=0 world=2 backend=gloo:cpu:gloo resumed=None", "DONE rank=1 world=2 backend=gloo:cpu:gloo resumed=None"]
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    saved = _adapter(tmp_path / "runs")
    assert sorted(r0) == sorted(r1) and len(r0) > 0
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
        torch.testing.assert_close(saved[key], r0[key], atol=0, rtol=0)
    assert any(t.abs().sum() > 0 for k, t in r0.items() if "lora_B" in k)

"""Processes, not functions: a run SIGKILLed mid-training resumes to the same adapter as an
uninterrupted run; real 2-process ``accelerate launch`` runs of the shipped CPU configs (DDP over
gloo, DeepSpeed ZeRO-2 and ZeRO-3 on its CPU accelerator) end with the adapter of one process at the same
global batch, for skill SFT and for learned CAT; FSDP, which accelerate runs only on GPUs, is
refused with a clear error. Each spawns Python processes (torch imports dominate the time)."""
from __future__ import annotations

import json
import os
import re
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
        def on_train_begin(self, args, state, control, **kw):
            from accelerate.state import AcceleratorState
            print(f"ENGINE {AcceleratorState().distributed_type.value}", flush=True)
        def on_step_end(self, args, state, control, **kw):
            time.sleep(float(os.environ.get("STEP_SLEEP", "0")))

    base, out = sys.argv[1], sys.argv[2]
    ds = Dataset.from_list([{"prompt": f"Q{i}: what is {i} times 7?\\n", "completion": f"{i * 7}"} for i in range(16)])
    cfg = SftConfig(r=4, lora_alpha=8, lora_dropout=float(os.environ.get("DROPOUT", "0.1")),
                    precision=os.environ.get("PRECISION", "fp32"),
                    max_steps=int(os.environ.get("MAX_STEPS", "8")),
                    per_device_train_batch_size=int(os.environ.get("BATCH", "2")), gradient_accumulation_steps=2,
                    warmup_steps=2,
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
    run_dir = _run_dir(run_root)
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

    run_dir = _kill_after_first_checkpoint(cmd, _env(killed_runs, STEP_SLEEP="0.5"), killed_runs, "adapter")

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


CAT_DRIVER = textwrap.dedent('''
    import json, os, sys, time
    from datasets import Dataset
    from transformers import TrainerCallback
    from lorasoups.training.soup import SoupTrainConfig, train_soup

    class Slow(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            time.sleep(float(os.environ.get("STEP_SLEEP", "0")))

    base, out, a, b = sys.argv[1:5]
    rows = [{"prompt": f"Item {i}: name a word.\\nAnswer:", "completion": " apple apple"} for i in range(10, 42)]
    cfg = SoupTrainConfig(learning_rate=5e-2, precision=os.environ.get("PRECISION", "fp32"), max_steps=int(os.environ.get("MAX_STEPS", "5")),
                          per_device_train_batch_size=int(os.environ["BATCH"]), gradient_accumulation_steps=1,
                          eval_points=5, max_length=32, logging_steps=1, trainer=json.loads(os.environ.get("TRAINER", "{}")))
    res = train_soup(os.environ.get("METHOD", "cat"), base, [a, b], Dataset.from_list(rows[:24]),
                     Dataset.from_list(rows[24:]), cfg, name="soup", callbacks=[Slow()])
    keys = ("best_step", "eval_loss_best", "eval_loss_before", "global_step", "resumed_from")
    print("SUMMARY " + json.dumps({k: res.summary[k] for k in keys}), flush=True)
''')


def _launch(config: str, script: Path, args: list[str], runs: Path, timeout: int = 400, **env: str):
    """``accelerate launch --config_file configs/accelerate/<config>.yaml`` with 2 processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(paths.CONFIGS / "accelerate" / f"{config}.yaml"), "--main_process_port", str(port), str(script), *args]
    return subprocess.run(cmd, env=_env(runs, **env), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_same_seed_and_config_give_identical_adapter_bytes(tiny_dir, tmp_path):
    """Determinism on CPU: two fresh processes, same seed and config (dropout on, 2 threads), write
    byte-identical adapter files and identical loss logs. No tolerance: fp32 on a fixed thread
    count is deterministic here (bf16 autocast's agreement is tested, with its tolerance, in
    test_training.py)."""
    import hashlib

    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    digests, losses = [], []
    for name in ("first", "second"):
        out = tmp_path / name
        out.mkdir()
        done = subprocess.run([sys.executable, str(script), str(tiny_dir), str(out)], capture_output=True, text=True,
                              env=_env(out / "runs", MAX_STEPS="4", OMP_NUM_THREADS="2"), timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        run_dir = _run_dir(out / "runs")
        digests.append(hashlib.sha256((run_dir / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest())
        losses.append([(r["step"], r["loss"]) for r in json.loads((run_dir / "log_history.json").read_text())
                       if "loss" in r])
    assert digests[0] == digests[1]
    assert losses[0] == losses[1] and len(losses[0]) == 4


@pytest.fixture(scope="module")
def one_process_sft(tiny_dir, tmp_path_factory):
    """The reference: one process at the global batch the 2-process runs reach (2 ranks x 2)."""
    tmp = tmp_path_factory.mktemp("one-process")
    script = tmp / "driver.py"
    script.write_text(DRIVER)
    done = subprocess.run([sys.executable, str(script), str(tiny_dir), str(tmp)], capture_output=True, text=True,
                          env=_env(tmp / "runs", MAX_STEPS="3", BATCH="4", DROPOUT="0"), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ENGINE NO" in done.stdout and "world=1" in done.stdout
    return load_file(str(tmp / "rank0.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize(("config", "engine", "atol"), [("ddp_cpu", "MULTI_CPU", 1e-5),
                                                        ("deepspeed_zero2_cpu", "DEEPSPEED", 1e-5),
                                                        ("deepspeed_zero3_cpu", "DEEPSPEED", 1e-5)])
def test_two_process_launch_equals_one_process_at_the_same_global_batch(config, engine, atol, tiny_dir, tmp_path,
                                                                         one_process_sft):
    """Measured max |difference| of the LoRA weights (max |weight| 0.13): DDP 6.3e-7, ZeRO-2 3.9e-6,
    ZeRO-3 2.0e-6 (its saved adapter gathers the sharded weights and equals rank 0's exactly)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    done = _launch(config, script, [str(tiny_dir), str(tmp_path)], tmp_path / "runs", MAX_STEPS="3", BATCH="2",
                   DROPOUT="0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count(f"ENGINE {engine}") == 2, done.stdout[-3000:]
    # found anywhere in the output: the two ranks share one pipe, so a line may start mid-line after
    # the other rank's unterminated output (seen once on a loaded machine: rank 0's line not at a line start)
    assert sorted(re.findall(r"DONE (rank=\d world=\d)", done.stdout)) == ["rank=0 world=2", "rank=1 world=2"], \
        done.stdout[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    saved = _adapter(tmp_path / "runs")
    assert sorted(r0) == sorted(r1) == sorted(one_process_sft) and len(r0) > 0
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
        torch.testing.assert_close(saved[key], r0[key], atol=0, rtol=0)
        torch.testing.assert_close(r0[key], one_process_sft[key], atol=atol, rtol=0)
    assert any(t.abs().sum() > 0 for k, t in r0.items() if "lora_B" in k)


@pytest.mark.slow
def test_fsdp_on_cpu_is_refused_not_run_as_something_else(tiny_dir, tmp_path):
    """accelerate sets FSDP up only on GPUs: on CPU the shipped FSDP config would silently run DDP."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    done = _launch("fsdp", script, [str(tiny_dir), str(tmp_path)], tmp_path / "runs", MAX_STEPS="2")
    assert done.returncode != 0
    assert "the launch asked for FSDP but accelerate set up MULTI_CPU (its FSDP needs a GPU)" in done.stderr
    assert not list(tmp_path.glob("rank*.safetensors")) and not list((tmp_path / "runs").glob("training/*/adapter"))


@pytest.mark.slow
def test_launch_whose_mixed_precision_disagrees_with_the_run_is_refused(tiny_dir, tmp_path):
    """ddp_cpu.yaml says mixed_precision 'no'; a bf16 run under it (what precision auto is on a CPU
    with bf16 hardware) used to train in bf16 anyway and, under DeepSpeed, save bf16 weights (CI)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    done = _launch("ddp_cpu", script, [str(tiny_dir), str(tmp_path)], tmp_path / "runs", MAX_STEPS="2",
                   PRECISION="bf16")
    assert done.returncode != 0
    assert "the accelerate launch config says mixed_precision: no, but the run's precision resolves to bf16" \
        in done.stderr, done.stderr[-3000:]
    assert not list(tmp_path.glob("rank*.safetensors")) and not list((tmp_path / "runs").glob("training/*/adapter"))


@pytest.mark.slow
def test_two_process_learned_cat_equals_one_process(tiny, tmp_path):
    """The alpha-only trainer under DDP: the same learned alphas and best step as one process (measured
    max |alpha difference| 6e-8). Before the step-0 evaluation moved inside train(), accelerate saw the
    model as already prepared, never wrapped it in DDP, and each rank learned alone (4e-3 apart here)."""
    from lora_factory import make_adapter

    model, _ = tiny
    a = make_adapter(model, tmp_path / "skill_a", r=4, alpha=8, seed=1)
    b = make_adapter(model, tmp_path / "skill_b", r=4, alpha=8, seed=2)
    script = tmp_path / "cat_driver.py"
    script.write_text(CAT_DRIVER)
    args = ["tiny-random-llama", str(tmp_path), str(a), str(b)]  # the base the adapters name
    one = subprocess.run([sys.executable, str(script), *args], env=_env(tmp_path / "one", BATCH="4"),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    two = _launch("ddp_cpu", script, args, tmp_path / "two", BATCH="2")
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]

    s1, s2 = _summary(one.stdout), _summary(two.stdout)
    assert s1["best_step"] == s2["best_step"] and s1["global_step"] == s2["global_step"] == 5
    assert s2["eval_loss_best"] == pytest.approx(s1["eval_loss_best"], rel=1e-5)  # measured 3e-6
    a1, a2 = _alphas(tmp_path / "one"), _alphas(tmp_path / "two")
    assert [(r["module"], r["skill"]) for r in a1] == [(r["module"], r["skill"]) for r in a2] and a1
    flat1, flat2 = torch.tensor([r["alpha"] for r in a1]), torch.tensor([r["alpha"] for r in a2])
    torch.testing.assert_close(flat2, flat1, atol=1e-5, rtol=0)
    assert (flat1 - 0.5).abs().max() > 1e-2  # alpha moved from its equal start


def _summary(out: str) -> dict:
    """The SUMMARY every rank prints, checked equal across ranks. Decoded where each starts, not line
    by line: two ranks writing to one pipe at once can put both on one line (seen once in CI-like runs)."""
    decoder, found = json.JSONDecoder(), []
    i = out.find("SUMMARY ")
    while i != -1:
        obj, end = decoder.raw_decode(out, i + len("SUMMARY "))
        found.append(obj)
        i = out.find("SUMMARY ", end)
    assert found and all(f == found[0] for f in found), found
    return found[0]


def _run_dir(runs: Path) -> Path:
    (run_dir,) = [p for p in (runs / "training").iterdir() if p.is_dir()]
    return run_dir


def _alphas(runs: Path) -> list[dict]:
    return json.loads((_run_dir(runs) / "alphas.json").read_text())


def _kill_after_first_checkpoint(cmd: list[str], env: dict[str, str], runs: Path, output: str) -> Path:
    """Start ``cmd``, SIGKILL it once a checkpoint is fully written, check that nothing claims
    completion (no ``COMPLETE``, no ``output`` folder); returns the run folder."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    marked: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        marked = list(runs.glob(f"training/*/checkpoints/checkpoint-*/{CHECKPOINT_OK}"))
        if marked:
            break
        time.sleep(0.05)
    assert marked, f"no checkpoint was written before the run ended:\n{proc.stdout.read() if proc.stdout else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run_dir = _run_dir(runs)
    assert not (run_dir / COMPLETE).exists() and not (run_dir / output).exists()
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cat", "moe"])
def test_sigkill_during_soup_learning_then_resume_equals_uninterrupted(method, tiny, tmp_path):
    """CAT's alphas / MoE's routers: a run killed after its first checkpoint resumes from it and ends
    with the same soup, best step and step-0 validation loss as a run never interrupted."""
    from lora_factory import make_adapter
    from safetensors.torch import load_file as load

    model, _ = tiny
    a = make_adapter(model, tmp_path / "skill_a", r=4, alpha=8, seed=1)
    b = make_adapter(model, tmp_path / "skill_b", r=4, alpha=8, seed=2)
    script = tmp_path / "soup_driver.py"
    script.write_text(CAT_DRIVER)
    cmd = [sys.executable, str(script), "tiny-random-llama", str(tmp_path), str(a), str(b)]
    common = {"METHOD": method, "BATCH": "4", "MAX_STEPS": "10"}
    killed, ref = tmp_path / "killed", tmp_path / "reference"
    _kill_after_first_checkpoint(cmd, _env(killed, STEP_SLEEP="0.5", **common), killed, "soup")
    resumed = subprocess.run(cmd, env=_env(killed, **common), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    reference = subprocess.run(cmd, env=_env(ref, **common), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    got, want = _summary(resumed.stdout), _summary(reference.stdout)
    assert got.pop("resumed_from") and want.pop("resumed_from") is None
    assert got == pytest.approx(want, abs=1e-6) and want["global_step"] == 10
    soup_got = load(str(_run_dir(killed) / "soup" / "soup_state.safetensors"))
    soup_want = load(str(_run_dir(ref) / "soup" / "soup_state.safetensors"))
    assert sorted(soup_got) == sorted(soup_want) and soup_want
    for key in soup_want:
        torch.testing.assert_close(soup_got[key], soup_want[key], atol=1e-6, rtol=0)
    steps = [r["step"] for r in json.loads((_run_dir(killed) / "log_history.json").read_text()) if "loss" in r]
    assert steps == list(range(1, 11))  # one train loss per step, none lost or repeated across the kill


SWEEP_DRIVER = textwrap.dedent('''
    import os, sys, time
    from lorasoups.evaluation.fastgen import FastGenConfig
    from lorasoups.models import load_base
    from lorasoups.sweep import GridConfig, InPlaceMerger, SweepConfig, run_sweep

    out, a, b = sys.argv[1:4]
    model, tok = load_base("tiny-random-llama", dtype="float32", device="cpu")
    prompts = ["Janet's ducks lay 16 eggs per day.", "Hi", "2 + 2 ="]
    cfg = SweepConfig(grid=GridConfig(density=[0.2, 1.0, 0.4], alpha=[1.0, 2.0, 1.0]),
                      generation=FastGenConfig(max_new_tokens=6, batch_size=3, eos_token_ids=[]))
    rows = run_sweep(InPlaceMerger(model, [a, b]), tok, "ties", prompts, ["x", "Hi there", "4"], task="qa",
                     out=out, config=cfg, progress=False,
                     on_point=lambda r: time.sleep(float(os.environ.get("POINT_SLEEP", "0"))))
    print(f"POINTS {len(rows)}", flush=True)
''')


@pytest.mark.slow
def test_sigkill_during_sweep_then_rerun_equals_uninterrupted(tiny, tmp_path):
    """A TIES sweep killed between (or while writing) points: the rerun computes only the missing
    points and its file equals an uninterrupted sweep's, line for line (timings aside)."""
    from lora_factory import make_adapter

    from lorasoups.sweep import read_sweep

    model, _ = tiny
    a = make_adapter(model, tmp_path / "skill_a", r=4, alpha=8, seed=11)
    b = make_adapter(model, tmp_path / "skill_b", r=4, alpha=4, seed=12)
    script = tmp_path / "sweep_driver.py"
    script.write_text(SWEEP_DRIVER)
    killed, ref = tmp_path / "killed.jsonl", tmp_path / "reference.jsonl"
    env = _env(tmp_path / "runs", POINT_SLEEP="1")
    proc = subprocess.Popen([sys.executable, str(script), str(killed), str(a), str(b)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if killed.is_file() and len(killed.read_text().splitlines()) >= 4:  # header + 3 points
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read() if proc.stdout else ""
    before = len(read_sweep(killed)[1])
    assert 3 <= before < 12
    rerun = subprocess.run([sys.executable, str(script), str(killed), str(a), str(b)], env=_env(tmp_path / "runs"),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "POINTS 12" in rerun.stdout, rerun.stderr[-3000:]
    reference = subprocess.run([sys.executable, str(script), str(ref), str(a), str(b)], env=_env(tmp_path / "runs"),
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]

    def strip(path: Path) -> list[dict]:
        header, rows = read_sweep(path)
        return [{k: v for k, v in header.items() if k != "created"}] + [
            {k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(killed) == strip(ref)
    assert len(killed.read_text().splitlines()) == 13  # header + 12 points, none doubled

"""Fast greedy generation for evaluation and merge sweeps: the same text as one-at-a-time greedy
``model.generate``, many times the throughput.

Why a hand-written decode loop instead of ``model.generate``: HF ``generate`` spends most of a
small model's step in Python (logits processors, stopping criteria, cache bookkeeping: 526 tokens/s
were measured for a batch of 64 on an H100 where the weights allow far more), keeps every
finished row in the batch, and cannot reuse one CUDA-graph-captured step across calls. The loop
below is plain greedy decoding (argmax, no processors), so there is nothing of ``generate`` to
reproduce beyond what the test checks: left padding, position ids from the attention mask, EOS.

What it does:

* prompts are tokenized once, sorted by length (longest first, so an out-of-memory shows up at
  once) and cut into batches: each batch is left-padded only to its own longest prompt;
* each row stops at EOS or at the first stop string (checked every ``check_every`` steps, one
  host sync each, not per token; the text is cut at the stop string as ``generation.generate``
  does, so the tokens generated past it change nothing);
* eager path (CPU, or CUDA without ``compile``): a dynamic KV cache, and finished rows are dropped
  from the batch (cache rows and all) once at most ``compact_below`` of it is still running;
* shared prefix (eager path): the token prefix all prompts of a batch have in common (a target's
  prompts share their demonstrations: ~90 % of an 8-shot PAL prompt) is run once, its KV cache
  repeated for every row, and each row's remaining tokens are left-padded after it (the padding
  sits between prefix and suffix, masked, with positions continuing from the prefix). The prefill
  of a batch then costs one prefix plus the suffixes instead of every row's whole prompt;
* CUDA graph path (``compile=True``, CUDA only): a static KV cache of one fixed length and batch
  shape, the decode step ``torch.compile(mode="reduce-overhead")`` captured once and replayed for
  every batch and every later call on the same :class:`FastGenerator` (a sweep changes the LoRA
  weights in place with ``copy_``, so the captured graphs stay valid). Finished rows stay in the
  batch (a 135 M model's step costs about the same at any batch size on the GPU: it is bound by
  reading the weights). If compiling fails, the batch is redone eagerly with a warning;
* the batch size is ``batch_size`` when given, else on CUDA the largest that fits the free
  memory by a KV-cache + activation estimate, on CPU 16.

``generate_auto`` (what ``tasks.evaluate`` calls) has ``generation.generate``'s signature and sends
greedy configs here, sampling configs to ``generation.generate``; keep one :class:`FastGenerator`
per model to reuse its compiled step across calls.
"""
from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lorasoups.evaluation.generation import _cut, _device_of


@dataclass
class FastGenConfig:
    """Greedy decoding settings of :func:`generate` (the sampling knobs of
    ``generation.GenerationConfig`` have no meaning here: decoding is argmax)."""

    max_new_tokens: int = 200
    """Upper bound on generated tokens per prompt (the paper: 200)."""
    stop_strings: list[str] = field(default_factory=list)
    """A row stops at the first of these; its text is cut there (as ``generation.generate`` does)."""
    eos_token_ids: list[int] | None = None
    """Tokens that end a row; None: the model's ``generation_config.eos_token_id`` (what
    ``model.generate`` uses), else the tokenizer's EOS."""
    batch_size: int | None = None
    """Rows per batch; None: the largest that fits on CUDA (memory estimate), 16 on CPU."""
    max_batch_size: int = 256
    """Upper bound of the automatic batch size."""
    memory_fraction: float = 0.8
    """Share of the free GPU memory the automatic batch size may plan for."""
    compile: bool = False
    """CUDA only: static KV cache + ``torch.compile`` of the decode step (CUDA graphs)."""
    compile_mode: str | None = "reduce-overhead"
    """``torch.compile`` mode; "reduce-overhead" captures CUDA graphs."""
    compile_backend: str = "inductor"
    """``torch.compile`` backend ("eager" traces with dynamo only: lets CPU tests exercise the path)."""
    static_cache: bool | None = None
    """Static KV cache of one length for every batch (None: exactly when compiling)."""
    allow_cpu_compile: bool = False
    """Let ``compile`` run on CPU (tests of the traced path); off, ``compile`` on CPU is ignored."""
    check_every: int = 8
    """Steps between checks for finished rows (each check is one device-to-host copy)."""
    compact_below: float = 0.5
    """Dynamic cache: drop finished rows once at most this share of the batch is still running."""
    cache_len_multiple: int = 64
    """Static cache length is rounded up to this (fewer distinct shapes, fewer recompiles)."""
    share_prefix: bool = True
    """Dynamic cache: run the tokens every prompt of a batch starts with (the few-shot
    demonstrations of a target's prompts) once, and give every row that KV cache (full-attention
    models only: :func:`full_attention_only`)."""
    min_shared_prefix: int = 16
    """Shortest common prefix (tokens) worth sharing."""

    @classmethod
    def from_generation(cls, cfg: Any, **overrides: Any) -> FastGenConfig:
        """The fast equivalent of a ``generation.GenerationConfig``: refuses sampling configs,
        whose outputs a greedy decoder cannot reproduce."""
        if not getattr(cfg, "greedy", False) or getattr(cfg, "num_beams", 1) != 1:
            raise ValueError(
                "fastgen decodes greedily with one beam: use GenerationConfig(greedy=True, num_beams=1), "
                "or generation.generate for the paper's sampling"
            )
        kw: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "stop_strings": list(cfg.stop_strings)}
        kw.update(overrides)
        return cls(**kw)


@dataclass
class GenStats:
    """What the last call did (benchmarks read it)."""

    prompts: int = 0
    batches: int = 0
    steps: int = 0
    """Decode steps summed over batches."""
    tokens: int = 0
    """Generated tokens that count: up to and including EOS, or up to the stop check that ended the row."""
    seconds: float = 0.0
    batch_size: int = 0
    compiled: bool = False
    per_prompt_tokens: list[int] = field(default_factory=list)
    shared_prefix_tokens: list[int] = field(default_factory=list)
    """Per batch: the prefix tokens run once for all its rows (0: none shared)."""


def _lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers causal LM inside a PeftModel (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _cache_kwarg(model: torch.nn.Module) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated)."""
    params = inspect.signature(_lm(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(out: Any) -> Any:
    c = getattr(out, "cache", None)
    return c if c is not None else getattr(out, "past_key_values", None)


def eos_ids(model: torch.nn.Module, tokenizer, cfg: FastGenConfig) -> list[int]:
    """EOS tokens as ``model.generate`` sees them (generation_config first)."""
    if cfg.eos_token_ids is not None:
        return [int(i) for i in cfg.eos_token_ids]
    gc = getattr(model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None) if gc is not None else None
    if eos is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def full_attention_only(model: torch.nn.Module) -> bool:
    """True when every layer attends to the whole sequence. Sliding-window and chunked attention
    count their window in cache slots, not positions, so padding placed after a shared prefix
    would shorten a row's window: the prefix is not shared for such models (Gemma 3, say)."""
    c = _lm(model).config
    c = c.get_text_config(decoder=True) if hasattr(c, "get_text_config") else c
    if getattr(c, "sliding_window", None) or getattr(c, "attention_chunk_size", None):
        return False
    return all(t == "full_attention" for t in (getattr(c, "layer_types", None) or ["full_attention"]))


def common_prefix_len(token_lists: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix every list starts with."""
    first = token_lists[0]
    n = min(len(t) for t in token_lists)
    for i in range(n):
        tok = first[i]
        if any(t[i] != tok for t in token_lists):
            return i
    return n


def auto_batch_size(model: torch.nn.Module, prompt_len: int, cfg: FastGenConfig, n_prompts: int) -> int:
    """Rows per batch: ``cfg.batch_size``, else on CUDA what fits ``memory_fraction`` of the free
    memory (KV cache of the whole sequence + prefill activations, a deliberately generous
    estimate), else 16."""
    if cfg.batch_size is not None:
        if cfg.batch_size < 1:
            raise ValueError(f"fastgen: batch_size must be >= 1, got {cfg.batch_size}")
        return cfg.batch_size
    device = _device_of(model)
    if device.type != "cuda":
        return max(1, min(16, n_prompts))
    c = _lm(model).config
    c = c.get_text_config(decoder=True) if hasattr(c, "get_text_config") else c
    elt = next(model.parameters()).element_size()
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    total = prompt_len + cfg.max_new_tokens
    kv = 2 * c.num_hidden_layers * kv_heads * head_dim * elt * total
    # prefill: a few hidden/MLP-wide activations per token, attention scores (eager worst case,
    # fp32), one row of fp32 logits
    mlp = getattr(c, "intermediate_size", None) or 4 * c.hidden_size
    act = prompt_len * (4 * c.hidden_size + 3 * mlp) * elt + heads * prompt_len * prompt_len * 4
    per_row = kv + act + 2 * c.vocab_size * 4
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # torch's cached blocks
    fit = int(free * cfg.memory_fraction // per_row)
    return max(1, min(cfg.max_batch_size, fit, n_prompts))


class FastGenerator:
    """Greedy batched decoding bound to one model; keeps static caches and the compiled step
    between calls (that is what makes a sweep's 216 evaluations cheap)."""

    def __init__(self, model: torch.nn.Module, tokenizer, config: FastGenConfig | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or FastGenConfig()
        if tokenizer.pad_token_id is None:
            raise ValueError("fastgen: the tokenizer has no pad token (load it with lorasoups.models.load_base)")
        if self.config.max_new_tokens < 1:
            raise ValueError(f"fastgen: max_new_tokens must be >= 1, got {self.config.max_new_tokens}")
        if self.config.check_every < 1:
            raise ValueError(f"fastgen: check_every must be >= 1, got {self.config.check_every}")
        self.device = _device_of(model)
        self._cache_kw = _cache_kwarg(model)
        self._full_attention = full_attention_only(model)
        want_compile = self.config.compile and (self.device.type == "cuda" or self.config.allow_cpu_compile)
        self.compile = bool(want_compile)
        self.static = self.compile if self.config.static_cache is None else bool(self.config.static_cache)
        self._step_fn: Any = None
        self._caches: dict[tuple[int, int], Any] = {}
        self._batch_sizes: dict[tuple[int, int], int] = {}
        self.stats = GenStats()

    # ------------------------------------------------------------------ model calls
    def _forward(self, ids, mask, pos, cache):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         logits_to_keep=1, **{self._cache_kw: cache})
        return out, out.logits[:, -1, :].argmax(dim=-1)

    def _decode_step(self, ids, mask, pos, cache):
        return self._forward(ids, mask, pos, cache)[1]

    def _compiled_step(self):
        if self._step_fn is None:
            self._step_fn = torch.compile(self._decode_step, mode=self.config.compile_mode,
                                          backend=self.config.compile_backend, dynamic=False)
        return self._step_fn

    def _static_cache(self, rows: int, length: int):
        from transformers import StaticCache

        key = (rows, length)
        cache = self._caches.get(key)
        if cache is None:
            cache = StaticCache(config=_lm(self.model).config, max_cache_len=length)
            self._caches[key] = cache
        else:
            cache.reset()  # zeroes in place: the addresses CUDA graphs captured stay valid
        return cache

    # ------------------------------------------------------------------ one batch
    def _run_batch(self, token_lists: list[list[int]], n_real: int, eos: set[int], cache_len: int | None,
                   compiled: bool) -> tuple[list[list[int]], int]:
        """Decode one batch; returns each real row's new tokens (cut after EOS) and the steps run."""
        cfg = self.config
        rows = len(token_lists)
        lp = max(len(t) for t in token_lists)
        total = lp + cfg.max_new_tokens
        width = cache_len if self.static else total
        pad = self.tokenizer.pad_token_id
        # shared prefix: every row keeps at least one token of its own to prefill
        shared = 0
        if not self.static and cfg.share_prefix and rows > 1 and self._full_attention:
            shared = min(common_prefix_len(token_lists), min(len(t) for t in token_lists) - 1)
            if shared < cfg.min_shared_prefix:
                shared = 0
        ids = torch.full((rows, lp - shared), pad, dtype=torch.long)
        mask = torch.ones((rows, width), dtype=torch.long)
        for r, toks in enumerate(token_lists):
            ids[r, lp - len(toks):] = torch.tensor(toks[shared:], dtype=torch.long)
            mask[r, shared: shared + lp - len(toks)] = 0  # the padding sits after the shared prefix
        ids, mask = ids.to(self.device), mask.to(self.device)
        real_len = mask[:, :lp].sum(-1)
        pos = (mask[:, :lp].cumsum(-1) - 1).clamp_(min=0)[:, shared:]  # pads: masked, any position
        cache = self._static_cache(rows, width) if self.static else None
        if shared:
            prefix = torch.tensor([token_lists[0][:shared]], dtype=torch.long, device=self.device)
            out = self.model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True,
                             logits_to_keep=1, **{self._cache_kw: None})
            cache = _out_cache(out)
            del out
            cache.batch_repeat_interleave(rows)
        self.stats.shared_prefix_tokens.append(shared)
        gen = torch.empty((rows, cfg.max_new_tokens), dtype=torch.long, device=self.device)
        stops = [s for s in cfg.stop_strings if s]
        out_tokens: list[list[int]] = [[] for _ in range(rows)]
        alive = list(range(rows))  # original row of each current batch row
        done = [False] * rows
        for r in range(n_real, rows):  # filler rows of a static batch never count
            done[r] = True

        out, nxt = self._forward(ids, mask[:, :lp] if not self.static else mask, pos, cache)
        if cache is None:
            cache = _out_cache(out)
        del out
        gen[:, 0] = nxt
        checked = 0
        step = 1
        step_fn = self._compiled_step() if compiled else self._decode_step
        sync = compiled and self.device.type == "cuda" and cfg.compile_mode == "reduce-overhead"
        while True:
            if step == cfg.max_new_tokens or step % cfg.check_every == 0:
                # ---- one host sync: collect tokens, find finished rows
                fresh = gen[:, checked:step].tolist()
                checked = step
                for b, orig in enumerate(alive):
                    if done[orig]:
                        continue
                    toks = out_tokens[orig]
                    first_new = len(toks)
                    toks.extend(fresh[b])
                    hit = next((i for i in range(first_new, len(toks)) if toks[i] in eos), None)
                    if hit is not None:
                        del toks[hit + 1:]
                        done[orig] = True
                    elif stops and self._stopped(toks, len(fresh[b]), stops):
                        done[orig] = True
                running = [b for b, orig in enumerate(alive) if not done[orig]]
                if not running or step == cfg.max_new_tokens:
                    break
                if not self.static and len(running) <= cfg.compact_below * len(alive):
                    keep = torch.tensor(running, device=self.device)
                    cache.batch_select_indices(keep)
                    gen, mask, real_len = gen[keep], mask[keep], real_len[keep]
                    alive = [alive[b] for b in running]
            # ---- one decode step for every row in the batch
            cur_pos = (real_len + (step - 1)).unsqueeze(1)
            cur_mask = mask if self.static else mask[:, : lp + step]
            if sync:
                torch.compiler.cudagraph_mark_step_begin()
            nxt = step_fn(gen[:, step - 1 : step], cur_mask, cur_pos, cache)
            gen[:, step] = nxt
            step += 1
        return out_tokens[:n_real], step

    def _stopped(self, toks: list[int], n_new: int, stops: list[str]) -> bool:
        """Did a stop string appear? Decodes only the tail (new tokens plus a margin longer than
        any stop string), then confirms on the full text: stopping early on a false hit would
        cut the answer, a missed hit only costs a few more tokens (the text is cut later anyway)."""
        margin = 2 * max(len(s) for s in stops) + 8
        tail = self.tokenizer.decode(toks[-(n_new + margin):], skip_special_tokens=True)
        if not any(s in tail for s in stops):
            return False
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        return any(s in text for s in stops)

    # ------------------------------------------------------------------ public
    def generate(self, prompts: Sequence[str], progress: bool = True) -> list[str]:
        """One completion per prompt, in the prompts' order (prompt excluded, special tokens dropped,
        cut at the first stop string): the same text as greedy ``generation.generate``."""
        if isinstance(prompts, str):
            raise TypeError("fastgen.generate: prompts must be a sequence of strings, not one string")
        cfg = self.config
        start = time.perf_counter()
        self.stats = GenStats(prompts=len(prompts), compiled=self.compile)
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts))["input_ids"]  # as tokenizer(..., padding=True) would
        order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
        longest = len(encoded[order[0]])
        # decided once per workload: after the first call the static caches occupy memory, and a
        # smaller batch would mean a new cache shape, a recompile and more memory
        memo = (longest, len(prompts))
        if memo not in self._batch_sizes:
            self._batch_sizes[memo] = auto_batch_size(self.model, longest, cfg, len(prompts))
        bs = self._batch_sizes[memo]
        self.stats.batch_size = bs
        cache_len = None
        if self.static:
            m = max(1, cfg.cache_len_multiple)
            cache_len = math.ceil((longest + cfg.max_new_tokens) / m) * m
        eos = set(eos_ids(self.model, self.tokenizer, cfg))
        batches = [order[i: i + bs] for i in range(0, len(order), bs)]
        iterator: Any = batches
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc="fastgen", leave=False)
        texts: list[str] = [""] * len(prompts)
        counts: list[int] = [0] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for idx in iterator:
                    lists = [encoded[i] for i in idx]
                    n_real = len(lists)
                    if self.static and n_real < bs:  # fixed shapes: fill with copies, ignored
                        lists = lists + [lists[0]] * (bs - n_real)
                    new, steps = self._batch(lists, n_real, eos, cache_len)
                    self.stats.batches += 1
                    self.stats.steps += steps
                    for i, toks in zip(idx, new):
                        counts[i] = len(toks)
                        texts[i] = _cut(self.tokenizer.decode(toks, skip_special_tokens=True), cfg.stop_strings)
        finally:
            if was_training:
                self.model.train()
        self.stats.tokens = sum(counts)
        self.stats.per_prompt_tokens = counts
        self.stats.seconds = time.perf_counter() - start
        return texts

    def _batch(self, lists, n_real, eos, cache_len):
        if not self.compile:
            return self._run_batch(lists, n_real, eos, cache_len, compiled=False)
        try:
            return self._run_batch(lists, n_real, eos, cache_len, compiled=True)
        except Exception as exc:  # compiler/graph capture failures: redo this batch eagerly
            warnings.warn(f"fastgen: compiled decoding failed ({type(exc).__name__}: {exc}); "
                          f"falling back to eager decoding", RuntimeWarning, stacklevel=3)
            self.compile = False
            self.stats.compiled = False
            self._step_fn = None
            return self._run_batch(lists, n_real, eos, cache_len, compiled=False)


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    config: FastGenConfig | None = None,
    progress: bool = True,
) -> list[str]:
    """Drop-in for greedy ``generation.generate``: same arguments, same texts, faster.

    Build a :class:`FastGenerator` instead when calling repeatedly on one model (the compiled step
    and static caches are kept on it).
    """
    return FastGenerator(model, tokenizer, config).generate(prompts, progress=progress)


def generate_auto(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    config: Any = None,
    progress: bool = True,
    **overrides: Any,
) -> list[str]:
    """``generation.generate``'s signature, routed: greedy one-beam configs go to fastgen (same
    texts, faster; on CUDA with the automatic batch size unless ``batch_size`` is overridden),
    sampling configs to ``generation.generate`` (fastgen cannot reproduce HF's sampling)."""
    from lorasoups.evaluation.generation import GenerationConfig
    from lorasoups.evaluation.generation import generate as hf_generate

    cfg = config or GenerationConfig()
    if not cfg.greedy or cfg.num_beams != 1:
        return hf_generate(model, tokenizer, prompts, cfg, progress=progress)
    if "batch_size" not in overrides:
        overrides["batch_size"] = None if _device_of(model).type == "cuda" else cfg.batch_size
    return generate(model, tokenizer, prompts, FastGenConfig.from_generation(cfg, **overrides), progress=progress)


__all__ = ["FastGenConfig", "FastGenerator", "GenStats", "auto_batch_size", "common_prefix_len", "eos_ids",
           "full_attention_only", "generate", "generate_auto"]

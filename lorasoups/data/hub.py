"""The Hugging Face hub source: the paper's real dataset ids through ``datasets.load_dataset``.

Offline (our machines, air-gapped clusters) the hub must fail *fast*: we check the standard
offline switches and a 1-second TCP connect before ever calling ``load_dataset``, whose own
retries can take minutes.
"""
from __future__ import annotations

import functools
import os
import socket
import threading
from typing import Any

from lorasoups.data import formatting as F
from lorasoups.data.errors import DataError
from lorasoups.data.registry import Entry

Pools = dict[str, list[dict[str, Any]]]
HUB_HOST = "huggingface.co"


class HubSchemaError(DataError):
    """The hub answered, but its records are not shaped as the adapter expects."""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def _can_connect(host: str = HUB_HOST, timeout: float = 1.0) -> str | None:
    """None when the hub host accepts a TCP connection, else the reason (cached per process).

    The connect runs in a daemon thread because the socket timeout does not cover the DNS lookup,
    which on a cluster with a dead resolver can hang for many seconds.
    """
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(None)
        except OSError as exc:
            result.append(f"cannot reach {host}:443 ({exc.__class__.__name__}: {exc})")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return result[0] if result else f"no answer from {host}:443 within {timeout + 0.5:.1f} s"


def unavailable_reason() -> str | None:
    """Why the hub cannot be used right now, or None when it looks reachable."""
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "LORASOUPS_NO_HUB"):
        if _truthy(var):
            return f"{var} is set"
    return _can_connect()


def _sft(rows: Any, instruction: str, output: str, input: str | None = None, prefix: str = "") -> list[dict]:
    return [F.sft_record(f"{prefix}{i}", r[instruction], r[output], r[input] if input else "")
            for i, r in enumerate(rows)]


def _gsm8k(rows: Any, prefix: str) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        solution, final = F.clean_gsm8k_solution(r["answer"])
        out.append({**F.sft_record(f"{prefix}{i}", r["question"], solution), "question": r["question"],
                    "answer": final, "target": float(final)})
    return out


def _squad(rows: Any, prefix: str) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        answers = r["answers"]["text"]
        ans = answers[0] if answers else F.NOT_IN_CONTEXT
        out.append(F.sft_record(f"{prefix}{i}", F.rc_instruction(r["context"], r["question"]), ans))
    return out


def _gsm_hard(rows: Any, prefix: str) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        code = r["code"].strip("\n")
        out.append({"id": f"{prefix}{i}", "instruction": r["input"], "prompt": "", "completion": F.pal_completion(code),
                    "question": r["input"], "answer": F.format_number(float(r["target"])),
                    "target": float(r["target"]), "code": code})
    return out


#: entry name -> (hub split -> our pool, adapter(rows, id_prefix) -> records)
ADAPTERS = {
    "metamathqa": ({"train": "train"}, lambda rows, p: _sft(rows, "query", "response", prefix=p)),
    "gsm8k": ({"train": "train", "test": "test"}, _gsm8k),
    "code_alpaca": ({"train": "train"}, lambda rows, p: _sft(rows, "instruction", "output", "input", prefix=p)),
    "alpaca": ({"train": "train"}, lambda rows, p: _sft(rows, "instruction", "output", "input", prefix=p)),
    "squad": ({"train": "train", "validation": "validation"}, _squad),
    "gsm_hard": ({"train": "test"}, _gsm_hard),
}


def read(entry: Entry, split: str) -> tuple[Pools, str]:
    """Pools for ``entry`` from the hub and the dataset revision string; DataError when unavailable."""
    if not entry.hub_id or entry.name not in ADAPTERS:
        raise DataError(f"dataset '{entry.name}' has no hub source ({entry.missing or 'none known'})")
    reason = unavailable_reason()
    if reason:
        raise DataError(f"dataset '{entry.name}': hub '{entry.hub_id}' unavailable: {reason}")
    import datasets

    split_map, adapt = ADAPTERS[entry.name]
    pools: Pools = {}
    revision = ""
    for hub_split, pool in split_map.items():
        try:
            ds = datasets.load_dataset(entry.hub_id, entry.hub_config, split=hub_split)
        except Exception as exc:  # any hub/network/format failure becomes one clear message
            raise DataError(f"dataset '{entry.name}': loading hub '{entry.hub_id}' split '{hub_split}' failed: "
                            f"{exc.__class__.__name__}: {exc}") from exc
        revision = revision or str(getattr(ds.info, "version", "") or ds._fingerprint)
        try:
            pools[pool] = adapt(ds, f"hub:{entry.hub_id}:{hub_split}:")
        except (KeyError, TypeError, ValueError) as exc:
            # not SourceUnavailable: a hub dataset whose schema changed must stop the run, not fall through
            raise HubSchemaError(f"dataset '{entry.name}': hub '{entry.hub_id}' split '{hub_split}' does not have "
                                 f"the expected fields: {exc.__class__.__name__}: {exc}") from exc
    return pools, revision

"""Write a Hugging Face Llama-architecture model, e.g. a soup folded and merged into the base, as a
GGUF file that llama.cpp runs: the CPU inference anchor of the speed benchmarks.

Why a writer of our own: llama.cpp's converter (``convert_hf_to_gguf.py``) ships with llama.cpp's
sources, not with the packages installed here (``gguf``, ``llama-cpp-python``). For a model that
came from a GGUF, what it does is small, and this module does only that, with the ``gguf``
package's own pieces:
- the metadata and tokenizer of the GGUF the base came from are copied as they are (the way gguf's
  ``gguf_new_metadata`` script copies them), with ``general.file_type`` set to the new precision;
- tensors get their GGUF names from ``gguf``'s ``TensorNameMap``;
- the query and key projections are permuted to llama.cpp's rotary layout, which is the inverse of
  the permutation transformers undoes when it loads a GGUF.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: the precisions a tensor of two or more dimensions can be written in (norms stay F32)
DTYPES = {"f32": ("F32", "ALL_F32", np.float32), "f16": ("F16", "MOSTLY_F16", np.float16)}


class GGUFExportError(ValueError):
    """A model or template this writer cannot turn into a GGUF (named in the message)."""


def permute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's layout of a query or key projection (its converter's ``permute``): within each
    head the two halves of the rotary dimensions are interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        raise GGUFExportError(f"{reader.data.filename}: metadata '{key}' missing")
    return field.contents()


def write_gguf(model: Any, template: str | Path, out: str | Path, dtype: str = "f32") -> Path:
    """Write ``model`` (a plain transformers model: merge a PEFT model first) as ``out``, with the
    metadata and tokenizer of ``template`` (the GGUF the base was converted from). Written to a
    temporary sibling and renamed into place."""
    import gguf

    if dtype not in DTYPES:
        raise GGUFExportError(f"dtype '{dtype}': expected one of {sorted(DTYPES)}")
    if hasattr(model, "peft_config"):
        raise GGUFExportError("a PEFT model: merge its adapter into the base first (merge_and_unload)")
    template, out = Path(template), Path(out)
    reader = gguf.GGUFReader(template)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise GGUFExportError(f"{template}: architecture '{arch}'; this writer knows the Llama layout only")
    n_blocks = int(_field(reader, f"{arch}.block_count"))
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    state = model.state_dict()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    gguf_name: dict[str, str] = {}
    for key in state:
        if tied and key == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when the GGUF has no output tensor
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GGUFExportError(f"tensor '{key}' has no GGUF name in the Llama layout")
        gguf_name[name] = key
    expected = {t.name for t in reader.tensors}
    if set(gguf_name) != expected:
        raise GGUFExportError(f"tensors differ from {template.name}: missing {sorted(expected - set(gguf_name))[:5]}, "
                              f"extra {sorted(set(gguf_name) - expected)[:5]}")
    mismatched = [t.name for t in reader.tensors if tuple(state[gguf_name[t.name]].shape) != tuple(reversed(
        [int(d) for d in t.shape]))]
    if mismatched:
        raise GGUFExportError(f"tensor shapes differ from {template.name}: {mismatched[:5]}")
    tensors: dict[str, np.ndarray] = {}
    for name, key in gguf_name.items():
        arr = state[key].detach().to("cpu").float().numpy()
        if name.endswith(("attn_q.weight", "attn_q.bias")):  # as llama.cpp's converter: biases too
            arr = permute_rotary(arr, n_head)
        elif name.endswith(("attn_k.weight", "attn_k.bias")):
            arr = permute_rotary(arr, n_kv)
        tensors[name] = arr
    kind, file_type, np_dtype = DTYPES[dtype]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
        if alignment is not None:  # the data offsets follow the template's alignment (as gguf_new_metadata)
            writer.data_alignment = int(alignment.contents())
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue  # the writer adds these itself
            vtype = gguf.GGUFValueType(field.types[0])
            if field.name == gguf.Keys.General.FILE_TYPE:
                writer.add_key_value(field.name, int(getattr(gguf.LlamaFileType, file_type)), vtype)
                continue
            sub_type = gguf.GGUFValueType(field.types[-1]) if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
        for t in reader.tensors:  # the template's order
            arr = tensors[t.name]
            if arr.ndim >= 2:
                writer.add_tensor(t.name, arr.astype(np_dtype), raw_dtype=getattr(gguf.GGMLQuantizationType, kind))
            else:
                writer.add_tensor(t.name, arr.astype(np.float32), raw_dtype=gguf.GGMLQuantizationType.F32)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        Path(tmp).unlink(missing_ok=True)  # no partial file of hundreds of MB left beside ``out``
        raise
    writer.close()
    os.replace(tmp, out)
    return out


__all__ = ["DTYPES", "GGUFExportError", "permute_rotary", "write_gguf"]

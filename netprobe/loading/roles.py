"""Transformer (and CNN) weight names read as ``(block, role)``, and the name rules that
decide how a tensor is viewed as matrices: natural numeric order, GPT-2 ``Conv1D``
orientation (stored in x out), fused ``qkv_proj`` / ``Wqkv`` / ``c_attn`` split into q, k
and v from ``config.json`` (grouped-query attention), packed quantised tensors, and an LM
head tied to the embeddings. docs/design.md ("Hugging Face checkpoints and streaming").

These are name conventions, not guesses about values: Llama / Mistral / Qwen
(``q_proj`` … ``down_proj``), GPT-2 (``c_attn``, ``c_proj``, ``c_fc``), BERT (``query``,
``key``, ``value``, ``dense``), Mixtral / Qwen-MoE experts (``experts.E.w1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_NUM = re.compile(r"(\d+)")

#: the container names whose numeric child is a transformer block / a CNN stage
_BLOCK = re.compile(
    r"(?:^|\.)(?:layers|layer|h|_?blocks|block|decoder\.layers|encoder\.layer|stages|features)\.(\d+)(?:\.|$)"
)
_STAGE = re.compile(r"(?:^|\.)layer(\d+)(?:\.|$)")  # torchvision ResNet stages: layer1..layer4
_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")

#: parameter-name endings of packed quantised formats (GPTQ / AWQ / bitsandbytes / int8)
_QUANT_STATE = re.compile(
    r"\.weight\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\..*)$"
)

#: GPT-2 modules that are transformers' Conv1D (weight stored in x out)
CONV1D_NAMES = ("c_attn", "c_proj", "c_fc")
#: fused attention projections split into q, k, v
# (GPT-NeoX / Falcon ``query_key_value`` interleave q, k, v per head: not split here)
FUSED_QKV = ("qkv_proj", "Wqkv", "c_attn", "qkv")
#: fused MLP projections split in half (Phi-3)
FUSED_GATE_UP = ("gate_up_proj",)


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key with numbers compared as numbers: ``layers.2`` before ``layers.10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _NUM.split(name) if p)


def block_index(key: str) -> int | None:
    """The block (transformer layer, CNN stage) a tensor belongs to, from its module path."""
    m = _BLOCK.search(key)
    if m:
        return int(m.group(1))
    m = _STAGE.search(key)
    return int(m.group(1)) if m else None


def role(key: str) -> str:
    """The tensor's role within its block: the module name after the block index
    (``self_attn.q_proj`` -> ``q_proj``; ``attention.self.query`` -> ``query``; an expert's
    ``experts.3.w1`` -> ``experts.w1``), ``embed`` / ``lm_head`` outside blocks."""
    module, _, pname = key.rpartition(".")
    parts = module.split(".") if module else [pname]
    low = key.lower()
    if "embed" in low or "wte" in parts or "wpe" in parts or "word_embeddings" in low:
        return "embed"
    if parts[-1] in ("lm_head", "output", "embed_out") and block_index(key) is None:
        return "lm_head"
    m = _EXPERT.search(key)
    if m:
        return f"experts.{key[m.end() :].rpartition('.')[0] or pname}"
    last = parts[-1]
    # BERT's "attention.output.dense" vs "output.dense": keep the parent to tell them apart
    if last == "dense" and len(parts) >= 2 and parts[-2] in ("output", "intermediate"):
        parent = parts[-3] if parts[-2] == "output" and len(parts) >= 3 else ""
        return (
            f"{parent}.{parts[-2]}.dense".lstrip(".")
            if parent == "attention"
            else f"{parts[-2]}.dense"
        )
    return last


def is_conv1d(
    key: str, shape: tuple[int, ...], config: Mapping[str, Any] | None, kind: str
) -> bool:
    """Whether a 2-D weight is stored in x out (transformers' ``Conv1D``, GPT-2 family):
    the module says so, or ``config.json`` is GPT-2's, or (no config) a ``c_attn`` stored
    d x 3d marks the model as GPT-2 layout."""
    if len(shape) != 2 or not key.endswith(".weight"):
        return False
    if kind == "Conv1D":
        return True
    name = key.rpartition(".")[0].rpartition(".")[2]
    if name not in CONV1D_NAMES:
        return False
    mt = str((config or {}).get("model_type", ""))
    if mt:
        return mt == "gpt2"
    return False


def gpt2_layout(keys: Iterable[str], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """No config: GPT-2 layout when a ``c_attn.weight`` is stored d x 3d (in x out)."""
    for k in keys:
        if k.endswith("c_attn.weight"):
            s = shapes[k]
            return len(s) == 2 and s[1] == 3 * s[0]
    return False


def _heads(config: Mapping[str, Any]) -> tuple[int | None, int | None, int | None]:
    cfg = dict(config)
    cfg.update(cfg.get("text_config") or {}) if isinstance(cfg.get("text_config"), dict) else None
    heads = cfg.get("num_attention_heads") or cfg.get("n_head") or cfg.get("n_heads")
    kv = cfg.get("num_key_value_heads") or cfg.get("n_kv_heads") or cfg.get("multi_query_group_num")
    hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    hd = cfg.get("head_dim")
    if hd is None and heads and hidden:
        hd = int(hidden) // int(heads)
    return (
        int(heads) if heads else None,
        int(kv) if kv else (int(heads) if heads else None),
        int(hd) if hd else None,
    )


def fused_split(
    key: str, rows: int, config: Mapping[str, Any] | None
) -> list[tuple[str, tuple[int, int]]] | None:
    """Row blocks of a fused projection (rows = outputs, after any Conv1D transpose):
    q, k, v from the numbers of heads and key/value heads (``config.json``), equal thirds
    when the config says nothing; gate / up halves for ``gate_up_proj``. None: not fused."""
    if not key.endswith(".weight"):
        return None
    name = key.rpartition(".")[0].rpartition(".")[2]
    if name in FUSED_GATE_UP and rows % 2 == 0:
        h = rows // 2
        return [("gate", (0, h)), ("up", (h, rows))]
    if name not in FUSED_QKV:
        return None
    heads, kv, hd = _heads(config or {})
    if heads and kv and hd and (heads + 2 * kv) * hd == rows:
        q, k = heads * hd, kv * hd
        return [("q", (0, q)), ("k", (q, q + k)), ("v", (q + k, rows))]
    if rows % 3 == 0:
        d = rows // 3
        return [("q", (0, d)), ("k", (d, 2 * d)), ("v", (2 * d, rows))]
    return None


def quantised_reason(
    key: str, keys: Iterable[str] | set[str], floating: bool = False
) -> str | None:
    """Why a tensor is part of a packed quantised layer, or None: GPTQ/AWQ ``qweight`` /
    ``qzeros`` / ``g_idx`` (and ``scales`` beside a ``qweight``), bitsandbytes 4-bit state
    (``weight.absmax``, ``weight.quant_map``, ``weight.quant_state.*``) and int8 ``SCB``, and
    an integer ``weight`` stored with such scales. A floating ``weight`` beside a scale
    (float8 with ``weight_scale``) is not packed: it is read and upcast. Packed tensors are
    never read as if they were matrices."""
    ks = keys if isinstance(keys, set) else set(keys)
    module, _, pname = key.rpartition(".")
    why = "packed quantised weights: dequantize first"
    if _QUANT_STATE.search(key) or pname in ("qweight", "qzeros", "g_idx", "SCB"):
        return why
    if pname == "scales" and f"{module}.qweight" in ks:
        return why
    if pname == "weight" and not floating:
        siblings = (
            "SCB",
            "weight_scale",
            "weight.absmax",
            "weight.quant_state.bitsandbytes__nf4",
            "weight.quant_state.bitsandbytes__fp4",
        )
        if any(f"{module}.{s}" in ks for s in siblings):
            return why
    return None


def tied_head(key: str, keys: Iterable[str], config: Mapping[str, Any] | None) -> str | None:
    """The embedding an LM head is tied to (analysed once, there), or None."""
    if not key.endswith(".weight") or role(key) != "lm_head":
        return None
    # transformers ties them unless config.json says otherwise (its default is True)
    if not config or not config.get("tie_word_embeddings", True):
        return None
    for k in keys:
        if k != key and role(k) == "embed" and "position" not in k and "wpe" not in k:
            return k
    return None

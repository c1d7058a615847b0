"""Tiny checkpoints in Hugging Face layout, built in the tests (a few MB, no network):
Llama-style names with grouped-query attention, a Phi-3-style fused ``qkv_proj``, a GPT-2
``Conv1D`` ``c_attn``, bfloat16 and float8 tensors, GPTQ-packed tensors, shards + index, and
a fake Hugging Face cache laid out the way huggingface_hub lays it out."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

HIDDEN, HEADS, KV_HEADS, MLP, VOCAB = 64, 4, 2, 128, 256
HEAD_DIM = HIDDEN // HEADS


def llama_config(blocks: int) -> dict:
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "intermediate_size": MLP,
        "num_hidden_layers": blocks,
        "vocab_size": VOCAB,
        "tie_word_embeddings": False,
    }


def llama_tensors(blocks: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Llama-style weights with i.i.d. Gaussian entries: bfloat16, one float8 matrix, a
    fused qkv_proj in block 0, and a GPTQ-packed module."""
    g = torch.Generator().manual_seed(seed)

    def w(m: int, n: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return (torch.randn(m, n, generator=g) * 0.02).to(dtype)

    kv = KV_HEADS * HEAD_DIM
    sd: dict[str, torch.Tensor] = {"model.embed_tokens.weight": w(VOCAB, HIDDEN)}
    for b in range(blocks):
        p = f"model.layers.{b}."
        sd[p + "input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        if b == 0:  # Phi-3 style: q, k, v fused in one tensor
            sd[p + "self_attn.qkv_proj.weight"] = torch.cat(
                [w(HIDDEN, HIDDEN), w(kv, HIDDEN), w(kv, HIDDEN)]
            )
        else:
            sd[p + "self_attn.q_proj.weight"] = w(HIDDEN, HIDDEN)
            sd[p + "self_attn.k_proj.weight"] = w(kv, HIDDEN)
            sd[p + "self_attn.v_proj.weight"] = w(kv, HIDDEN)
        sd[p + "self_attn.o_proj.weight"] = w(HIDDEN, HIDDEN)
        sd[p + "mlp.gate_proj.weight"] = w(MLP, HIDDEN)
        sd[p + "mlp.up_proj.weight"] = w(MLP, HIDDEN)
        down = torch.float8_e4m3fn if b == 1 else torch.bfloat16
        sd[p + "mlp.down_proj.weight"] = (torch.randn(HIDDEN, MLP, generator=g)).to(down)
    q = "model.layers.0.mlp.extra."  # a GPTQ-packed Linear
    sd[q + "qweight"] = torch.randint(0, 2**30, (HIDDEN // 8, MLP), generator=g, dtype=torch.int32)
    sd[q + "qzeros"] = torch.randint(0, 2**30, (1, MLP // 8), generator=g, dtype=torch.int32)
    sd[q + "scales"] = torch.rand(1, MLP, generator=g).to(torch.float16)
    sd[q + "g_idx"] = torch.zeros(HIDDEN, dtype=torch.int32)
    sd["model.norm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
    sd["lm_head.weight"] = w(VOCAB, HIDDEN)
    return sd


def write_sharded(
    folder: Path, sd: dict[str, torch.Tensor], config: dict | None, shards: int = 3
) -> Path:
    """``model-0000K-of-0000N.safetensors`` + ``model.safetensors.index.json`` (+ config):
    tensors dealt round-robin in reverse name order, so shard and index order are not the
    natural order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(sd, reverse=True)
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(shards)]
    for i, k in enumerate(names):
        parts[i % shards][k] = sd[k].contiguous()
    weight_map = {}
    for i, part in enumerate(parts):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, str(folder / fname))
        weight_map.update({k: fname for k in part})
    index = {"metadata": {"total_size": 0}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def gpt2_checkpoint(folder: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """One GPT-2 block stored the way transformers' Conv1D stores it (in x out); returns
    the out x in matrices (q, k, v, c_fc) the analysis must recover."""
    g = torch.Generator().manual_seed(seed)
    d = HIDDEN
    wq, wk, wv = (torch.randn(d, d, generator=g) for _ in range(3))
    fc = torch.randn(4 * d, d, generator=g)
    sd = {
        "transformer.wte.weight": torch.randn(VOCAB, d, generator=g),
        "transformer.h.0.attn.c_attn.weight": torch.cat([wq, wk, wv]).t().contiguous(),
        "transformer.h.0.attn.c_attn.bias": torch.zeros(3 * d),
        "transformer.h.0.attn.c_proj.weight": torch.randn(d, d, generator=g),
        "transformer.h.0.mlp.c_fc.weight": fc.t().contiguous(),
        "transformer.h.0.mlp.c_proj.weight": torch.randn(d, 4 * d, generator=g),
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "model.safetensors"))
    cfg = {"model_type": "gpt2", "n_embd": d, "n_head": HEADS, "n_layer": 1}
    (folder / "config.json").write_text(json.dumps(cfg))
    return {"q": wq, "k": wk, "v": wv, "c_fc": fc}


def fake_hf_cache(cache: Path, repo: str, source: Path, sha: str = "a" * 40) -> Path:
    """``models--ORG--NAME/{refs/main, snapshots/SHA/<file> -> ../../blobs/<hash>}``, the
    layout huggingface_hub writes; returns the snapshot folder."""
    import hashlib

    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "blobs").mkdir(exist_ok=True)
    snap = base / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(sha)
    for f in sorted(source.iterdir()):
        data = f.read_bytes()
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snap

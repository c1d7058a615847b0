"""Streaming a large checkpoint: `netprobe randomness` on a synthetic model in Hugging Face
layout with a public model's shapes, as a whole process (docs/design.md, "Hugging Face
checkpoints and streaming").

The checkpoint has i.i.d. Gaussian entries (bfloat16, 1 GB shards + index + config.json)
plus planted rank-2 spikes in a known set of matrices, so the answers are known. Printed:
peak RSS, wall time and seconds per GB of the streamed run; the ratio to the same analysis
on tensors already in memory; the exact / approx spectrum split; the planted spikes found
and the random-like rate of the other matrices (with a Wilson 95% interval, to compare with
the calibrated 1 - alpha).

    python benchmarks/large_checkpoint.py                 # 1.1B Llama shapes, ~2.2 GB
    python benchmarks/large_checkpoint.py --shape 7b      # Llama-2-7B shapes, ~13.5 GB
    python benchmarks/large_checkpoint.py --shape 7b --blocks 2   # its every matrix shape
    python benchmarks/large_checkpoint.py --device cuda   # each tensor moved to the GPU

Writes under --workdir (default a temp folder in /tmp) and deletes it unless --keep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    # blocks, hidden, mlp, heads, kv heads, vocab
    "tiny": (4, 256, 688, 8, 2, 1000),
    "1.1b": (22, 2048, 5632, 32, 4, 32000),
    "7b": (32, 4096, 11008, 32, 32, 32000),
}
SHARD_BYTES = 1 << 30
SPIKE_RANK = 2
SPIKE_STRENGTH = 4.0  # planted singular values at this multiple of the MP bulk edge


def planted(blocks: int) -> set[str]:
    """The matrices with planted spikes: q_proj and down_proj of every 5th block."""
    out = set()
    for b in range(0, blocks, 5):
        out.add(f"model.layers.{b}.self_attn.q_proj.weight")
        out.add(f"model.layers.{b}.mlp.down_proj.weight")
    return out


def tensor_shapes(shape: str, blocks: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    L, d, m, h, kv, vocab = SHAPES[shape]
    L = blocks or L
    hd = d // h
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, d))]
    for b in range(L):
        p = f"model.layers.{b}."
        out += [
            (p + "input_layernorm.weight", (d,)),
            (p + "self_attn.q_proj.weight", (d, d)),
            (p + "self_attn.k_proj.weight", (kv * hd, d)),
            (p + "self_attn.v_proj.weight", (kv * hd, d)),
            (p + "self_attn.o_proj.weight", (d, d)),
            (p + "post_attention_layernorm.weight", (d,)),
            (p + "mlp.gate_proj.weight", (m, d)),
            (p + "mlp.up_proj.weight", (m, d)),
            (p + "mlp.down_proj.weight", (d, m)),
        ]
    out += [("model.norm.weight", (d,)), ("lm_head.weight", (vocab, d))]
    return out


def make_tensor(name: str, shape: tuple[int, ...], seed: int, spikes: set[str]):  # noqa: ANN201
    import torch

    g = torch.Generator().manual_seed(seed)
    if len(shape) == 1:
        return torch.ones(shape, dtype=torch.bfloat16)
    sigma = 0.02
    w = torch.randn(shape, generator=g) * sigma
    if name in spikes:
        m, n = shape
        edge = sigma * (math.sqrt(m) + math.sqrt(n))
        u = torch.linalg.qr(torch.randn(m, SPIKE_RANK, generator=g))[0]
        v = torch.linalg.qr(torch.randn(n, SPIKE_RANK, generator=g))[0]
        w += SPIKE_STRENGTH * edge * (u @ v.T)
    return w.to(torch.bfloat16)


def write_checkpoint(
    folder: Path, shape: str, seed: int, blocks: int | None = None
) -> tuple[int, int]:
    """Shards of about 1 GB, written one at a time (bounded memory); (bytes, parameters).
    ``blocks``: only the first this many transformer blocks (embedding and head kept)."""
    from safetensors.torch import save_file

    L, d, m, h, kv, vocab = SHAPES[shape]
    L = blocks or L
    folder.mkdir(parents=True, exist_ok=True)
    spikes = planted(L)
    shapes = tensor_shapes(shape, L)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, s in shapes:
        nb = 2 * math.prod(s)
        if size + nb > SHARD_BYTES and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append((name, s))
        size += nb
    weight_map: dict[str, str] = {}
    total = params = 0
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        part = {
            n: make_tensor(n, s, seed + j, spikes) for j, (n, s) in enumerate(group, start=i * 1000)
        }
        save_file(part, str(folder / fname))
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * 2
            params += t.numel()
        del part
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    cfg = {
        "model_type": "llama",
        "hidden_size": d,
        "intermediate_size": m,
        "num_attention_heads": h,
        "num_key_value_heads": kv,
        "num_hidden_layers": L,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    return total, params


def _timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, peak RSS of the child in GB, result)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far
    return wall, peak_kb / 1e6, r


IN_MEMORY = r"""
import sys, time, json, resource
from pathlib import Path
from safetensors.torch import load_file
from netprobe.iid import analyse_tensors
from netprobe.loading.roles import natural_key
import torch
folder, spectrum, device = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
sd = {}
for f in sorted(folder.glob("*.safetensors")):
    sd.update(load_file(str(f)))
sd = {k: sd[k] for k in sorted(sd, key=natural_key)}
t = time.perf_counter()
analyse_tensors(sd, spectrum=spectrum, device=device)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps({"seconds": time.perf_counter() - t, "rss_gb": rss}))
"""


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    c = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    return (p + z * z / (2 * n) - c) / den, (p + z * z / (2 * n) + c) / den


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1.1b")
    ap.add_argument("--spectrum", default="auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-in-memory", action="store_true", help="skip the in-memory comparison run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of both runs (the same for both, so the ratio compares the reads)",
    )
    ap.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="write only the first N transformer blocks (every matrix shape, a shorter run: "
        "peak memory is set by the largest matrix, time grows with the blocks)",
    )
    ap.add_argument(
        "--layers",
        nargs="*",
        default=None,
        help="only these globs (a quick memory check on the largest matrices)",
    )
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="netprobe-large-", dir="/tmp"))
    ckpt, out = work / "ckpt", work / "out"
    try:
        t0 = time.perf_counter()
        nbytes, params = write_checkpoint(ckpt, a.shape, a.seed, a.blocks)
        print(
            f"wrote {a.shape}{f' ({a.blocks} blocks)' if a.blocks else ''}: {params / 1e9:.2f}B parameters, {nbytes / 1e9:.2f} GB in "
            f"{len(list(ckpt.glob('*.safetensors')))} shards ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)  # a kept --workdir's earlier report
        cmd = [
            sys.executable,
            "-m",
            "netprobe",
            "randomness",
            str(ckpt),
            "--spectrum",
            a.spectrum,
            "--device",
            a.device,
            "--threads",
            str(a.threads),
            "--no-figures",
            "-o",
            str(out),
            "--quiet",
            "--format",
            "csv",
        ]
        for pat in a.layers or []:
            cmd += ["--layers", pat]
        wall, peak, r = _timed(cmd)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            raise SystemExit(r.returncode)
        run = json.loads((out / "run.json").read_text())
        ana = float(run.get("analysis_seconds", math.nan))
        print(
            f"streamed: whole process {wall:.1f} s (analysis {ana:.1f} s), "
            f"{wall / (nbytes / 1e9):.1f} s/GB, peak RSS {peak:.2f} GB",
            flush=True,
        )
        import pandas as pd

        df = pd.read_csv(out / "layers.csv")
        done = df[df.status == "analysed"]
        print("spectrum methods:", done.spectrum_method.value_counts().to_dict())
        spikes = planted(a.blocks or SHAPES[a.shape][0])
        hit = done[done.layer.isin(spikes)]
        found = int(((hit.spikes >= SPIKE_RANK) & (hit.verdict == "structured")).sum())
        print(
            f"planted spikes found: {found} of {len(spikes)} matrices "
            f"(spikes counted: {hit.spikes.tolist()})"
        )
        rest = done[~done.layer.isin(spikes)]
        k = int((rest.verdict == "random-like").sum())
        lo, hi = wilson(k, len(rest))
        print(
            f"unplanted random-like: {k} of {len(rest)} = {k / max(len(rest), 1):.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f}; calibrated >= 0.95)"
        )
        if not a.no_in_memory:
            t1 = time.perf_counter()
            r2 = subprocess.run(
                [sys.executable, "-c", IN_MEMORY, str(ckpt), a.spectrum, a.device, str(a.threads)],
                capture_output=True,
                text=True,
                env=os.environ,
            )
            wall2 = time.perf_counter() - t1
            if r2.returncode == 0:
                mem = json.loads(r2.stdout.strip().splitlines()[-1])
                print(
                    f"in memory (whole file read first): whole process {wall2:.1f} s "
                    f"(analysis {mem['seconds']:.1f} s), peak RSS {mem['rss_gb']:.2f} GB\n"
                    f"streamed / in-memory: whole process {wall / wall2:.2f}x, "
                    f"analysis {ana / mem['seconds']:.2f}x"
                )
            else:
                print("in-memory run failed:", r2.stderr[-500:])
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

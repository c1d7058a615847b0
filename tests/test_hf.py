"""Hugging Face checkpoints: folders, shards + index, hf: ids through a fake cache (offline),
streamed reading, dtypes, layer roles, Conv1D orientation, fused-qkv splits, packed
quantised tensors, and the view across depth. Known answers on tiny checkpoints built here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_fixtures import (
    HEAD_DIM,
    HIDDEN,
    KV_HEADS,
    fake_hf_cache,
    gpt2_checkpoint,
    llama_config,
    llama_tensors,
    write_sharded,
)

from netprobe.errors import EXIT_LOAD, LoadError
from netprobe.loading import load
from netprobe.loading.roles import block_index, natural_key, role
from netprobe.netlayers import as_matrix, weight_layers


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "netprobe", *args], capture_output=True, text=True, env=e
    )


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sharded(
        tmp_path_factory.mktemp("llama") / "ckpt", llama_tensors(3), llama_config(3)
    )


# ---------------------------------------------------------------------------------------
# order, roles, views


def test_natural_order_from_module_path_not_shards(tmp_path: Path) -> None:
    folder = write_sharded(tmp_path / "m", llama_tensors(11), llama_config(11))
    lm = load(folder)
    wls = weight_layers(lm.tensors)
    blocks = [wl.block for wl in wls if wl.block is not None]
    assert blocks == sorted(blocks) and blocks[-1] == 10
    names = [wl.name for wl in wls]
    assert names.index("model.layers.2.mlp.up_proj.weight") < names.index(
        "model.layers.10.mlp.up_proj.weight"
    )
    assert lm.tensors.bytes_read == 0  # listing reads headers only
    assert sorted(["layers.10.w", "layers.2.w", "layers.1.w"], key=natural_key) == [
        "layers.1.w",
        "layers.2.w",
        "layers.10.w",
    ]


def test_roles_and_blocks() -> None:
    assert (
        block_index("model.layers.12.self_attn.q_proj.weight"),
        role("model.layers.12.self_attn.q_proj.weight"),
    ) == (12, "q_proj")
    assert block_index("transformer.h.3.attn.c_attn.weight") == 3
    assert role("bert.encoder.layer.5.attention.self.query.weight") == "query"
    assert role("bert.encoder.layer.5.attention.output.dense.weight") == "attention.output.dense"
    assert role("bert.encoder.layer.5.output.dense.weight") == "output.dense"
    assert role("model.layers.0.block_sparse_moe.experts.7.w1.weight") == "experts.w1"
    assert role("model.embed_tokens.weight") == "embed" and role("lm_head.weight") == "lm_head"
    assert block_index("layer3.1.conv2.weight") == 3  # a ResNet stage
    assert block_index("_blocks.7._expand_conv.weight") == 7  # EfficientNet-PyTorch
    assert role("_blocks.7._expand_conv.weight") == "_expand_conv"


def test_fused_qkv_split_by_heads_and_kv_heads(llama: Path) -> None:
    lm = load(llama)
    wls = {wl.name: wl for wl in weight_layers(lm.tensors)}
    key = "model.layers.0.self_attn.qkv_proj.weight"
    full = lm.tensors[key]
    q, k, v = (wls[f"{key}[{p}]"] for p in "qkv")
    kv = KV_HEADS * HEAD_DIM
    assert (q.matrix_shape, k.matrix_shape, v.matrix_shape) == (
        (HIDDEN, HIDDEN),
        (kv, HIDDEN),
        (kv, HIDDEN),
    )
    assert torch.equal(as_matrix(k, lm.tensors), full[HIDDEN : HIDDEN + kv])
    assert torch.equal(as_matrix(v, lm.tensors), full[HIDDEN + kv :])
    assert q.role == "qkv_proj[q]" and q.block == 0 and q.dtype == "bfloat16"


def test_conv1d_is_transposed(tmp_path: Path) -> None:
    truth = gpt2_checkpoint(tmp_path / "gpt2")
    lm = load(tmp_path / "gpt2")
    wls = {wl.name: wl for wl in weight_layers(lm.tensors)}
    for part in "qkv":
        wl = wls[f"transformer.h.0.attn.c_attn.weight[{part}]"]
        assert wl.transpose and wl.kind == "Conv1D"
        assert torch.equal(as_matrix(wl, lm.tensors), truth[part])
    fc = wls["transformer.h.0.mlp.c_fc.weight"]
    assert fc.matrix_shape == (4 * HIDDEN, HIDDEN)  # out x in
    assert torch.equal(as_matrix(fc, lm.tensors), truth["c_fc"])
    # without config.json the d x 3d c_attn still marks GPT-2 layout
    (tmp_path / "gpt2" / "config.json").unlink()
    lm2 = load(tmp_path / "gpt2" / "model.safetensors")
    wl = {w.name: w for w in weight_layers(lm2.tensors)}["transformer.h.0.attn.c_attn.weight[k]"]
    assert torch.equal(as_matrix(wl, lm2.tensors), truth["k"])


def test_tied_lm_head_analysed_once(tmp_path: Path) -> None:
    cfg = {**llama_config(1), "tie_word_embeddings": True}
    folder = write_sharded(tmp_path / "t", llama_tensors(1), cfg, shards=1)
    names = [wl.name for wl in weight_layers(load(folder).tensors)]
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names


# ---------------------------------------------------------------------------------------
# broken checkpoints: one line, exit 3, nothing written


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_truncated_and_unheld(llama: Path, tmp_path: Path) -> None:
    miss = _copy(llama, tmp_path / "miss")
    (miss / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(LoadError, match="model-00002-of-00003.safetensors.*missing"):
        load(miss)
    trunc = _copy(llama, tmp_path / "trunc")
    f = trunc / "model-00003-of-00003.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(LoadError, match="model-00003-of-00003.safetensors: truncated"):
        load(trunc)
    unheld = _copy(llama, tmp_path / "unheld")
    idx = unheld / "model.safetensors.index.json"
    data = json.loads(idx.read_text())
    data["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00003.safetensors"
    idx.write_text(json.dumps(data))
    with pytest.raises(LoadError, match="names tensor 'model.layers.9.mlp.up_proj.weight'"):
        load(unheld)
    out = tmp_path / "out"
    r = _cli("randomness", str(miss), "-o", str(out))
    assert r.returncode == EXIT_LOAD and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error")]) == 1
    assert not out.exists()


def test_one_shard_alone_has_a_note(llama: Path) -> None:
    from netprobe.iid import analyse

    lm = load(llama / "model-00001-of-00003.safetensors")
    rep = analyse(lm, layers=["*o_proj*"], spectrum="exact")
    assert "shard 1 of 3" in rep.summary and "analysed alone" in rep.summary


# ---------------------------------------------------------------------------------------
# dtypes, quantised tensors, streamed == in memory


def test_streamed_equals_in_memory_with_dtypes_and_quantised(llama: Path) -> None:
    from safetensors.torch import load_file

    from netprobe.iid import analyse_tensors

    lm = load(llama)
    pats = ["*layers.1.*", "*extra*", "*layers.0.mlp.up_proj*"]
    streamed = analyse_tensors(lm.tensors, layers=pats, seed=3, spectrum="exact")
    mem: dict[str, torch.Tensor] = {}
    for f in sorted(llama.glob("*.safetensors")):
        mem.update(load_file(str(f)))
    mem = {k: mem[k] for k in sorted(mem, key=natural_key)}
    whole = analyse_tensors(mem, layers=pats, seed=3, spectrum="exact")
    a = streamed.to_frame().drop(columns=[]).to_dict("records")
    b = whole.to_frame().to_dict("records")
    assert [r["layer"] for r in a] == [r["layer"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for c in (
            "spectrum_ks",
            "spikes_p",
            "independence_p",
            "excess_kurtosis",
            "verdict",
            "reason",
        ):
            assert ra[c] == rb[c] or (ra[c] != ra[c] and rb[c] != rb[c]), (ra["layer"], c)
    rows = {r["layer"]: r for r in a}
    down = rows["model.layers.1.mlp.down_proj.weight"]
    assert down["dtype"] == "float8_e4m3fn" and down["status"] == "analysed"
    assert rows["model.layers.1.mlp.up_proj.weight"]["dtype"] == "bfloat16"
    assert rows["model.layers.1.self_attn.q_proj.weight"]["role"] == "q_proj"
    assert rows["model.layers.1.self_attn.q_proj.weight"]["block"] == 1
    for q in ("qweight", "qzeros", "scales"):
        r = rows[f"model.layers.0.mlp.extra.{q}"]
        assert (
            r["status"] == "skipped" and r["reason"] == "packed quantised weights: dequantize first"
        )


def test_int8_with_scales_and_float8_with_scales() -> None:
    from netprobe.loading.roles import quantised_reason

    keys = {"a.weight", "a.SCB", "b.weight", "b.weight_scale"}
    assert quantised_reason("a.weight", keys) is not None  # bitsandbytes int8
    assert quantised_reason("a.SCB", keys) is not None
    assert quantised_reason("b.weight", keys, floating=True) is None  # float8 + scale: read
    assert quantised_reason("b.weight", keys, floating=False) is not None  # int8 + scale


# ---------------------------------------------------------------------------------------
# hf: ids through a fake cache, offline


def test_hf_id_from_the_cache_offline(llama: Path, tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    snap = fake_hf_cache(cache, "acme/tiny-llama", llama)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_secret_do_not_print"}
    r = _cli("layers", "hf:acme/tiny-llama", "--format", "csv", env=env)
    assert r.returncode == 0, r.stderr
    assert "model.layers.2.self_attn.o_proj.weight" in r.stdout
    out = tmp_path / "o"
    r = _cli(
        "randomness",
        "hf:acme/tiny-llama@main",
        "--layers",
        "*layers.2.self_attn.o_proj*",
        "-o",
        str(out),
        "--format",
        "csv",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    run = (out / "run.json").read_text()
    assert "hf_secret" not in run and "hf_secret" not in r.stderr + r.stdout
    prov = json.loads(run)["model"]
    assert prov["kind"] == "hf" and prov["path"] == str(snap) and "a" * 40 in prov["weights"]


def test_hf_id_not_cached_offline_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "empty"
    for env in ({"HF_HUB_OFFLINE": "1"}, {"NETPROBE_OFFLINE": "1"}):
        r = _cli(
            "randomness",
            "hf:acme/absent@v2",
            "-o",
            str(tmp_path / "o"),
            env={"HF_HUB_CACHE": str(cache), **env},
        )
        assert r.returncode == EXIT_LOAD and "Traceback" not in r.stderr
        line = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
        assert len(line) == 1
        assert "acme/absent" in r.stderr and "v2" in r.stderr and str(cache) in r.stderr
        assert "hf download acme/absent" in r.stderr
        assert not (tmp_path / "o").exists()


def test_hf_without_huggingface_hub_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_hub(name: str, *a: object, **k: object) -> object:
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real(name, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_hub)
    with pytest.raises(LoadError) as e:
        load("hf:acme/tiny")
    assert "netprobe[hf]" in e.value.one_line()


# ---------------------------------------------------------------------------------------
# check, and the view across depth


def test_check_takes_a_checkpoint_folder_as_one_model(llama: Path, tmp_path: Path) -> None:
    from netprobe.zoo.targets import expand_targets

    root = tmp_path / "zoo"
    _copy(llama, root / "ckpt")
    torch.save({"w": torch.randn(8, 8)}, root / "other.pt")
    assert expand_targets([str(root)]) == [str(root / "ckpt"), str(root / "other.pt")]
    assert expand_targets(["hf:acme/x"]) == ["hf:acme/x"]


def test_depth_table_and_figure(llama: Path, tmp_path: Path) -> None:
    from netprobe.depth import depth_rows
    from netprobe.iid import analyse_tensors

    lm = load(llama)
    rep = analyse_tensors(lm.tensors, layers=["*o_proj*", "*up_proj*"], spectrum="exact")
    rows = depth_rows(rep.layers)
    assert [(r["block"], r["role"]) for r in rows] == [
        (b, role) for b in range(3) for role in ("o_proj", "up_proj")
    ]
    assert all(r["matrices"] == 1 for r in rows)
    names = rep.write(tmp_path / "out")
    assert "depth.csv" in names and "depth.png" in names
    # every role in the legend, EfficientNet's "_expand_conv" too (matplotlib hides "_" labels)
    from netprobe.depth import depth_figure

    fig = depth_figure([{**r, "role": "_" + r["role"]} for r in rows], "t")
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["o_proj", "up_proj"]


# ---------------------------------------------------------------------------------------
# progress for large checkpoints


def test_cli_says_size_and_parameters_first_and_quiet_says_nothing(
    llama: Path, tmp_path: Path
) -> None:
    from rich.filesize import decimal

    sd = llama_tensors(3)  # the fixture's tensors, counted here without netprobe
    params = sum(t.numel() for t in sd.values())
    size = sum(t.numel() * t.element_size() for t in sd.values())
    args = ["randomness", str(llama), "--layers", "*layers.0.mlp.up_proj*", "--format", "csv"]
    r = _cli(*args, "-o", str(tmp_path / "a"), "--no-figures", "--threads", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    said = [ln for ln in lines if "parameters" in ln]
    assert said == [
        f"{llama}: {params:,} parameters (144.8k), {decimal(size)} on disk in 3 file(s)"
    ]
    # said once the model is loaded, before anything is written
    assert lines.index(said[0]) < next(i for i, ln in enumerate(lines) if ln.startswith("wrote"))
    q = _cli(*args, "-o", str(tmp_path / "b"), "--no-figures", "--threads", "1", "--quiet")
    assert q.returncode == 0 and q.stderr == "" and q.stdout == r.stdout


def test_progress_labels_carry_bytes_read(llama: Path) -> None:
    from netprobe.iid import ProgressLabel, analyse_tensors

    lm = load(llama)
    calls: list[tuple[int, int, str]] = []
    rep = analyse_tensors(
        lm.tensors,
        layers=["*layers.1.*"],
        spectrum="exact",
        progress=lambda d, n, label: calls.append((d, n, label)),
    )
    read = [m for m in lm.tensors.metas().items() if "layers.1." in m[0] and m[1].ndim == 2]
    total = sum(t.numel() * t.element_size() for _, t in read)
    analysed = sum(r.analysed for r in rep.layers)
    assert all(isinstance(lab, ProgressLabel) for _, _, lab in calls)
    assert [(d, n) for d, n, _ in calls][-1] == (analysed, analysed)
    got = [lab.bytes_done for _, _, lab in calls]  # type: ignore[attr-defined]
    assert got == sorted(got) and got[0] == 0 and got[-1] == total
    assert {lab.bytes_total for _, _, lab in calls} == {total}  # type: ignore[attr-defined]
    assert "model.layers.1.mlp.up_proj.weight" in [str(lab) for _, _, lab in calls]

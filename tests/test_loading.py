"""Every MODEL source loads; formats are sniffed by bytes; prefixes are stripped."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from models import FunctionalNet, TinyMLP
from torch import nn

from netprobe.errors import LoadError, OptionError, UnsafeFileError
from netprobe.loading import load, pickle_globals, save_checkpoint, sniff
from netprobe.netlayers import hidden_layers


def _sd(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd},
        lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {f"_orig_mod.module.{k}": v for k, v in sd.items()},
    ],
    ids=["bare", "state_dict", "model", "model_state_dict", "module.", "_orig_mod.module."],
)
def test_state_dict_wrappers_and_prefixes(tmp_path: Path, wrap) -> None:
    sd = _sd(TinyMLP())
    p = tmp_path / "weights.whatever"
    torch.save(wrap(sd), p)
    lm = load(p)
    assert lm.kind == "state_dict"
    assert set(lm.tensors) == set(sd)
    for k in sd:
        assert torch.equal(lm.tensors[k], sd[k])
    assert lm.module is None and lm.sha256 and len(lm.sha256) == 64


def test_state_dict_with_arch_builds_runnable_module(tmp_path: Path) -> None:
    net = torchvision.models.resnet18()
    p = tmp_path / "r18.pth"
    torch.save(net.state_dict(), p)
    lm = load(p, arch="resnet18")
    assert isinstance(lm.module, torchvision.models.ResNet)
    assert lm.input_shape == (3, 224, 224)
    assert torch.equal(lm.module.conv1.weight, net.conv1.weight)


def test_legacy_torch_save_format(tmp_path: Path) -> None:
    p = tmp_path / "legacy.pt"
    with open(p, "wb") as f:
        torch.save(_sd(TinyMLP()), f, _use_new_zipfile_serialization=False)
    assert sniff(p) == "legacy-torch"
    assert "fc1.weight" in load(p).tensors


def test_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = _sd(nn.TransformerEncoderLayer(16, 2, dim_feedforward=32))
    p = tmp_path / "model.bin"  # misleading extension: sniffed by bytes
    save_file(sd, str(p))
    assert sniff(p) == "safetensors"
    lm = load(p)
    assert lm.kind == "safetensors" and set(lm.tensors) == set(sd)


def test_onnx_initializers(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, generator=rng).numpy()
    c = torch.randn(4, 16, generator=rng).numpy()
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c, "c")),
            helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "c"], ["y"], transB=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(p))
    assert sniff(p) == "onnx"
    lm = load(p)
    assert lm.kind == "onnx"
    assert torch.equal(lm.tensors["w"], torch.from_numpy(w))
    assert torch.equal(lm.tensors["c"], torch.from_numpy(c))


def test_torchscript(tmp_path: Path) -> None:
    p = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.trace(TinyMLP().eval(), torch.randn(1, 8)), str(p))
    assert sniff(p) == "torchscript"
    lm = load(p)
    assert lm.kind == "torchscript" and lm.module is not None
    assert "fc1.weight" in lm.tensors


def test_torch_export_program_hidden_layers(tmp_path: Path) -> None:
    net = FunctionalNet().eval()
    batch = torch.export.Dim("batch")
    ep = torch.export.export(net, (torch.randn(2, 1, 6, 6),), dynamic_shapes=({0: batch},))
    p = tmp_path / "net.pt2"
    torch.export.save(ep, str(p))
    assert sniff(p) == "export"
    lm = load(p)
    assert lm.kind == "export" and lm.input_shape == (1, 6, 6)
    hs = hidden_layers(lm.module, lm.input_shape)
    assert [h.shape for h in hs] == [(4, 6, 6), (4, 6, 6), (5,)]
    x = torch.randn(3, 1, 6, 6)
    assert torch.allclose(lm.module(x), net(x), atol=1e-6)


def test_netprobe_checkpoint_roundtrip(tmp_path: Path) -> None:
    from netprobe.archs import DigitNet

    net = DigitNet(width=32)
    p = save_checkpoint(
        tmp_path / "ck.pt", net, arch="digitnet", arch_kwargs={"width": 32}, input_shape=(1, 28, 28),
        mean=(0.1307,), std=(0.3081,), classes=[str(i) for i in range(10)], note="test",
    )
    lm = load(p)
    assert lm.kind == "checkpoint" and lm.arch == "digitnet"
    assert lm.input_shape == (1, 28, 28) and lm.mean == (0.1307,)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(lm.module.eval()(x), net.eval()(x))
    assert [h.name for h in hidden_layers(lm.module, lm.input_shape)] == ["h1", "h2", "h3"]


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    p = tmp_path / "whole.pt"
    torch.save(TinyMLP(), p)
    with pytest.raises(UnsafeFileError) as e:
        load(p)
    assert "models.TinyMLP" in str(e.value) and "--trust-pickle" in str(e.value)
    lm = load(p, trust_pickle=True)
    assert lm.kind == "pickle" and isinstance(lm.module, TinyMLP)


def test_torchvision_weights_from_hub_cache_without_network(tmp_path: Path, monkeypatch) -> None:
    """A state dict placed where torch hub caches alexnet's DEFAULT weights is used, with no
    download attempt (the autouse fixture fails any network connection)."""
    monkeypatch.delenv("NETPROBE_OFFLINE")
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    ref = torchvision.models.alexnet()
    torch.save(ref.state_dict(), cache / "alexnet-owt-7be5be79.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download attempted"))
    lm = load("alexnet")
    assert lm.kind == "torchvision" and torch.equal(lm.module.features[0].weight, ref.features[0].weight)
    assert lm.path == cache / "alexnet-owt-7be5be79.pth"


def test_torchvision_offline_message_names_file_and_flags() -> None:
    with pytest.raises(LoadError) as e:
        load("alexnet")
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and "checkpoints" in msg
    assert "--weights none" in msg and "--weights-file" in msg


def test_torchvision_weights_file(tmp_path: Path) -> None:
    ref = torchvision.models.alexnet()
    p = tmp_path / "mine.pth"
    torch.save({"state_dict": ref.state_dict()}, p)
    lm = load("alexnet", weights_file=p)
    assert torch.equal(lm.module.classifier[6].weight, ref.classifier[6].weight)
    with pytest.raises(LoadError, match="do not fit the resnet18"):
        load("resnet18", weights_file=p)


def test_unknown_weights_name() -> None:
    with pytest.raises(OptionError, match="IMAGENET1K_V1"):
        load("alexnet", weights="BOGUS")


def test_pickle_globals_sees_stack_global_and_memo() -> None:
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    for proto in (2, 4, 5):
        data = pickle.dumps([Evil(), Evil()], protocol=proto)
        names = pickle_globals(data)
        assert any(n.endswith(".system") for n in names), (proto, names)


def test_sniff_by_bytes_not_extension(tmp_path: Path) -> None:
    p = tmp_path / "weights.onnx"
    torch.save({"w": torch.zeros(2, 2)}, p)
    assert sniff(p) == "zip-torch"
    png = tmp_path / "x.pt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    assert sniff(png) == "unknown:a PNG image"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hi")
    other = tmp_path / "x.pth"
    other.write_bytes(buf.getvalue())
    assert sniff(other).startswith("unknown:a zip archive")


def test_timm_model_random_init_offline() -> None:
    pytest.importorskip("timm")
    lm = load("timm:resnet18", weights="none")
    assert lm.kind == "timm" and lm.input_shape == (3, 224, 224)
    assert len(hidden_layers(lm.module, lm.input_shape)) == 17
    with pytest.raises(LoadError, match="could not get pretrained weights"):
        load("timm:resnet18")
    with pytest.raises(LoadError, match="unknown timm model"):
        load("timm:resnet18x")

"""Every MODEL source loads; formats are sniffed by bytes; prefixes are stripped."""

from __future__ import annotations

import io
import os
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
        tmp_path / "ck.pt",
        net,
        arch="digitnet",
        arch_kwargs={"width": 32},
        input_shape=(1, 28, 28),
        mean=(0.1307,),
        std=(0.3081,),
        classes=[str(i) for i in range(10)],
        note="test",
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


def _hub_file(sd: dict[str, torch.Tensor], monkeypatch) -> tuple[Path, bytes, str, str]:
    """Save ``sd`` as torch.save bytes and point ``weights`` (default alexnet's DEFAULT) at a
    URL whose file name carries the bytes' real SHA-256 prefix, as torchvision's names do.
    Returns (the hub cache path for it, the bytes, their SHA-256, the URL); nothing is written."""
    import hashlib

    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    url = f"https://download.pytorch.org/models/alexnet-owt-{digest[:8]}.pth"
    monkeypatch.setattr(weights.value, "url", url)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name, data, digest, url


def test_torchvision_weights_from_hub_cache_without_network(tmp_path: Path, monkeypatch) -> None:
    """A file in torch hub's cache whose bytes match the hash prefix in its name is used, with
    no download attempt (the autouse fixture fails any network connection), and hashed once:
    the check's digest is the provenance's."""
    import netprobe.report

    monkeypatch.delenv("NETPROBE_OFFLINE")
    ref = torchvision.models.alexnet()
    cache, data, digest, _url = _hub_file(ref.state_dict(), monkeypatch)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(data)
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download attempted")
    )
    hashed: list[Path] = []
    real = netprobe.report.sha256_file
    monkeypatch.setattr(
        netprobe.report, "sha256_file", lambda p, *a: hashed.append(p) or real(p, *a)
    )
    lm = load("alexnet")
    assert lm.kind == "torchvision" and torch.equal(
        lm.module.features[0].weight, ref.features[0].weight
    )
    assert lm.path == cache and lm.sha256 == digest and hashed == [cache]
    assert lm.provenance()["sha256"] == digest


def test_cached_weights_that_do_not_match_their_name_are_refused(monkeypatch) -> None:
    """Issue item 2: a random-init state dict saved as resnet18-f37072fd.pth was reported as
    torchvision's IMAGENET1K_V1 weights. Its SHA-256 does not start with f37072fd: refused."""
    for offline in ("1", "0"):  # offline or not, the cached file is checked before it is used
        monkeypatch.setenv("NETPROBE_OFFLINE", offline)
        cache = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torchvision.models.resnet18().state_dict(), cache)
        monkeypatch.setattr(
            torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download")
        )
        with pytest.raises(LoadError) as e:
            load("resnet18")
        msg = str(e.value)
        assert e.value.exit_code == 3 and "\n" not in msg
        assert str(cache) in msg and "f37072fd" in msg and "SHA-256" in msg
        assert (
            "delete it" in msg
            and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
        )


def test_download_creates_the_cache_folder_and_checks_the_hash(monkeypatch, capsys) -> None:
    """Issue item 4: on a machine that never used torch hub, the download failed with
    "No such file or directory: '.../hub/checkpoints/....partial'". The stand-in writes its
    temporary file next to the destination exactly as torch.hub's does."""
    monkeypatch.delenv("NETPROBE_OFFLINE")
    ref = torchvision.models.alexnet()
    cache, data, digest, url = _hub_file(ref.state_dict(), monkeypatch)
    assert not cache.parent.exists()
    calls: list[tuple[str, str, object]] = []

    def fake_download(u: str, dst: str, hash_prefix=None, progress=True) -> None:
        calls.append((u, dst, hash_prefix))
        with open(dst + ".0123.partial", "wb") as f:  # FileNotFoundError without the folder
            f.write(data)
        os.replace(dst + ".0123.partial", dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    lm = load("alexnet")
    assert calls == [(url, str(cache), digest[:8])]
    assert lm.path == cache and lm.sha256 == digest
    assert torch.equal(lm.module.classifier[6].weight, ref.classifier[6].weight)
    assert url in capsys.readouterr().err  # says what it downloads, and where to


def test_downloaded_bytes_that_do_not_match_are_refused(monkeypatch) -> None:
    monkeypatch.delenv("NETPROBE_OFFLINE")
    _hub_file(torchvision.models.alexnet().state_dict(), monkeypatch)

    def wrong_bytes(u: str, dst: str, hash_prefix=None, progress=True) -> None:
        torch.save({"w": torch.zeros(2, 2)}, dst)  # ignores hash_prefix

    monkeypatch.setattr(torch.hub, "download_url_to_file", wrong_bytes)
    with pytest.raises(LoadError, match="SHA-256"):
        load("alexnet")


@pytest.mark.parametrize(
    "error, cause",
    [
        ("dns", "Temporary failure in name resolution"),
        ("http", "HTTP 404 Not Found"),
        ("refused", "Connection refused"),
        ("hash", "failed its SHA-256 check"),
    ],
)
def test_download_failure_names_cause_url_and_destination(
    monkeypatch, error: str, cause: str
) -> None:
    import socket
    import urllib.error

    monkeypatch.delenv("NETPROBE_OFFLINE")
    url = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    raised = {
        "dns": urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution")),
        "http": urllib.error.HTTPError(url, 404, "Not Found", None, None),  # type: ignore[arg-type]
        "refused": urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        "hash": RuntimeError('invalid hash value (expected "7be5be79", got "00ff")'),
    }[error]

    def failing(u: str, dst: str, hash_prefix=None, progress=True) -> None:
        raise raised

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing)
    with pytest.raises(LoadError) as e:
        load("alexnet")
    msg = str(e.value)
    dest = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert cause in msg and url in msg and str(dest) in msg and "\n" not in msg
    assert "--weights none" in msg and "--weights-file" in msg
    assert not dest.exists()


def test_unwritable_cache_folder_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NETPROBE_OFFLINE")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("TORCH_HOME", str(blocker))  # hub/checkpoints cannot be made under a file
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download"))
    with pytest.raises(LoadError, match="cannot create the torch hub cache folder.*TORCH_HOME"):
        load("alexnet")


def test_torchvision_offline_message_names_file_and_flags() -> None:
    with pytest.raises(LoadError) as e:
        load("alexnet")
    msg = str(e.value)
    dest = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(dest) in msg and "NETPROBE_OFFLINE" in msg
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg
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

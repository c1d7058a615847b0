"""The bad-input corpus: every case gives its documented exit code and one line on stderr
naming the problem, never a traceback, never a payload run, nothing half-written.

Cases that concern a MODEL run through every command that takes one.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from netprobe.cli import app

runner = CliRunner()

#: how each command that takes a MODEL is given one
MODEL_COMMANDS: dict[str, list[str]] = {
    "layers": [],
    "randomness": [],
    "reconstruct": [],
    "check": [],
    "shadow-train": ["--from"],
}
WRITES = {"randomness", "reconstruct", "shadow-train"}


def registered() -> list[str]:
    names = []
    for c in app.registered_commands:
        names.append(c.name or c.callback.__name__.replace("_", "-"))
    return names


def test_every_model_command_is_registered() -> None:
    """The corpus below is parametrised over the fixed MODEL_COMMANDS list, so a command that
    disappears fails here instead of silently dropping its cases."""
    assert set(MODEL_COMMANDS) <= set(registered()), set(MODEL_COMMANDS) - set(registered())


def invoke(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def assert_model_error(cmd: str, args: list[str], tmp_path: Path, code: int, *needles: str) -> str:
    """Run a MODEL command on bad input. `check` reports a bad model as that model's error (in
    its table and --json line, exit 3) and goes on with the others; the rest stop with one
    red line."""
    if cmd != "check":
        return assert_one_line_error(invoke(args), code, *needles)
    out = tmp_path / "check.jsonl"
    result = invoke([*args, "--json", str(out), "-q"])
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = out.read_text().splitlines()
    import json

    err = json.loads(line)["error"]
    assert err and "\n" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


def assert_one_line_error(result, code: int, *needles: str) -> str:
    err = result.stderr
    assert result.exit_code == code, (result.exit_code, err, result.stdout)
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("loading ")]
    text = " ".join(lines)
    assert "error:" in text, err
    assert len([ln for ln in lines if "error:" in ln]) == 1, err
    for n in needles:
        assert n in text, (n, text)
    return text


# --- malicious pickles -------------------------------------------------------------------


class _System:
    """Unpickling runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Open:
    """Unpickling creates the marker file through builtins.open."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def _torch_zip(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _legacy(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


MALICIOUS: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "system-in-pt-zip": ("evil.pt", lambda m: _torch_zip({"w": torch.zeros(2, 2), "x": _System(m)})),
    "open-in-pt-zip-top-level": ("evil.pth", lambda m: _torch_zip(_Open(m))),
    "system-raw-pickle-bin": ("pytorch_model.bin", lambda m: pickle.dumps(_System(m), protocol=2)),
    "system-raw-pickle-proto5-no-ext": ("weights", lambda m: pickle.dumps({"a": _System(m)}, protocol=5)),
    "eval-misleading-safetensors-ext": ("model.safetensors", lambda m: pickle.dumps(_Eval(m), protocol=4)),
    "open-legacy-torch-save": ("old.ckpt", lambda m: _legacy({"w": torch.zeros(1, 1), "x": _Open(m)})),
    "system-pt-zip-as-onnx": ("model.onnx", lambda m: _torch_zip([_System(m)])),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
@pytest.mark.parametrize("cmd", list(MODEL_COMMANDS))
def test_malicious_pickle_never_runs(tmp_path: Path, case: str, cmd: str) -> None:
    marker = tmp_path / "PWNED"
    name, make = MALICIOUS[case]
    path = tmp_path / name
    path.write_bytes(make(marker))
    out = tmp_path / "out"
    extra = ["-o", str(out)] if cmd in WRITES else []
    text = assert_model_error(cmd, [cmd, *MODEL_COMMANDS[cmd], str(path), *extra], tmp_path, 3, "--trust-pickle")
    assert "refused" in text
    assert not marker.exists(), "the payload ran"
    assert not out.exists(), "an output folder was written for a refused model"


# --- broken and wrong files --------------------------------------------------------------


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _truncated_zip() -> bytes:
    data = _torch_zip(torchvision.models.alexnet().features[0].state_dict())
    return data[: len(data) // 2]


def _truncated_legacy() -> bytes:
    data = _legacy({"w": torch.randn(64, 64)})
    return data[: len(data) // 2]


def _bad_safetensors() -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[64,64],"data_offsets":[0,16384]}}'
    return len(header).to_bytes(8, "little") + header + b"\0" * 100  # data cut short


FILES: dict[str, tuple[str, Callable[[], bytes], tuple[str, ...]]] = {
    "empty-file": ("empty.pt", lambda: b"", ("empty",)),
    "truncated-zip": ("cut.pt", _truncated_zip, ("corrupt",)),
    "random-bytes": ("noise.pth", lambda: bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1)).to(torch.uint8).tolist()), ("not a model file",)),
    "png-renamed-pt": ("picture.pt", _png, ("PNG",)),
    "text-file": ("notes.pt", lambda: b"these are not weights\n", ("text",)),
    "gzip-file": ("weights.pt.gz", lambda: gzip.compress(b"x" * 100), ("gzip",)),
    "numpy-npy": ("weights.npy", lambda: b"\x93NUMPY\x01\x00" + b" " * 64, ("NumPy",)),
    "non-tensor-state-dict": ("sd.pt", lambda: _torch_zip({"w": torch.zeros(2, 2), "name": "hello"}), ("not a tensor",)),
    "empty-state-dict": ("sd0.pt", lambda: _torch_zip({}), ("empty",)),
    "list-not-state-dict": ("list.pt", lambda: _torch_zip([1, 2, 3]), ("not a state dict",)),
    "truncated-legacy": ("cut_legacy.pt", _truncated_legacy, ("not a readable PyTorch file",)),
    "corrupt-safetensors": ("bad.safetensors", _bad_safetensors, ("safetensors",)),
    "zip-not-torch": ("archive.pt", lambda: _zip_with("readme.txt"), ("not a PyTorch file",)),
}


def _zip_with(name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, "hello")
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(FILES))
@pytest.mark.parametrize("cmd", list(MODEL_COMMANDS))
def test_broken_files(tmp_path: Path, case: str, cmd: str) -> None:
    name, make, needles = FILES[case]
    path = tmp_path / name
    path.write_bytes(make())
    out = tmp_path / "out"
    extra = ["-o", str(out)] if cmd in WRITES else []
    assert_model_error(cmd, [cmd, *MODEL_COMMANDS[cmd], str(path), *extra], tmp_path, 3, name, *needles)
    assert not out.exists()


@pytest.mark.parametrize("cmd", list(MODEL_COMMANDS))
def test_missing_path_directory_and_unknown_name(tmp_path: Path, cmd: str) -> None:
    pre = MODEL_COMMANDS[cmd]
    assert_model_error(cmd, [cmd, *pre, str(tmp_path / "nope.pt")], tmp_path, 3, "no such file")
    if cmd != "check":  # check searches folders for models by design
        assert_one_line_error(invoke([cmd, *pre, str(tmp_path)]), 3, "folder")
    assert_model_error(cmd, [cmd, *pre, "alexnett"], tmp_path, 3, "unknown model", "alexnet")


# --- options -----------------------------------------------------------------------------


def test_weights_file_for_wrong_architecture(tmp_path: Path) -> None:
    p = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), p)
    assert_one_line_error(invoke(["layers", "alexnet", "--weights-file", str(p)]), 3, "do not fit the alexnet")


def test_arch_mismatch_for_state_dict(tmp_path: Path) -> None:
    p = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), p)
    assert_one_line_error(invoke(["layers", str(p), "--arch", "vgg11"]), 3, "--arch")
    assert_one_line_error(invoke(["layers", str(p), "--arch", "nosuchnet"]), 3, "unknown architecture")


def test_offline_torchvision_weights() -> None:
    assert_one_line_error(invoke(["layers", "alexnet"]), 3, "alexnet-owt-7be5be79.pth", "--weights none")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["layers", "alexnet", "--weights", "none", "--input-shape", "3,x"], "--input-shape"),
        (["layers", "alexnet", "--weights", "none", "--format", "xml"], "--format"),
        (["layers", "alexnet", "--weights", "BOGUS"], "--weights BOGUS"),
    ],
)
def test_bad_options_exit_2(args: list[str], needle: str) -> None:
    assert_one_line_error(invoke(args), 2, needle)


def test_wrong_input_shape_is_one_line(tmp_path: Path) -> None:
    result = invoke(["layers", "alexnet", "--weights", "none", "--input-shape", "3,8,8"])
    assert_one_line_error(result, 2, "--input-shape")


def test_unknown_option_is_usage_error() -> None:
    result = runner.invoke(app, ["layers", "--no-such-flag"])
    assert result.exit_code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda() -> None:
    cmds = [c for c in MODEL_COMMANDS if c in WRITES]
    if not cmds:
        pytest.skip("no command with --device yet")
    result = invoke([cmds[0], "--device", "cuda"])
    assert_one_line_error(result, 2, "--device cuda")

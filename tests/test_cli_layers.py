"""`netprobe layers` and the CLI's shared behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import torchvision
from typer.testing import CliRunner

from netprobe.cli import app

runner = CliRunner()


def test_layers_alexnet_random_init_json() -> None:
    result = runner.invoke(app, ["layers", "alexnet", "--weights", "none", "--format", "json", "-q"])
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert len(info["weight_layers"]) == 8
    assert [h["name"] for h in info["hidden_layers"]] == [f"h{i}" for i in range(1, 8)]
    assert info["hidden_layers"][0]["shape"] == [64, 55, 55]
    assert info["weight_layers"][0]["matrix_shape"] == [64, 363]  # 3*11*11


def test_layers_table_and_csv_and_md() -> None:
    table = runner.invoke(app, ["layers", "alexnet", "--weights", "none"])
    assert table.exit_code == 0 and "features.1" in table.stdout and "64x55x55" in table.stdout
    csv = runner.invoke(app, ["layers", "alexnet", "--weights", "none", "--format", "csv"])
    assert csv.stdout.splitlines()[0] == "section,name,module,type,shape,params"
    md = runner.invoke(app, ["layers", "alexnet", "--weights", "none", "--format", "md"])
    assert "## Hidden layers" in md.stdout and "| h7 |" in md.stdout


def test_layers_alexnet_from_hub_cache(tmp_path: Path, monkeypatch) -> None:
    """Weights put in $TORCH_HOME by hand: no network. The file name carries a prefix of its
    SHA-256, as torchvision's do, so the URL is pointed at a name that matches these bytes;
    under the real name (alexnet-owt-7be5be79.pth) the same file is refused, exit 3."""
    import hashlib

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet().state_dict(), cache / "alexnet-owt-7be5be79.pth")
    refused = runner.invoke(app, ["layers", "alexnet", "--format", "json"])
    assert refused.exit_code == 3 and "SHA-256" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    data = (cache / "alexnet-owt-7be5be79.pth").read_bytes()
    name = f"alexnet-owt-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (cache / name).write_bytes(data)
    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.value
    monkeypatch.setattr(weights, "url", f"https://download.pytorch.org/models/{name}")
    result = runner.invoke(app, ["layers", "alexnet", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["hidden_layers"]) == 7


def test_state_dict_without_arch_lists_weights_and_says_how_to_get_hidden(tmp_path: Path) -> None:
    p = tmp_path / "a.pt"
    torch.save(torchvision.models.alexnet().state_dict(), p)
    result = runner.invoke(app, ["layers", str(p), "--format", "json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert len(info["weight_layers"]) == 8 and info["hidden_layers"] == []
    assert "--arch" in info["hidden_note"]
    with_arch = runner.invoke(app, ["layers", str(p), "--arch", "alexnet", "--format", "json"])
    assert len(json.loads(with_arch.stdout)["hidden_layers"]) == 7


def test_help_lists_commands_and_import_is_light() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netprobe", "--help"], capture_output=True, text=True, check=True
    )
    for name in ("layers", "randomness", "reconstruct", "shadow-train", "check"):
        assert name in result.stdout
    probe = "import sys, netprobe, netprobe.cli; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert light.stdout.split() == ["False", "False"]


def test_layers_prints_the_syntax_layer_accepts_and_both_forms_resolve() -> None:
    """`layers` names a later rectifier call as `layer1.0.relu#2`, which --layer accepts; the
    older `(call 2)` form is accepted too."""
    from netprobe.netlayers import hidden_layers, resolve_layer

    result = runner.invoke(app, ["layers", "resnet18", "--weights", "none", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    wheres = [h["where"] for h in json.loads(result.stdout)["hidden_layers"]]
    assert "layer1.0.relu#2" in wheres and not any("(call" in w for w in wheres)
    hidden = hidden_layers(torchvision.models.resnet18(), (3, 64, 64))
    for spec in ("layer1.0.relu#2", "layer1.0.relu (call 2)", "layer1.0.relu(call 2)"):
        h = resolve_layer(spec, hidden)
        assert (h.module_path, h.call) == ("layer1.0.relu", 2), spec


def test_layers_on_a_file_without_weight_matrices_exits_4(tmp_path: Path) -> None:
    """Only 1-D tensors or scalars: nothing to analyse (exit 4), not an empty table."""
    for name, sd in (("vec.pt", {"b": torch.zeros(5)}), ("scalar.pt", {"s": torch.tensor(1.0)})):
        p = tmp_path / name
        torch.save(sd, p)
        result = runner.invoke(app, ["layers", str(p)])
        assert result.exit_code == 4, (result.exit_code, result.stderr, result.stdout)
        assert "no weight matrix" in result.stderr and "Traceback" not in result.stderr


def test_error_text_with_markup_prints_literally(tmp_path: Path) -> None:
    """A user-visible error naming `[bold]...` prints the brackets, not rich markup."""
    p = tmp_path / "[bold]x[red].pt"
    result = runner.invoke(app, ["layers", str(p)])
    assert result.exit_code == 3
    assert "[bold]x[red].pt" in result.stderr, result.stderr


def test_api_layers_is_reproducible_and_seeded() -> None:
    """--weights none is a function of --seed: same seed same weights, other seed differs."""
    import netprobe

    a = netprobe.load("resnet18", weights="none", seed=0).tensors["conv1.weight"]
    b = netprobe.load("resnet18", weights="none", seed=0).tensors["conv1.weight"]
    c = netprobe.load("resnet18", weights="none", seed=1).tensors["conv1.weight"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_layers_on_a_program_exported_with_a_static_batch_above_one_is_one_line(tmp_path: Path) -> None:
    """torch.export guards fail with an AssertionError when traced at batch 1: one line, exit
    2, naming the fix (was an internal error, exit 70)."""
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    path = tmp_path / "b3.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(3, 6),)), path)
    result = runner.invoke(app, ["layers", str(path)])
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert "batch size it was exported with" in result.stderr and "Traceback" not in result.stderr


def test_command_exit_keeps_codes_and_output_without_teardown(tmp_path: Path) -> None:
    """Once torch is loaded the command ends with os._exit (unloading torch took 0.75 s of
    every command): the output is still complete, files written, and the exit code the
    documented one."""
    out = tmp_path / "run"
    ok = subprocess.run(
        [sys.executable, "-m", "netprobe", "randomness", "--no-figures", "--format", "json"]
        + ["-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verdict"]  # stdout flushed before the exit
    assert json.loads((out / "run.json").read_text())["command"] == "randomness"
    bad = subprocess.run(
        [sys.executable, "-m", "netprobe", "layers", str(tmp_path / "missing.pt")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 3 and "missing.pt: no such file" in bad.stderr, (bad.returncode, bad.stderr)

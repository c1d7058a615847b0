"""`netprobe reconstruct`: metrics with known answers, controls, the report and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from models import GeluNet, TinyMLP
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from netprobe.archs import DigitNet
from netprobe.cli import app
from netprobe.errors import OptionError
from netprobe.loading import BUNDLED_MODEL, save_checkpoint
from netprobe.reconstruction import (
    ARMS,
    compare,
    fresh_init,
    parse_floats,
    permuted_weights,
    pixel_metrics,
    run,
    select_layers,
    ssim,
)

runner = CliRunner()


# --- metrics ---------------------------------------------------------------------------------


def test_compare_known_answers() -> None:
    h = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 4.0]])
    m = compare(h, 2 * h)
    torch.testing.assert_close(m["rel_err"], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(m["scale"], torch.full((2,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(m["rel_err_scaled"], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(m["cosine"], torch.ones(2, dtype=torch.float64))
    assert (m["precision"] == 1).all() and (m["recall"] == 1).all() and (m["jaccard"] == 1).all()
    ht = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    m = compare(h, ht)
    assert (
        m["precision"][0] == 0.5
        and m["recall"][0] == 0.5
        and m["jaccard"][0] == pytest.approx(1 / 3)
    )
    assert (
        torch.isnan(m["precision"][1]) and m["recall"][1] == 0
    )  # nothing inferred: precision undefined


def test_ssim_and_psnr_known_answers() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28, generator=g)
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    noise = torch.rand(3, 1, 28, 28, generator=g)
    assert (ssim(x, noise) < 0.2).all()
    pm = pixel_metrics(x, x + 0.1, mean=(0.0,), std=(1.0,))
    # clamping to [0, 1] changes a few pixels, so the PSNR is at least that of a 0.1 offset
    assert (pm["psnr"] >= 20.0 - 1e-6).all() and (pm["psnr"] < 25).all()
    torch.testing.assert_close(
        pixel_metrics(x, x, None, None)["px_rel_err"], torch.zeros(3, dtype=torch.float64)
    )


def test_parse_floats() -> None:
    assert parse_floats("0.5, 0.25", "--mean") == (0.5, 0.25)
    assert parse_floats(None, "--mean") is None
    with pytest.raises(OptionError, match="--std"):
        parse_floats("a,b", "--std")


# --- controls --------------------------------------------------------------------------------


def test_controls_copy_and_never_touch_the_model() -> None:
    net = DigitNet(width=16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fresh = fresh_init(net, seed=1)
    perm = permuted_weights(net, seed=2)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    w, wf, wp = net.features[0].weight, fresh.features[0].weight, perm.features[0].weight
    assert not torch.equal(w, wf) and not torch.equal(w, wp)
    torch.testing.assert_close(
        wp.flatten().sort().values, w.flatten().sort().values
    )  # same entries
    torch.testing.assert_close(perm.features[0].bias, net.features[0].bias)  # biases kept
    torch.testing.assert_close(fresh_init(net, seed=1).features[0].weight, wf)  # seeded


# --- the run ---------------------------------------------------------------------------------


def _digits(n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):  # bright strokes on black, like digits
        r = int(torch.randint(4, 20, (1,), generator=g))
        x[i, 0, r : r + 4, 6:22] = 1.0
        x[i, 0, 6:22, r : r + 3] = 1.0
    return (x - 0.1307) / 0.3081


def test_run_measures_every_arm_and_real_h_beats_random_h() -> None:
    torch.manual_seed(0)
    net = DigitNet(width=32).eval()
    x = _digits(8)
    hidden, notes = select_layers(net, (1, 28, 28), "all")
    assert [h.name for h in hidden] == ["h1", "h2", "h3"] and notes == []
    rep = run(
        net, x, hidden, batch_size=4, mean=(0.1307,), std=(0.3081,), model_name="digitnet", show=2
    )
    assert rep.arms == list(ARMS)
    assert len(rep.samples) == len(x) * 3 * 4
    frame = rep.to_frame()
    assert len(frame) == 3 * 4 and {"rel_err_scaled", "jaccard_thr", "ssim", "top1_agree"} <= set(
        frame.columns
    )
    for row in rep.headline():
        assert row["err_model"] < row["err_random_h"]  # structure in real h survives the round trip
    assert all("lower error" in t for t in rep.headline_text())
    info = {i.name: i for i in rep.layers}
    assert (
        info["h2"].below == 1 and info["h2"].below_units == 32 * 14 * 14
    )  # one unit per pool window
    assert info["h1"].below == 0 and info["h1"].below_units == 28 * 28
    assert rep.images["x"].shape == (2, 1, 28, 28) and rep.images["h2/random-h"].shape == (
        2,
        1,
        28,
        28,
    )
    md = rep.to_markdown()
    assert "random-h" in md and "| h3 | model |" in md
    json.dumps(rep.to_dict(), default=str)


def test_run_is_deterministic_and_controls_can_be_skipped() -> None:
    net = DigitNet(width=16).eval()
    x = _digits(4)
    hidden, _ = select_layers(net, (1, 28, 28), "h2")
    a = run(net, x, hidden, controls=False, keep=0.5, seed=3, save_tensors=True)
    b = run(net, x, hidden, controls=False, keep=0.5, seed=3)
    assert a.arms == ["model"] and a.samples == b.samples
    assert a.tensors["h2/model/x_gen"].shape == (4, 1, 28, 28) and a.tensors[
        "h2/model/h"
    ].shape == (4, 64, 14, 14)


def test_select_layers_all_stops_below_an_irreversible_op() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.c(torch.tanh(torch.relu(self.b(torch.relu(self.a(x)))))))

    hidden, notes = select_layers(Mixed(), (4,), "all")
    assert [h.name for h in hidden] == ["h1", "h2"] and "h3..h3" in notes[0]


def test_mlp_inputs_run_without_images() -> None:
    net = TinyMLP()
    hidden, _ = select_layers(net, (8,), "h1,h2")
    rep = run(net, torch.randn(6, 8), hidden)
    assert np.isnan(rep.to_frame()["ssim"]).all() and rep.images["x"].shape == (0,)


# --- the command -------------------------------------------------------------------------------


def _checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "digitnet.pt"
    save_checkpoint(
        path,
        DigitNet(width=32),
        arch="digitnet",
        arch_kwargs={"width": 32},
        input_shape=(1, 28, 28),
        mean=(0.1307,),
        std=(0.3081,),
        classes=[str(i) for i in range(10)],
    )
    return path


def test_cli_writes_every_output(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "reconstruct",
            str(ckpt),
            "--layer",
            "h2",
            "--num",
            "4",
            "--save-tensors",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    files = {p.name for p in out.iterdir()}
    assert {
        "metrics.csv",
        "summary.csv",
        "report.json",
        "report.md",
        "grid.png",
        "depth.png",
        "tensors.npz",
        "run.json",
    } <= files
    rep = json.loads((out / "report.json").read_text())
    assert rep["num"] == 4 and rep["layers"][0]["name"] == "h2" and set(rep["arms"]) == set(ARMS)
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["options"]["layer"] == "h2" and run_json["headline"]
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 4
    with np.load(out / "tensors.npz") as z:
        assert z["x"].shape == (4, 1, 28, 28)


def test_cli_json_from_image_inputs_with_options(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    result = runner.invoke(
        app,
        [
            "reconstruct",
            str(ckpt),
            "--inputs",
            str(folder),
            "--layer",
            "h1",
            "--alpha",
            "calibrated",
            "--keep",
            "0.8",
            "--unpool",
            "switches",
            "--smooth",
            "0.7",
            "--no-controls",
            "--format",
            "json",
            "-o",
            str(tmp_path / "o2"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["num"] == 3 and list(rep["arms"]) == ["model"]
    assert rep["options"]["unpool"] == "switches" and rep["options"]["alpha"] == "calibrated"


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--unpool", "max"], 2, "--unpool max"),
        (["--layer", "h9"], 2, "h1..h3"),
        (["--alpha", "-1"], 2, "--alpha -1"),
        (["--keep", "1.5"], 2, "--keep 1.5"),
        (["--num", "0"], 2, "--num 0"),
        (["--smooth", "-1"], 2, "--smooth"),
        (["--mean", "x"], 2, "--mean x"),
        (["--inputs", "nowhere.npz"], 3, "nowhere.npz"),
        (["--dataset", "mnist"], 3, "mnist"),
    ],
)
def test_cli_bad_input_is_one_line_with_exit_code(
    tmp_path: Path, args: list[str], code: int, text: str
) -> None:
    ckpt = _checkpoint(tmp_path)
    result = runner.invoke(app, ["reconstruct", str(ckpt), *args, "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == code, result.output
    assert text in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written for a refused run


def test_cli_refuses_a_net_without_rectifiers(tmp_path: Path) -> None:
    p = tmp_path / "gelu.pt"
    torch.save(GeluNet(), p)
    result = runner.invoke(
        app,
        [
            "reconstruct",
            str(p),
            "--trust-pickle",
            "--input-shape",
            "8",
            "--inputs",
            str(_npz(tmp_path)),
            "-o",
            str(tmp_path / "o"),
            "-q",
        ],
    )
    assert result.exit_code == 4, result.output
    assert "no rectifier" in result.stderr


def _npz(tmp_path: Path) -> Path:
    p = tmp_path / "x.npz"
    np.savez(
        p, x=np.random.default_rng(0).random((4, 1, 2, 4)).astype(np.float32)
    )  # 8 values per example
    return p


@pytest.mark.skipif(not BUNDLED_MODEL.is_file(), reason="bundled digitnet.pt not built")
def test_cli_bundled_default(tmp_path: Path) -> None:
    result = runner.invoke(app, ["reconstruct", "--num", "8", "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "run.json").is_file()


@pytest.mark.slow
def test_cli_alexnet_all_layers(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((300, 260, 3)) * 255).astype(np.uint8)).save(
            folder / f"{i}.jpg"
        )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "alexnet",
            "--weights",
            "none",
            "--layer",
            "all",
            "--inputs",
            str(folder),
            "--num",
            "2",
            "--save-tensors",
            "--device",
            "cpu",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "report.json").read_text())
    assert [row["name"] for row in rep["layers"]] == [f"h{i}" for i in range(1, 8)]
    with np.load(out / "tensors.npz") as z:
        for i in range(1, 8):
            assert z[f"h{i}/model/x_gen"].shape == (2, 3, 224, 224)
    assert {"grid.png", "depth.png", "metrics.csv", "report.md", "run.json"} <= {
        p.name for p in out.iterdir()
    }


@pytest.mark.slow
def test_cli_resnet18_middle_layer(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "resnet18",
            "--weights",
            "none",
            "--layer",
            "h9",
            "--num",
            "2",
            "--device",
            "cpu",
            "-o",
            str(out),
            "--format",
            "json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["layers"][0]["name"] == "h9" and rep["layers"][0]["where"].startswith("layer2")
    assert {"grid.png", "depth.png", "metrics.csv", "report.json", "report.md", "run.json"} <= {
        p.name for p in out.iterdir()
    }

"""`netprobe reconstruct`: metrics with known answers, controls, the report and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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
    control_nets,
    parse_floats,
    permuted_weights,
    pixel_metrics,
    reconstruct,
    run,
    select_layers,
    ssim,
)
from netprobe.reconstruction.metrics import ssim_direct

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
    # flat images a and b: no variance, so SSIM is the luminance term (2ab + c1)/(a² + b² + c1)
    a, b = torch.full((1, 3, 16, 16), 0.2), torch.full((1, 3, 16, 16), 0.6)
    c1 = 0.01**2
    assert float(ssim(a, b)) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1))
    pm = pixel_metrics(x, x + 0.1, mean=(0.0,), std=(1.0,))
    # clamping to [0, 1] changes a few pixels, so the PSNR is at least that of a 0.1 offset
    assert (pm["psnr"] >= 20.0 - 1e-6).all() and (pm["psnr"] < 25).all()
    torch.testing.assert_close(
        pixel_metrics(x, x, None, None)["px_rel_err"], torch.zeros(3, dtype=torch.float64)
    )


def test_ssim_on_photographs_matches_the_direct_window() -> None:
    from netprobe.data import bundled_photos

    photos = bundled_photos().x[:, :, :96, :96]  # (8, 3, 96, 96) in [0, 1]
    same, other = photos[:4], photos[4:]
    torch.testing.assert_close(ssim(same, same), torch.ones(4, dtype=torch.float64))
    assert (ssim(same, other) < 0.5).all()  # unrelated photographs
    blurred = F.avg_pool2d(same, 3, stride=1, padding=1)
    fast, direct = ssim(same, blurred), ssim_direct(same, blurred)
    torch.testing.assert_close(fast, direct, atol=1e-5, rtol=0)  # separable float32 == 2-D float64
    assert (fast > 0.5).all() and (fast < 1 - 1e-4).all()  # blurred: similar, not equal


def test_ssim_in_chunks_equals_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU batch goes through ssim in chunks (its temporaries fit in the heap): the same
    values as one pass, with a per-sample data range and a scalar one."""
    from netprobe.reconstruction import metrics as M

    g = torch.Generator().manual_seed(4)
    x = torch.rand(7, 3, 40, 36, generator=g)
    y = (x + 0.2 * torch.randn(7, 3, 40, 36, generator=g)).clamp(0, 1)
    rng = torch.linspace(0.5, 1.5, 7, dtype=torch.float64)
    whole = [M.ssim(x, y, rng), M.ssim(x, y, 1.0)]
    monkeypatch.setattr(M, "SSIM_CHUNK_BYTES", 2 * 5 * 3 * 40 * 36 * 4)  # two images a chunk
    for got, want in zip([M.ssim(x, y, rng), M.ssim(x, y, 1.0)], whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_parse_floats() -> None:
    assert parse_floats("0.5, 0.25", "--mean") == (0.5, 0.25)
    assert parse_floats(None, "--mean") is None
    with pytest.raises(OptionError, match="--std"):
        parse_floats("a,b", "--std")


# --- controls --------------------------------------------------------------------------------


def test_controls_copy_and_never_touch_the_model() -> None:
    net = DigitNet(width=16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    nets, notes = control_nets(net, net, seed=1)
    fresh, perm = nets["fresh-init"](), nets["permuted"]()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    w, wf, wp = net.features[0].weight, fresh.features[0].weight, perm.features[0].weight
    assert not torch.equal(w, wf) and not torch.equal(w, wp)
    torch.testing.assert_close(
        wp.flatten().sort().values, w.flatten().sort().values
    )  # same entries
    torch.testing.assert_close(perm.features[0].bias, net.features[0].bias)  # biases kept
    again, _ = control_nets(net, net, seed=1)
    torch.testing.assert_close(again["fresh-init"]().features[0].weight, wf)  # seeded
    assert "reset_parameters" in notes[0]
    torch.testing.assert_close(
        permuted_weights(net, 5).features[0].weight, permuted_weights(net, 5).features[0].weight
    )


def test_fresh_init_of_a_named_architecture_is_rebuilt_and_prepared_like_the_model() -> None:
    from netprobe.loading import load

    lm = load("resnet18", weights="none", seed=0)  # ReLU(inplace=True), train mode as built
    model = lm.module.eval()
    nets, notes = control_nets(lm, model, seed=0)
    fresh = nets["fresh-init"]()
    assert "fresh initialisation of resnet18" in notes[0]  # rebuilt with its own init scheme
    assert not fresh.training and not any(m.training for m in fresh.modules())
    assert all(not m.inplace for m in fresh.modules() if isinstance(m, nn.ReLU))
    p, q = next(model.parameters()), next(fresh.parameters())
    assert (p.device, p.dtype) == (q.device, q.dtype) and not torch.equal(p, q)
    again, _ = control_nets(lm, model, seed=0)
    torch.testing.assert_close(next(again["fresh-init"]().parameters()), q)


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
    # model, permuted, random-h once; fresh-init and its random-h once per init (5 by default)
    assert len(rep.samples) == len(x) * 3 * (3 + 2 * 5)
    frame = rep.to_frame()
    assert len(frame) == 3 * 5 and {"rel_err_scaled", "jaccard_thr", "ssim", "top1_agree"} <= set(
        frame.columns
    )
    assert {"err_ratio", "ci_low", "ci_high", "pairs", "verdict"} <= set(frame.columns)
    for row in rep.layer_headlines():
        assert row["err_model"] < row["err_random_h"]  # structure in real h survives the round trip
        assert row["random_h_high"] < 1 and row["random_h_verdict"] == "better"
    texts = rep.headline_text()
    assert all("lower: better than random h" in t and "8 inputs" in t for t in texts[:3])
    assert all("learned structure?" in t and "5 fresh inits × 8 inputs" in t for t in texts[3:])
    head = rep.headline()  # what run.json records
    assert set(head["rel_err_scaled"]) == {"h1", "h2", "h3"} and len(head["headline"]) == 6
    assert len(head["random_h"]) == 3 and len(head["learned_structure"]) == 3
    # timings go to run.json only (report.json stays byte-identical across runs)
    secs = head["seconds"]
    assert 0 < secs["pixel_metrics"] < secs["passes"] and "seconds" not in rep.to_dict()
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
    a = run(net, x, hidden, controls=False, gen_keep=0.5, seed=3, save_tensors=True)
    b = run(net, x, hidden, controls=False, gen_keep=0.5, seed=3)
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


def test_mlp_inputs_have_input_space_metrics_but_no_ssim() -> None:
    """Vectors are not images: SSIM does not apply (NaN) and no image grid is drawn, while
    the input-space metrics are real numbers."""
    v = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    pm = pixel_metrics(v, 2 * v, None, None)
    torch.testing.assert_close(pm["px_rel_err"], torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(pm["px_cosine"], torch.ones(5, dtype=torch.float64))
    assert torch.isfinite(pm["psnr"]).all() and torch.isnan(pm["ssim"]).all()
    net = TinyMLP()
    hidden, _ = select_layers(net, (8,), "h1,h2")
    rep = run(net, torch.randn(6, 8), hidden)
    frame = rep.to_frame()
    assert np.isnan(frame["ssim"]).all() and rep.images["x"].shape == (0,)
    assert np.isfinite(frame["px_rel_err"]).all() and np.isfinite(frame["psnr"]).all()


def test_pixel_metrics_can_be_skipped() -> None:
    net = DigitNet(width=8).eval()
    hidden, _ = select_layers(net, (1, 28, 28), "h1")
    x = _digits(4)
    on = run(net, x, hidden, controls=False).to_frame()
    off = run(net, x, hidden, controls=False, pixel_metrics=False).to_frame()
    assert np.isfinite(on["ssim"]).all() and np.isfinite(on["psnr"]).all()
    assert np.isnan(off["ssim"]).all() and np.isnan(off["psnr"]).all()
    assert (off["rel_err_scaled"] == on["rel_err_scaled"]).all()  # the rest is unchanged


def test_progress_is_reported_per_arm_batch_and_layer() -> None:
    net = DigitNet(width=8).eval()
    hidden, _ = select_layers(net, (1, 28, 28), "h1,h2")
    calls: list[tuple[int, int, str]] = []
    run(net, _digits(5), hidden, batch_size=2, progress=lambda d, t, s: calls.append((d, t, s)))
    total = 7 * 3 * 2  # nets (model, 5 fresh inits, permuted) x batches x layers
    work = [c for c in calls if "fitting" not in c[2]]
    assert [c[0] for c in work] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    assert calls[-1][2] == "permuted h2 (batch 3/3)"
    assert [c[2] for c in calls if "fitting" in c[2]] == [
        "model: fitting α",
        "fresh-init: fitting α",
        *[f"fresh-init#{k}: fitting α" for k in range(2, 6)],
        "permuted: fitting α",
    ]


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
    assert len(lines) == 1 + 4 * (3 + 2 * 5)  # model, permuted, random-h; 5 fresh inits x 2
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
            "--gen-scale",
            "calibrated",
            "--gen-keep",
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
    assert rep["options"]["unpool"] == "switches" and rep["options"]["gen_scale"] == "calibrated"


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--unpool", "max"], 2, "--unpool max"),
        (["--layer", "h9"], 2, "h1..h3"),
        (["--gen-scale", "-1"], 2, "--gen-scale -1"),
        (["--gen-keep", "1.5"], 2, "--gen-keep 1.5"),
        (["--alpha", "0.5"], 2, "--alpha"),  # renamed: --alpha is randomness's level only
        (["--keep", "0.5"], 2, "--keep"),
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


# --- inputs, shapes and batch sizes (issue items 5, 12, 14) ------------------------------------


class _RGBNet(nn.Module):
    """A small 3-channel conv net (an ImageNet-shaped model in miniature)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        self.fc = nn.Linear(8 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1)).relu()


def test_a_3_channel_model_gets_the_bundled_photographs_and_says_so(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lines: list[str] = []
    rep = reconstruct(
        _RGBNet(), input_shape=(3, 32, 32), layer="h1", num=3, controls=False, log=lines.append
    )
    assert rep.data.startswith("bundled photographs") and rep.num == 3
    assert any(
        "3 bundled photographs (3-channel model; pass --inputs or --dataset" in t for t in lines
    )
    digits: list[str] = []
    rep1 = reconstruct(DigitNet(width=8), input_shape=(1, 28, 28), num=2, log=digits.append)
    assert rep1.data.startswith("bundled MNIST digits") and "bundled MNIST digits" in digits[0]


def test_cli_logs_the_inputs_it_used(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["reconstruct", str(_checkpoint(tmp_path)), "-n", "2", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "inputs: 2 bundled MNIST digits" in result.stderr


def _exported(tmp_path: Path, batch: int) -> Path:
    torch.manual_seed(0)
    net = DigitNet(width=8).eval()
    ep = torch.export.export(net, (torch.randn(batch, 1, 28, 28),))  # static shapes
    path = tmp_path / f"digits-b{batch}.pt2"
    torch.export.save(ep, str(path))
    return path


def test_cli_runs_a_program_exported_with_a_batch_of_one(tmp_path: Path) -> None:
    """Issue 12: the common way to export (one example) crashed with exit 70."""
    out = tmp_path / "o"
    result = runner.invoke(
        app,
        ["reconstruct", str(_exported(tmp_path, 1)), "-n", "3", "--layer", "h1,h2", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "batch size 1" in result.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["num"] == 3 and rep["options"]["batch_size"] == 1
    assert "model" in rep["arms"] and "permuted" in rep["arms"]
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3 * 2 * len(rep["arms"])


def test_cli_refuses_a_program_exported_with_another_static_batch(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["reconstruct", str(_exported(tmp_path, 2)), "-o", str(tmp_path / "o"), "-q"]
    )
    assert result.exit_code == 2 and "dynamic_shapes" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_cli_takes_the_input_shape_of_a_pickled_module_from_its_inputs(tmp_path: Path) -> None:
    """Issue 14: a pickled module records no input shape; --inputs gives it."""
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    torch.save(DigitNet(width=8), model)
    digits = tmp_path / "digits.npz"
    np.savez(digits, x=np.random.default_rng(0).integers(0, 255, (4, 28, 28), dtype=np.uint8))
    args = ["reconstruct", str(model), "--trust-pickle", "-n", "2", "--no-controls"]
    result = runner.invoke(app, [*args, "--inputs", str(digits), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "input shape 1x28x28: taken from the inputs" in result.stderr
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "o2")])  # no inputs: no shape
    assert refused.exit_code == 2 and "--inputs" in refused.stderr


def test_the_input_shape_of_an_mlp_is_its_inputs_flattened(tmp_path: Path) -> None:
    lines: list[str] = []
    rep = reconstruct(
        TinyMLP(), inputs=_npz(tmp_path), layer="h1", num=4, controls=False, log=lines.append
    )
    assert rep.options["input_shape"] == [8] and "input shape 8: taken from the inputs" in lines[0]


def test_check_error_runs_the_same_pipeline(tmp_path: Path) -> None:
    from netprobe.loading import load
    from netprobe.reconstruction import check_error

    lm = load(str(_checkpoint(tmp_path)))
    err = check_error(lm, layer="h1,h2", num=4, seed=1)
    rep = reconstruct(lm, layer="h1,h2", num=4, seed=1, controls=False)
    frame = rep.to_frame()
    assert err == pytest.approx(float(frame["rel_err_scaled"].max()), rel=1e-12)


def test_cli_twice_gives_identical_numbers(tmp_path: Path) -> None:
    """Issue 9: `reconstruct resnet18 --weights none` gave rel_err 7.77 then 10.92."""
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}"
        result = runner.invoke(
            app,
            [
                "reconstruct",
                "resnet18",
                "--weights",
                "none",
                "--input-shape",
                "3,64,64",
                "--layer",
                "h3",
                "-n",
                "2",
                "--device",
                "cpu",
                "-o",
                str(out),
                "-q",
            ],
        )
        assert result.exit_code == 0, result.output
        outs.append(out)
    for name in ("metrics.csv", "summary.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    frame = (outs[0] / "summary.csv").read_text()
    assert "fresh-init" in frame and "random-h" in frame


# --- paired comparisons: calibration and wording (docs/science.md §4.7) ----------------------


def _exchangeable_pairs(rng: np.random.Generator, law: str, n: int) -> tuple[np.ndarray, ...]:
    """Per-input errors of two exchangeable arms: a shared per-input difficulty times i.i.d.
    noise of the given law (positive)."""
    c = rng.uniform(0.2, 1.0, n)
    if law == "uniform":
        u, v = rng.uniform(0.01, 1, n), rng.uniform(0.01, 1, n)
    elif law == "lognormal":
        u, v = rng.lognormal(0, 0.5, n), rng.lognormal(0, 0.5, n)
    else:  # heavy-tailed log-ratios
        u, v = np.exp(0.2 * rng.standard_t(3, n)), np.exp(0.2 * rng.standard_t(3, n))
    return c * u, c * v


@pytest.mark.parametrize("n", [4, 32, 256])
@pytest.mark.parametrize("law", ["uniform", "lognormal", "t3"])
def test_paired_ratio_says_better_or_worse_at_the_nominal_rate_on_exchangeable_arms(
    law: str, n: int
) -> None:
    from netprobe.reconstruction.paired import NO_DIFFERENCE, paired_ratio

    rng = np.random.default_rng([n, len(law)])
    reps = 3000  # Monte Carlo s.e. of a 5% rate: 0.4 points
    said = sum(
        paired_ratio(*_exchangeable_pairs(rng, law, n)).verdict != NO_DIFFERENCE
        for _ in range(reps)
    )
    assert 0.03 <= said / reps <= 0.07, (
        said / reps
    )  # nominal 5%; the t on heavy tails is a bit conservative


@pytest.mark.parametrize("k", [3, 5, 10])
def test_across_inits_is_calibrated_when_the_model_is_one_more_init(k: int) -> None:
    from netprobe.reconstruction.paired import NO_DIFFERENCE, across_inits

    rng = np.random.default_rng(k)
    reps = 3000
    said = 0
    for _ in range(reps):
        draws = rng.normal(0.4, 0.2, k + 1)  # the model and K inits: one distribution
        said += (
            across_inits(float(draws[0]), draws[1:], 64, "smaller", "larger").verdict
            != NO_DIFFERENCE
        )
    assert 0.035 <= said / reps <= 0.065, said / reps
    clear = across_inits(2.0, rng.normal(0.4, 0.2, k), 64, "smaller", "larger")
    assert clear.verdict == "larger" and clear.low > 1 and clear.inits == k


def test_paired_ratio_known_answers_and_cannot_tell() -> None:
    from netprobe.reconstruction.paired import paired_ratio

    a = np.array([0.5, 0.25, 1.0, 0.5])
    iv = paired_ratio(a, 2 * a * np.array([1.0, 1.1, 0.9, 1.05]))
    assert iv.verdict == "better" and iv.high < 1 and iv.n == 4
    assert iv.ratio == pytest.approx(np.exp(np.mean(-np.log(2 * np.array([1.0, 1.1, 0.9, 1.05])))))
    assert paired_ratio(a, 2 * a).verdict == "cannot tell"  # every input the same ratio: no spread
    assert paired_ratio(a, a).verdict == "no clear difference" and paired_ratio(a, a).ratio == 1
    assert paired_ratio([0.5], [0.9]).verdict == "cannot tell"  # one input
    # zeros and NaNs have no log-ratio and leave the pairing
    assert paired_ratio([0.0, np.nan, 0.5, 0.4, 0.3], [0.2, 0.3, 0.6, 0.5, 0.45]).n == 3


def test_ratio_wording_never_says_0_99x_higher() -> None:
    from netprobe.reconstruction.paired import Interval, fmt_ratio, ratio_phrase

    same = Interval(0.99, 0.96, 1.02, 0.5, 32, "no clear difference")
    assert (
        ratio_phrase(same, "random h")
        == "error ratio 0.99 (95% CI 0.96–1.02, 32 inputs): no clear difference from random h"
    )
    lower = Interval(0.99, 0.985, 0.995, 0.001, 256, "better")
    assert ratio_phrase(lower, "random h").endswith("1.01× lower: better than random h")
    higher = Interval(1.05, 1.01, 1.09, 0.01, 32, "worse")
    assert ratio_phrase(higher, "random h").endswith("1.05× higher: worse than random h")
    assert "higher" not in ratio_phrase(lower, "random h") and "lower" not in ratio_phrase(
        higher, "x"
    )
    assert (
        fmt_ratio(0.9993, 0.9990, 0.9996) == "0.9993"
    )  # an interval excluding 1 never prints 1.00


class _OneLayer(nn.Module):
    def __init__(self, n: int, m: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n, m, bias=False)
        self.fc2 = nn.Linear(m, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_real_h_and_random_h_exchangeable_gives_verdicts_at_about_5_percent() -> None:
    """Inputs x = W⁺z make h1 = relu(z) with i.i.d. entries independent of W, so real h and its
    permutation (random h) are exchangeable: "better"/"worse" must appear at about the 5% level
    over seeds, not in every run as the old ratio-of-means wording did."""
    said, seeds = 0, 100
    for s in range(seeds):
        torch.manual_seed(s)
        net = _OneLayer(24, 12).eval()
        z = torch.randn(32, 12, generator=torch.Generator().manual_seed(s))
        x = z @ torch.linalg.pinv(net.fc1.weight.detach()).T  # W x = z
        hidden, _ = select_layers(net, (24,), "h1")
        rep = run(net, x, hidden, seed=s, fresh_inits=1, pixel_metrics=False)
        c = next(c for c in rep.comparisons if c["control"] == "random-h")
        assert c["n"] == 32
        said += c["verdict"] in ("better", "worse")
    assert said <= 12, said  # Binomial(100, 0.05): P(>= 12) < 0.005; the old wording: 100


def test_learned_structure_on_an_untrained_model_says_no_clear_difference_at_about_5_percent() -> (
    None
):
    """A model that is itself a random initialisation of its architecture has no learned
    structure: across K fresh inits the question is answered "larger"/"smaller" at about the
    5% level (an interval over the inputs alone, with one init, said so most of the time)."""
    said, seeds = 0, 60
    for s in range(seeds):
        torch.manual_seed(1000 + s)
        net = TinyMLP().eval()
        x = torch.randn(24, 8, generator=torch.Generator().manual_seed(s))
        hidden, _ = select_layers(net, (8,), "h2")
        rep = run(net, x, hidden, seed=s, fresh_inits=4, pixel_metrics=False)
        (r,) = rep.learned_structure
        assert r["inits"] == 4
        said += r["verdict"] in ("larger", "smaller")
    assert said <= 9, said  # Binomial(60, 0.05): P(>= 9) < 0.01


def test_one_fresh_init_cannot_answer_the_learned_structure_question() -> None:
    net = TinyMLP().eval()
    hidden, _ = select_layers(net, (8,), "h1")
    rep = run(net, torch.randn(16, 8), hidden, fresh_inits=1, pixel_metrics=False)
    (r,) = rep.learned_structure
    assert r["verdict"] == "cannot tell" and "use 3 or more fresh inits" in rep.learned_text()[0]
    with pytest.raises(OptionError, match="--fresh-inits 0"):
        run(net, torch.randn(4, 8), hidden, fresh_inits=0)


def test_report_carries_the_intervals_in_frame_dict_markdown_and_table() -> None:
    from rich.console import Console

    from netprobe.render import reconstruct_table

    net = DigitNet(width=8).eval()
    hidden, _ = select_layers(net, (1, 28, 28), "h2")
    rep = run(net, _digits(6), hidden, fresh_inits=3, pixel_metrics=False, show=0)
    frame = rep.to_frame().set_index("arm")
    assert (
        frame.loc["random-h", "ratio_of"] == "model"
        and frame.loc["fresh-random-h", "ratio_of"] == "fresh-init"
    )
    assert (
        frame.loc["random-h", "ci_low"]
        <= frame.loc["random-h", "err_ratio"]
        <= frame.loc["random-h", "ci_high"]
    )
    assert np.isnan(frame.loc["model", "err_ratio"]) and frame.loc["model", "verdict"] == ""
    d = rep.to_dict()
    assert {c["control"] for c in d["comparisons"]} == {
        "random-h",
        "fresh-init",
        "permuted",
        "fresh-random-h",
    }
    assert d["learned_structure"][0]["inits"] == 3
    md = rep.to_markdown()
    assert (
        "## Learned structure" in md
        and "| ci_low | ci_high |" in md
        and "3 fresh inits × 6 inputs" in md
    )
    console = Console(width=160, record=True, color_system=None)
    console.print(reconstruct_table(rep))
    out = console.export_text()
    lo, hi = frame.loc["random-h", "ci_low"], frame.loc["random-h", "ci_high"]
    assert f"{lo:.2f}–{hi:.2f}" in out and "learned structure?" in out

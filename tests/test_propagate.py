"""`netprobe propagate`: known answers for a wide random ReLU net (the arc-cosine map, half the
units active), Lanczos against the full Jacobian, the report, the command and its errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from models import GeluNet, TinyMLP
from torch import nn
from typer.testing import CliRunner

from netprobe.cli import app
from netprobe.errors import NothingToAnalyseError
from netprobe.propagation import (
    arccos_map,
    gaussian_pairs,
    jacobian_spectra,
    linear_chain,
    predict_cosines,
    propagate,
)
from netprobe.propagation.stats import forward_stats

runner = CliRunner()


def he_mlp(d_in: int, width: int, depth: int, seed: int = 0) -> nn.Sequential:
    """A random ReLU MLP: Gaussian He init (variance 2/fan-in), no bias."""
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    for i in range(depth):
        fan_in = d_in if i == 0 else width
        lin = nn.Linear(fan_in, width, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, fan_in, generator=g) * math.sqrt(2 / fan_in))
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods)


# --- known answers -----------------------------------------------------------------------


def test_arccos_map_known_values() -> None:
    # identical inputs stay identical, orthogonal ones come out at 1/π, opposite ones at 0
    np.testing.assert_allclose(arccos_map([1.0, 0.0, -1.0]), [1.0, 1 / math.pi, 0.0], atol=1e-12)
    c = np.linspace(-1, 1, 41)
    assert (np.diff(arccos_map(c)) > 0).all() and (arccos_map(c) >= c - 1e-12).all()


def test_wide_random_relu_mlp_follows_the_arc_cosine_map_with_half_its_units_active() -> None:
    depth = 5
    net = he_mlp(256, 1024, depth)
    x, c = gaussian_pairs(64, (256,), seed=3)
    # the pairs' input cosines span the map, not only ~0 where independent draws sit
    from netprobe.propagation.stats import pair_cosines

    np.testing.assert_allclose(pair_cosines(x), c, atol=0.15)
    chain, why = linear_chain(net, x[:2], depth)
    assert chain is not None and why == "" and len(chain) == depth
    pred = predict_cosines(x, chain)
    stats, _ = forward_stats(net, x, list(range(1, depth + 1)), batch_size=64)
    for ell in range(1, depth + 1):
        gap = stats[ell].per_pair() - pred[:, ell - 1]
        assert abs(gap.mean()) < 0.02, (ell, gap.mean())
        assert abs(stats[ell].per_input().mean() - 0.5) < 0.02, ell
    # without bias the recursion is the arc-cosine map iterated from the input cosine
    c0 = pair_cosines(x)
    np.testing.assert_allclose(pred[:, 2], arccos_map(arccos_map(arccos_map(c0))), atol=1e-9)


def test_lanczos_top_singular_value_matches_the_full_jacobian() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 40), nn.ReLU(), nn.Linear(40, 128), nn.ReLU()
    )
    conv = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU()
    )
    cases = [
        (mlp, torch.randn(3, 64), {1: 2, 2: 4, 3: 6}),
        (conv, torch.randn(3, 1, 8, 8), {1: 2, 2: 5}),
    ]
    for net, x, ends in cases:
        spectra = jacobian_spectra(net, x, list(ends), steps=20)
        for ell, end in ends.items():
            for b in range(len(x)):
                J = torch.autograd.functional.jacobian(
                    lambda v, e=end, n=net: n[:e](v[None])[0], x[b]
                )
                full = torch.linalg.svdvals(J.reshape(-1, x[b].numel()).double())
                assert spectra[ell][b].top == pytest.approx(float(full[0]), rel=0.01)


def test_a_residual_mlp_gets_no_arc_cosine_prediction() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            return torch.relu(self.b(h) + h)

    chain, why = linear_chain(Residual(), torch.randn(2, 8), 2)
    assert chain is None and "h2" in why
    chain, why = linear_chain(TinyMLP(), torch.randn(2, 8), 2)
    assert chain is not None and len(chain) == 2


# --- the pipeline and the report ----------------------------------------------------------


def test_propagate_on_a_random_mlp_reports_every_layer_source_and_arm(tmp_path: Path) -> None:
    net = he_mlp(784, 256, 3)
    rep = propagate(net, input_shape=(784,), num=16, jacobian_inputs=2, lanczos_steps=8)
    frame = rep.to_frame()
    assert len(frame) == 3 * 2 * 2  # layers x sources x arms
    assert set(frame["arm"]) == {"model", "fresh-init"} and set(frame["source"]) == {
        "gaussian",
        "real",
    }
    model = frame[frame["arm"] == "model"]
    assert model["cosine_pred"].notna().all() and model["jac_top"].gt(0).all()
    assert (model["active_frac_lo"] <= model["active_frac"]).all()
    assert model["active_diff"].notna().all() and frame["dead_frac"].between(0, 1).all()
    files = rep.write(tmp_path / "o")
    assert {
        "layers.csv",
        "report.json",
        "report.md",
        "active.png",
        "cosine.png",
        "jacobian.png",
    } <= set(files)
    # same seed, same numbers
    again = propagate(net, input_shape=(784,), num=16, jacobian_inputs=2, lanczos_steps=8)
    assert again.to_frame().equals(frame)


def test_a_net_without_rectifiers_is_nothing_to_analyse() -> None:
    with pytest.raises(NothingToAnalyseError, match="no rectifier.*gelu"):
        propagate(GeluNet(), input_shape=(8,), inputs=None, num=4)


# --- the command --------------------------------------------------------------------------


def _npz(tmp_path: Path) -> Path:
    p = tmp_path / "x.npz"
    np.savez(p, x=np.random.default_rng(0).random((6, 1, 2, 4)).astype(np.float32))
    return p


def _pickled(net: torch.nn.Module, tmp_path: Path) -> list[str]:
    """`propagate` arguments for ``net`` pickled whole, with 6 vector inputs of size 8."""
    p = tmp_path / f"{type(net).__name__}.pt"
    torch.save(net, p)
    return [
        "propagate",
        str(p),
        "--trust-pickle",
        "--input-shape",
        "8",
        "--inputs",
        str(_npz(tmp_path)),
    ]


def test_cli_refuses_a_net_without_rectifiers_with_exit_4(tmp_path: Path) -> None:
    args = _pickled(GeluNet(), tmp_path)
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 4, result.output
    assert "no rectifier" in result.stderr and "gelu" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--num", "1"], "--num 1"),
        (["--jacobian-inputs", "-1"], "--jacobian-inputs"),
        (["--lanczos-steps", "1"], "--lanczos-steps"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(tmp_path: Path, args: list[str], text: str) -> None:
    result = runner.invoke(app, ["propagate", *args, "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2, result.output
    assert text in result.stderr and "Traceback" not in result.output


def test_cli_tiny_mlp_writes_every_output_and_json(tmp_path: Path) -> None:
    args = _pickled(TinyMLP(), tmp_path)
    result = runner.invoke(app, [*args, "--format", "json", "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {r["layer"] for r in data["rows"]} == {"h1", "h2"}
    out = tmp_path / "o"
    assert {"run.json", "report.md", "layers.csv", "cosine.png"} <= {f.name for f in out.iterdir()}
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "propagate" and "max_dead_frac" in run


def test_a_model_without_an_input_shape_is_named_by_the_command_that_needs_it() -> None:
    from netprobe.errors import OptionError
    from netprobe.reconstruction import reconstruct

    # a bare module records no input shape; without --inputs neither command can guess one
    with pytest.raises(OptionError, match="`netprobe propagate` needs the model's input shape"):
        propagate(TinyMLP(), num=4)
    with pytest.raises(OptionError, match="`netprobe reconstruct` needs the model's input shape"):
        reconstruct(TinyMLP(), num=4)


def test_the_shared_helpers_have_public_names() -> None:
    from netprobe.reconstruction.engine import prepared_like
    from netprobe.spectra import tridiag_quadrature
    from netprobe.spectra.lanczos import _tridiag_quadrature

    assert _tridiag_quadrature is tridiag_quadrature  # the spectra package still uses the old name
    net = prepared_like(nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True)).train(), TinyMLP())
    assert not net.training and not net[1].inplace


# --- the check rule -------------------------------------------------------------------------


def test_check_propagate_rule_fails_a_net_with_dead_units_and_passes_a_healthy_one(
    tmp_path: Path,
) -> None:
    from netprobe import zoo as chk
    from netprobe.errors import OptionError

    torch.manual_seed(0)
    healthy = TinyMLP()
    with torch.no_grad():  # He-like weights, zero bias: about half the units on per input
        for lin in (healthy.fc1, healthy.fc2):
            lin.weight.normal_(0, math.sqrt(2 / lin.in_features))
            lin.bias.zero_()
    dead = TinyMLP()
    dead.load_state_dict(healthy.state_dict())
    with torch.no_grad():
        dead.fc2.bias[:12] = -1e3  # 12 of h2's 16 units can never turn on
    x = np.random.default_rng(0).random((40, 1, 2, 4)).astype(np.float32)  # 8 features
    np.savez(tmp_path / "x.npz", x=x)
    cfg = tmp_path / "rules.toml"
    cfg.write_text(
        "[tool.netprobe.check]\nno_dead_layer = false\nmax = {}\n"
        "[tool.netprobe.check.propagate]\n"
        f'max_dead_frac = 0.5\nmin_active_frac = 0.1\nnum = 32\ninputs = "{tmp_path / "x.npz"}"\n'
    )
    rules = chk.load_config(cfg).base
    results = {}
    for name, net in (("healthy", healthy), ("dead", dead)):
        torch.save(net, tmp_path / f"{name}.pt")
        res = chk.measure(str(tmp_path / f"{name}.pt"), rules, {"trust_pickle": True})
        results[name] = {r.rule: r for r in res.rules}
    ok, bad = results["healthy"], results["dead"]
    assert ok["propagate:max_dead_frac"].status == "pass"
    assert ok["propagate:min_active_frac"].status == "pass"
    r = bad["propagate:max_dead_frac"]
    assert r.status == "fail" and r.layer == "h2" and r.value >= 0.75  # 12 of 16 at least
    assert "real inputs" in r.message and "h2" in r.message
    # the table is checked when read: unknown keys, no bound, a share outside [0, 1]
    for body, text in (
        ("max_dead = 0.5", "unknown key 'max_dead'"),
        ("num = 8", "needs a bound"),
        ("max_dead_frac = 2", "share in \\[0, 1\\]"),
    ):
        cfg.write_text(f"[tool.netprobe.check.propagate]\n{body}\n")
        with pytest.raises(OptionError, match=text):
            chk.load_config(cfg)

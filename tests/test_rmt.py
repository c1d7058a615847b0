"""Random-matrix fingerprints beyond the density (docs/science.md §6): singular-vector
delocalisation, level spacings, random plus low rank, the CSN tail fit, --compare.

The calibration tests come in two sizes: a fast one CI runs (a few shapes x laws, enough draws
to tell a 5% flag rate from 15%) and the full one, marked slow (8 shapes x 3 laws)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netprobe.iid.lowrank import residual_matrix
from netprobe.iid.powerlaw import fit_powerlaw, fit_tail
from netprobe.iid.spacing import R_POISSON, spacing_stats
from netprobe.iid.vectors import haar_ipr_pvalue, top_singular, vector_stats
from netprobe.iid.verdict import Thresholds, headline, rmt_level
from netprobe.spectra import smaller_gram

LAWS = ("gaussian", "uniform", "t5")
FAST_SHAPES = ((64, 288), (100, 100), (256, 64))
SHAPES = ((64, 64), (128, 128), (256, 128), (128, 256), (512, 64), (64, 576), (96, 864), (300, 200))


def _draw(law: str, shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    if law == "gaussian":
        x = rng.standard_normal(shape)
    elif law == "uniform":
        x = rng.uniform(-1, 1, shape)
    else:
        x = rng.standard_t(5, shape)
    return torch.from_numpy(x.astype(np.float32))


def _vector_and_spacing_p(W: torch.Tensor, rng: np.random.Generator) -> tuple[float, float]:
    """The two new tests' p-values on W, as analyse_matrix computes them (the vector test's
    Haar stage, then the shuffled entries below the screen), at level 0.05 (20 shuffles)."""
    G = smaller_gram(W).numpy()
    U, _, V = top_singular(W, G, 5, rng)
    vec = vector_stats(W, U, V, level=0.05, rng=rng, null_values=W.reshape(-1))
    ev = np.sort(np.linalg.eigvalsh(np.triu(G) + np.triu(G, 1).T))
    spc = spacing_stats(np.clip(ev, 0, None), 0, max(W.shape))
    assert spc is not None
    return vec.p, spc.p


def _flag_rates(shapes, reps: int, seed: int, laws=LAWS) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    out = {}
    for law in laws:
        pv, ps = [], []
        for shape in shapes:
            for _ in range(reps):
                a, b = _vector_and_spacing_p(_draw(law, shape, rng), rng)
                pv.append(a)
                ps.append(b)
        out[law] = (float(np.mean(np.array(pv) < 0.05)), float(np.mean(np.array(ps) < 0.05)))
    return out


# ---------------------------------------------------------------------------------------
# the nulls


def test_haar_ipr_pvalue_is_uniform_on_haar_vectors():
    rng = np.random.default_rng(1)
    for n in (16, 256):
        g = rng.standard_normal((4000, n))
        u = g / np.linalg.norm(g, axis=1, keepdims=True)
        p = np.array([haar_ipr_pvalue(float(x), n) for x in (u**4).sum(1)])
        assert 0.04 <= (p < 0.05).mean() <= 0.065, n
        assert 0.08 <= (p < 0.1).mean() <= 0.12, n
    # a vector on one entry is as localised as it gets
    assert haar_ipr_pvalue(1.0, 256) < 1e-12


def test_calibration_fast():
    """Each new test flags <= 5% of i.i.d. matrices (Gaussian, uniform, t(5)) at p < 0.05;
    180 draws per light-tailed law, 150 t(5) draws at one small shape (every t(5) layer pays
    shuffles: its top vectors fail the Haar screen): a true 15% rate passes 0.09 with
    probability about 1-2%."""
    rates = _flag_rates(FAST_SHAPES, 60, seed=2, laws=("gaussian", "uniform"))
    rates |= _flag_rates(((64, 96),), 150, seed=2, laws=("t5",))
    for law, (rv, rs) in rates.items():
        assert rv <= 0.09, (law, rates)
        assert rs <= 0.09, (law, rates)


@pytest.mark.calibration
@pytest.mark.slow
def test_calibration_full():
    rates = _flag_rates(SHAPES, 100, seed=3)
    print("flag rates at 0.05 (vectors, spacing):", rates)
    for law, (rv, rs) in rates.items():
        assert rv <= 0.065, (law, rates)
        assert rs <= 0.065, (law, rates)


def test_spacing_tells_poisson_levels():
    """Uncorrelated levels (a superposition of many independent small blocks) have ⟨r⟩ near
    0.386 and are flagged; a Wishart spectrum is not."""
    rng = np.random.default_rng(4)
    blocks = [np.linalg.eigvalsh(np.cov(rng.standard_normal((4, 40)))) for _ in range(100)]
    st = spacing_stats(np.sort(np.concatenate(blocks)), 0, 1000)
    assert st is not None and abs(st.r_mean - R_POISSON) < 0.04 and st.p < 1e-6
    W = rng.standard_normal((200, 400))
    st = spacing_stats(np.linalg.eigvalsh(W @ W.T), 0, 400)
    assert st is not None and st.p > 0.01 and abs(st.r_mean - 0.53) < 0.03


# ---------------------------------------------------------------------------------------
# planted structure


def _bbp(m: int, n: int) -> float:
    """The BBP threshold of a rank-1 spike's singular value for N(0, 1) noise: (m n)^(1/4)."""
    return (m * n) ** 0.25


def _spiked(rng, m, n, strength, support=None):
    W = rng.standard_normal((m, n))
    u = np.zeros(m)
    if support is None:
        u = rng.standard_normal(m)
    else:
        u[rng.choice(m, support, replace=False)] = rng.standard_normal(support)
    v = rng.standard_normal(n)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    return torch.from_numpy((W + strength * _bbp(m, n) * np.outer(u, v)).astype(np.float32))


def _localised_rates(reps: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    hit = {True: 0, False: 0}
    for local in (True, False):
        for _ in range(reps):
            W = _spiked(rng, 512, 256, 1.5, support=5 if local else None)
            U, _, V = top_singular(W, smaller_gram(W).numpy(), 5, rng)
            st = vector_stats(W, U, V, level=0.05, rng=rng)
            hit[local] += st.p_haar < 0.05
    return hit[True] / reps, hit[False] / reps


def test_localised_spike_is_told_from_spread_one():
    local, spread = _localised_rates(20, seed=5)
    assert local >= 0.95 and spread <= 0.1, (local, spread)


@pytest.mark.calibration
@pytest.mark.slow
def test_localised_spike_is_told_from_spread_one_full():
    local, spread = _localised_rates(200, seed=6)
    print("localised caught", local, "spread flagged", spread)
    assert local >= 0.95 and spread <= 0.05, (local, spread)


def test_residual_has_the_remaining_singular_values():
    rng = np.random.default_rng(7)
    W = _spiked(rng, 80, 120, 3.0)
    W = W + torch.from_numpy(
        (
            4 * _bbp(80, 120) * np.outer(rng.standard_normal(80), rng.standard_normal(120)) / 100
        ).astype(np.float32)
    )
    U, s, V = top_singular(W, smaller_gram(W).numpy(), 4, rng)
    Z = residual_matrix(W, U[:, :2], V[:, :2])
    assert tuple(Z.shape) == (78, 118)
    sv = np.linalg.svd(W.double().numpy(), compute_uv=False)
    sz = np.linalg.svd(Z.double().numpy(), compute_uv=False)
    np.testing.assert_allclose(sz, sv[2:], rtol=1e-4, atol=1e-4)


def _spike_run(reps: int, shape: tuple[int, int], seed: int) -> tuple[float, float]:
    from netprobe.iid import analyse_matrix

    rng = np.random.default_rng(seed)
    caught = residual_ok = 0
    for i in range(reps):
        W = _spiked(rng, *shape, 2.0)
        r = analyse_matrix(W, seed=seed * 1000 + i)
        caught += "spikes" in r.headline_failed
        residual_ok += r.lowrank is not None and r.lowrank.residual_verdict == "random-like"
    return caught / reps, residual_ok / reps


def test_planted_spike_is_caught_and_the_residual_random_like():
    caught, ok = _spike_run(6, (128, 96), seed=8)
    assert caught == 1.0 and ok >= 5 / 6, (caught, ok)


@pytest.mark.calibration
@pytest.mark.slow
def test_planted_spike_full():
    for shape in ((512, 256), (64, 288)):
        caught, ok = _spike_run(50, shape, seed=9)
        print(shape, "caught", caught, "residual random-like", ok)
        assert caught >= 0.95 and ok >= 0.9, (shape, caught, ok)


def test_headline_wording():
    assert headline((), 0, 0.0, None) == "random-like"
    assert (
        headline(("spikes",), 2, 0.123, ())
        == "random-like except 2 directions (12.3% of the energy)"
    )
    assert headline(("spikes",), 1, 0.05, ()) == "random-like except 1 direction (5% of the energy)"
    assert headline(("spikes",), 1, 0.05, ("spectrum",)) == "structured"
    assert headline(("vectors",), 0, 0.0, None) == "structured"
    assert rmt_level(Thresholds()) == pytest.approx(0.01)


# ---------------------------------------------------------------------------------------
# the tail exponent


def test_powerlaw_recovers_a_pareto_exponent():
    rng = np.random.default_rng(10)
    body = rng.uniform(0.1, 1.0, 1000)
    tail = (1.0 - rng.random(1000)) ** (-1.0 / 1.5)  # Pareto alpha = 2.5 above 1
    fit = fit_powerlaw(np.concatenate([body, tail]), rng)
    assert fit is not None
    assert fit.alpha_lo <= 2.5 <= fit.alpha_hi and abs(fit.alpha - 2.5) < 0.2
    assert fit.gof_p >= 0.1 and fit.verdict == "power law"


def test_powerlaw_says_no_on_a_wishart_spectrum():
    """MP eigenvalues have a hard upper edge: not a power law (the peer's spurious large
    alphas come from fitting one anyway)."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((300, 600))
    fit = fit_powerlaw(np.linalg.eigvalsh(W @ W.T), rng)
    assert fit is not None and fit.verdict == "no power law" and fit.gof_p < 0.1


def test_powerlaw_agrees_with_the_powerlaw_package_at_its_xmin():
    pl = pytest.importorskip("powerlaw")
    rng = np.random.default_rng(12)
    x = np.sort((1.0 - rng.random(3000)) ** (-1.0 / 2.0))  # alpha 3
    a, xmin, nt, _ = fit_tail(x)
    ref = pl.Fit(x, xmin=xmin, verbose=False)
    assert a == pytest.approx(ref.power_law.alpha, rel=1e-6)


# ---------------------------------------------------------------------------------------
# the report columns and check rules


def test_layer_row_has_the_headline_columns_and_rules_can_use_them():
    import pandas as pd

    from netprobe.iid import analyse_matrix
    from netprobe.zoo.rules import _bound_rule

    rng = np.random.default_rng(13)
    r = analyse_matrix(_spiked(rng, 96, 64, 3.0, support=2), name="planted", seed=1)
    row = r.row()
    assert row["headline"].startswith("random-like except 1 direction")
    assert row["lowrank_k"] == 1 and 0 < row["lowrank_energy"] < 1
    assert row["vectors_localised"] >= 1 and row["residual_random_like"] == 1.0
    assert math.isfinite(row["spacing_r"]) and math.isfinite(row["plaw_alpha"])
    frame = pd.DataFrame([row])
    assert _bound_rule(frame, "max", "vectors_localised", 0).status == "fail"
    assert _bound_rule(frame, "min", "residual_random_like", 1).status == "pass"
    d = r.to_dict()
    assert d["headline"] == row["headline"] and d["lowrank"]["k"] == 1


# ---------------------------------------------------------------------------------------
# --compare OTHER and the figures


def test_cli_compare_two_checkpoints(tmp_path):
    """Two state dicts of the bundled digit net, the second with a planted rank-1 direction in
    classifier.1: compare.csv has every common layer, the planted layer's spike count goes up,
    and the figures include the residual and the comparison."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from netprobe.archs import DigitNet
    from netprobe.cli import app

    torch.manual_seed(0)
    net = DigitNet()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(net.state_dict(), a)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    W = sd["classifier.1.weight"]
    m, n = W.shape
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(m), rng.standard_normal(n)
    spike = 4 * float(W.std()) * _bbp(m, n) * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    sd["classifier.1.weight"] = W + torch.from_numpy(spike.astype(np.float32))
    torch.save(sd, b)
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["randomness", str(a), "--compare", str(b), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.stderr
    names = {p.name for p in out.iterdir()}
    assert {"compare.csv", "compare.png", "report.md"} <= names
    rows = pd.read_csv(out / "compare.csv")
    row = rows[rows["layer"] == "classifier.1.weight"].iloc[0]
    assert row["spikes_b"] - row["spikes_a"] >= 1 and row["headline_b"] != "random-like"
    assert "Compared with" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["compare"]["layers"]

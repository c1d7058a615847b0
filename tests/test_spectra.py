"""Known answers for the random-matrix laws, the spectra and their nulls (netprobe.spectra)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from netprobe import spectra as sp


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Small eigenproblems run faster on one thread (and the CI machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("lam", [1.0, 0.5, 0.25, 0.1, 0.05])
def test_mp_density_integrates_to_one_with_moments_1_and_1_plus_lambda(lam: float) -> None:
    a, b = sp.mp_edges(lam)
    m0 = quad(lambda x: sp.mp_pdf(x, lam), a, b, limit=200)[0]
    m1 = quad(lambda x: x * sp.mp_pdf(x, lam), a, b, limit=200)[0]
    m2 = quad(lambda x: x * x * sp.mp_pdf(x, lam), a, b, limit=200)[0]
    assert m0 == pytest.approx(1.0, abs=1e-8)
    assert m1 == pytest.approx(1.0, abs=1e-8)
    assert m2 == pytest.approx(1.0 + lam, abs=1e-8)
    assert float(sp.mp_pdf(a - 1e-3, lam)) == 0.0 and float(sp.mp_pdf(b + 1e-3, lam)) == 0.0


@pytest.mark.parametrize("lam", [1.0, 0.3, 0.05])
def test_mp_cdf_closed_form_matches_the_integral_of_the_density(lam: float) -> None:
    a, b = sp.mp_edges(lam)
    for x in np.linspace(a, b, 9):
        want = quad(lambda t: sp.mp_pdf(t, lam), a, x, limit=200)[0] if x > a else 0.0
        assert float(sp.mp_cdf(x, lam)) == pytest.approx(want, abs=1e-8)
    assert float(sp.mp_cdf(b + 1, lam)) == 1.0 and float(sp.mp_cdf(max(a - 0.1, 0), lam)) == 0.0


def test_quarter_circle_is_the_square_case_of_the_singular_value_law() -> None:
    s = np.linspace(0.01, 1.99, 50)
    np.testing.assert_allclose(sp.sv_pdf(s, 1.0), sp.quarter_circle_pdf(s), rtol=1e-10)
    assert quad(sp.quarter_circle_pdf, 0, 2)[0] == pytest.approx(1.0, abs=1e-8)
    assert quad(lambda x: x * x * sp.quarter_circle_pdf(x), 0, 2)[0] == pytest.approx(
        1.0, abs=1e-8
    )  # E s^2 = 1


def test_tracy_widom_quantiles_match_the_tables() -> None:
    # Tracy-Widom beta=1 (Johnstone 2001, Table 1 / Bornemann 2010)
    assert sp.tw1_quantile(0.95) == pytest.approx(0.9793, abs=5e-4)
    assert sp.tw1_quantile(0.99) == pytest.approx(2.0234, abs=5e-4)
    assert sp.tw1_cdf(-1.2686) == pytest.approx(0.5, abs=1e-3)


def _top100_rel_error(W: torch.Tensor) -> tuple[float, str]:
    ev, _, route = sp.exact_eigenvalues(W)
    s = np.sqrt(ev[::-1])[:100]
    ref = np.linalg.svd(W.double().numpy(), compute_uv=False)[:100]
    return float(np.max(np.abs(s - ref) / ref)), route


def test_exact_singular_values_match_float64_svd_to_1e4() -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(300, 700, generator=g)
    err, route = _top100_rel_error(W)
    assert route == "gram-f32" and err < 1e-4
    err, _ = _top100_rel_error(W.T.contiguous())  # tall: the other Gram
    assert err < 1e-4
    u, v = torch.randn(300, 1, generator=g), torch.randn(1, 700, generator=g)
    spiked = W + 40 * (300 * 700) ** 0.25 * (u / u.norm()) @ (v / v.norm())
    err, _ = _top100_rel_error(spiked)
    assert err < 1e-4


def test_low_rank_matrix_takes_the_float64_route() -> None:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(120, 5, generator=g) @ torch.randn(5, 200, generator=g)  # rank 5: s_6.. ~ 0
    W = W + 1e-3 * torch.randn(120, 200, generator=g)
    err, route = _top100_rel_error(W)
    assert route in ("gram-f64", "svd-f64") and err < 1e-4


def test_laguerre_model_matches_gaussian_matrices() -> None:
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    k, n = 20, 50
    model = np.array([sp.laguerre_eigenvalues(k, n, rng)[-1] for _ in range(300)])
    real = np.array(
        [
            torch.linalg.eigvalsh(
                (lambda A: A @ A.T)(torch.randn(k, n, generator=g, dtype=torch.float64))
            )[-1].item()
            for _ in range(300)
        ]
    )
    se = math.sqrt(model.var() / 300 + real.var() / 300)
    assert abs(model.mean() - real.mean()) < 4 * se
    mu, s = sp.tw_center_scale(k, n)
    assert abs(real.mean() - (mu - 1.2065 * s)) < 0.1 * mu  # TW1 mean is -1.2065


@pytest.mark.parametrize("k,n", [(2, 3), (30, 30), (40, 400), (300, 700)])
def test_laguerre_counts_are_the_same_draws_eigenvalues_counted(k: int, n: int) -> None:
    # Sturm counts at arbitrary edges (below, inside, above and beyond the spectrum) agree
    # with counting the eigenvalues dsterf gives for the same seeded draw
    ev = sp.laguerre_eigenvalues(k, n, np.random.default_rng(k + n))
    edges = np.concatenate(
        [[-1.0, 0.0], np.linspace(ev[0] * 0.5, ev[-1] * 1.2, 57), ev[[0, -1]] * 1.001]
    )
    counts = sp.laguerre_counts(k, n, np.random.default_rng(k + n), edges)
    np.testing.assert_array_equal(counts, np.searchsorted(ev, edges))


def test_spectrum_ks_pvalues_are_calibrated_for_gaussian_spectra() -> None:
    rng = np.random.default_rng(3)
    ps = []
    for i in range(240):
        k = (24, 64, 150)[i % 3]
        lam = (1.0, 0.4, 0.1, 0.05)[i % 4]
        n = int(k / lam)
        ev = sp.laguerre_eigenvalues(k, n, rng)
        ps.append(sp.spectrum_ks_pvalue(sp._ks_normalised(ev, k, n), k))
    ps = np.array(ps)
    assert 0.01 <= np.mean(ps < 0.1) <= 0.18
    assert np.mean(ps < 0.0125) <= 0.04
    assert 0.35 < np.median(ps) < 0.65


def test_spectrum_null_extrapolates_beyond_the_table() -> None:
    m4096, _ = sp.spectrum_null(4096)
    m8192, s8192 = sp.spectrum_null(8192)
    assert m8192 == pytest.approx(m4096 + 0.40 * math.log(2), abs=0.1)  # +0.40 per unit of log k
    assert 0.3 < s8192 < 0.4


@pytest.mark.slow
def test_null_tables_reproduce() -> None:
    """The shipped null tables come out of their generators (smaller draws, same seed)."""
    from netprobe.iid import LF_LEVELS, LF_TABLE, simulate_lilliefors_null

    v = sp.simulate_spectrum_null(64, 1000)
    row = dict((r[0], r[1:3]) for r in sp.NULL_MOMENTS)[64]
    assert v.mean() == pytest.approx(row[0], abs=4 * row[1] / math.sqrt(1000))
    d = simulate_lilliefors_null(1024, 20000)
    q05 = float(np.quantile(d, 0.95))
    assert q05 == pytest.approx(LF_TABLE[1][LF_LEVELS.index(0.05)], abs=0.01)


def test_rank_one_spike_above_bbp_is_counted_once() -> None:
    g = torch.Generator().manual_seed(2)
    k, n = 200, 500
    W = torch.randn(k, n, generator=g, dtype=torch.float64)
    u, v = (
        torch.randn(k, 1, generator=g, dtype=torch.float64),
        torch.randn(1, n, generator=g, dtype=torch.float64),
    )
    theta = 2.0 * (k * n) ** 0.25  # BBP threshold for singular values: (k n)^(1/4) sigma
    ev = torch.linalg.eigvalsh(
        (W + theta * (u / u.norm()) @ (v / v.norm()))
        @ (W + theta * (u / u.norm()) @ (v / v.norm())).T
    ).numpy()
    spk = sp.count_spikes(ev, k, n, 0.0125)
    assert spk.count == 1 and spk.p_max < 1e-6
    assert spk.sigma2 == pytest.approx(1.0, rel=0.02)
    ev0 = torch.linalg.eigvalsh(W @ W.T).numpy()
    assert sp.count_spikes(ev0, k, n, 0.0125).count == 0


def test_slq_approximates_the_exact_spectral_distribution() -> None:
    g = torch.Generator().manual_seed(4)
    W = torch.randn(2048, 512, generator=g)
    for amp in (4.0, 3.0):
        u, v = torch.randn(2048, 1, generator=g), torch.randn(1, 512, generator=g)
        W += amp * (2048 * 512) ** 0.25 * (u / u.norm()) @ (v / v.norm())
    ev, _, _ = sp.exact_eigenvalues(W)
    qd = sp.slq(W, probes=16, steps=10, generator=torch.Generator().manual_seed(0))
    F = qd.cdf(ev)
    i = np.arange(1, 513)
    ks = max(np.max(np.abs(i / 512 - F)), np.max(np.abs(F - (i - 1) / 512)))
    assert ks < 0.03
    assert qd.max_node() == pytest.approx(ev[-1], rel=1e-5)  # the top spike converges first
    m, s = sp.approx_null(512, 2048, 16, 10, reps=8)
    assert math.isfinite(m) and s > 0
    # the same route on a wide matrix (G = W W^T)
    qd2 = sp.slq(W.T.contiguous(), probes=16, steps=10, generator=torch.Generator().manual_seed(0))
    assert qd2.max_node() == pytest.approx(ev[-1], rel=1e-5)


@pytest.mark.parametrize("probes", [1, 3, 8])
@pytest.mark.parametrize("shape", [(700, 130), (130, 700)])
def test_gram_apply_routes_agree_with_the_gram_matrix(shape: tuple[int, int], probes: int) -> None:
    """One GEMV per probe (numpy, <= 4 probes), GEMM on the block (numpy, more), and the torch
    route the GPU takes (run here on CPU tensors), with slabs small enough to split W."""
    g = torch.Generator().manual_seed(9)
    W = torch.randn(*shape, generator=g)
    rows_small = shape[0] <= shape[1]
    k = min(shape)
    V = torch.randn(k, probes, generator=g)
    W64 = W.double()
    want = (W64 @ W64.T if rows_small else W64.T @ W64) @ V.double()
    got_np = sp._gram_apply(W.numpy(), V.numpy(), rows_small, cache_elems=8192)
    got_t = sp._gram_apply(W, V, rows_small, cache_elems=8192)
    assert isinstance(got_np, np.ndarray) and got_np.shape == (k, probes)
    np.testing.assert_allclose(got_np, want.numpy(), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(got_t.numpy(), want.numpy(), rtol=1e-4, atol=1e-2)


def test_sigma_mp_is_one_for_gaussian_and_smaller_with_spikes() -> None:
    g = torch.Generator().manual_seed(5)
    W = torch.randn(400, 800, generator=g, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(W @ W.T).numpy()
    assert sp.fit_sigma_mp(ev / ev.mean(), 0.5) == pytest.approx(1.0, abs=0.06)
    U = torch.linalg.qr(torch.randn(400, 20, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(800, 20, generator=g, dtype=torch.float64))[0]
    S = W + 60 * U @ V.T  # 20 strong spikes holding much of the energy
    ev2 = torch.linalg.eigvalsh(S @ S.T).numpy()
    assert sp.fit_sigma_mp(ev2 / ev2.mean(), 0.5) < 0.9


@pytest.mark.gpu
def test_cuda_spectra_match_cpu() -> None:
    W = torch.randn(256, 600, generator=torch.Generator().manual_seed(0))
    ev_cpu, _, _ = sp.exact_eigenvalues(W)
    ev_gpu, _, _ = sp.exact_eigenvalues(W.cuda())
    np.testing.assert_allclose(ev_gpu[-100:], ev_cpu[-100:], rtol=1e-4)
    qd = sp.slq(W.cuda(), probes=16, steps=8)
    assert qd.max_node() == pytest.approx(ev_cpu[-1], rel=1e-3)


# --- exchangeable nulls: sequential Monte Carlo p-values (netprobe.spectra.permutation) ------


def test_sequential_pvalue_stops_at_h_exceedances_or_the_cap() -> None:
    """Besag-Clifford: h exceedances after l draws give h / l; at the cap with g < h,
    (g + 1) / (draws + 1)."""
    seq = sp.SequentialPvalue(observed=1.0, shape="tw", h=3, cap=50)
    for v in [0.5, 2.0, 0.1, 1.5, 0.2, 3.0, 9.0]:
        seq.add(v)
    assert seq.done and seq.stopped == "exceedances" and len(seq.draws) == 6
    assert seq.result() == (0.5, "sequential")
    cap = sp.SequentialPvalue(observed=1.0, shape="tw", h=3, cap=10)
    for v in [0.0] * 9 + [2.0, 5.0]:
        cap.add(v)
    assert cap.stopped == "cap" and len(cap.draws) == 10 and cap.result() == (2 / 11, "monte-carlo")


def test_fitted_tail_recovers_tw_and_ks_tails_from_draws() -> None:
    """When no draw reaches the statistic, the p-value is the Gaussian null's shape moved and
    scaled to the draws: on draws from TW1 itself (shifted and scaled) it gives TW1's tail."""
    rng = np.random.default_rng(0)
    # TW1 draws: the largest eigenvalue of Gaussian 40 x 400 matrices, standardised
    mu, s = sp.tw_center_scale(40, 400)
    tw = np.array([(sp.laguerre_eigenvalues(40, 400, rng)[-1] - mu) / s for _ in range(400)])
    draws = 5.0 + 2.0 * tw  # another location and scale
    x = 5.0 + 2.0 * 3.0  # TW1 at 3.0: upper tail 0.0049
    assert sp.fitted_tail(x, draws, "tw") == pytest.approx(1 - sp.tw1_cdf(3.0), rel=0.5)
    seq = sp.SequentialPvalue(observed=x + 100, shape="tw", h=3, cap=30)
    for v in draws:
        seq.add(float(v))
    assert seq.stopped == "cap" and len(seq.draws) == 30  # no draw reached it
    p, how = seq.result()
    assert how == "fitted" and p < 1e-4  # far beyond: the fitted tail, below 1 / 31
    near = sp.SequentialPvalue(observed=float(draws[:30].max()) + 1e-9, shape="tw", h=3, cap=30)
    for v in draws[:30]:
        near.add(float(v))
    assert near.result()[0] <= 1 / 31  # never above the Monte Carlo bound
    z = np.array(sp.NULL_Z)
    ks_draws = rng.standard_normal(2000) * 0.5 + 1.0  # location 1, scale 0.5
    assert sp.fitted_tail(1.0 + 0.5 * z[-4], ks_draws, "ks") == pytest.approx(
        sp.NULL_LEVELS[-4], rel=0.3
    )


def test_shuffled_eigenvalues_permute_the_entries() -> None:
    """A shuffle keeps the entries (so the trace) and, for a full-size draw, draws every
    permutation: the trace is exact, the spectrum changes."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(30, 70, generator=g) + torch.linspace(-3, 3, 30)[:, None]  # row means
    ev = sp.shuffled_eigenvalues(W.reshape(-1), (30, 70), np.random.default_rng(1))
    assert ev.sum() == pytest.approx(float((W.double() ** 2).sum()), rel=1e-5)
    assert ev.shape == (30,) and np.all(np.diff(ev) >= 0)
    own = np.linalg.eigvalsh((W @ W.T).double().numpy())
    assert own[-1] > 1.5 * ev[-1]  # the row structure is gone after the shuffle
    small = sp.shuffled_eigenvalues(W.reshape(-1), (20, 40), np.random.default_rng(1))
    assert small.shape == (20,)


@pytest.mark.parametrize("route", ["blocks", "permutation"])
def test_draw_indices_is_a_uniform_ordered_sample_in_memory_of_the_draw(monkeypatch, route):
    """Both routes (block by block above PERMUTE_MAX; the head of one int32 permutation
    below) give k distinct indices, each index equally likely in the sample and in first
    place (known answer: 1/20 each)."""
    from netprobe.spectra import permutation as P

    if route == "blocks":
        monkeypatch.setattr(P, "PERMUTE_MAX", 0)
    rng = np.random.default_rng(3)
    a = P.draw_indices(3 * P.ARANGE_MAX + 17, 50_000, rng)
    assert len(a) == 50_000 and len(np.unique(a)) == 50_000
    assert a.min() >= 0 and a.max() < 3 * P.ARANGE_MAX + 17
    assert sorted(P.draw_indices(10, 10, rng)) == list(range(10))
    monkeypatch.setattr(P, "ARANGE_MAX", 6)  # 20 entries in 4 blocks
    seen, first = np.zeros(20), np.zeros(20)
    for _ in range(8000):
        d = P.draw_indices(20, 5, rng)
        assert len(set(d.tolist())) == 5
        seen[d] += 1
        first[d[0]] += 1
    # binomial sd of each share: sqrt(p(1-p)/n) -> 0.0011 (seen), 0.0024 (first)
    assert np.abs(seen / seen.sum() - 0.05).max() < 0.006
    assert np.abs(first / first.sum() - 0.05).max() < 0.012

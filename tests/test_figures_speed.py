"""The cheap figure primitives (docs/design.md, "Speed") show what every entry showed."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from netprobe.plots import QQ_POINTS, _qq_points


def test_qq_points_follow_the_full_qq_curve_tails_included() -> None:
    rng = np.random.default_rng(0)
    for z in (rng.standard_normal(65_536), rng.standard_t(3, 65_536), rng.uniform(-2, 2, 9_000)):
        qx, qy = _qq_points(z)
        assert len(qx) == QQ_POINTS
        # the extremes are the sample's own smallest and largest entries at their plotting
        # positions, where heavy or light tails show
        n = len(z)
        assert np.isclose(qx[0], ndtri(0.5 / n)) and np.isclose(qx[-1], -ndtri(0.5 / n))
        assert np.isclose(qy[0], z.min())
        assert np.isclose(qy[-1], z.max())
        # every point lies on the every-entry curve: the k-th smallest entry at plotting
        # position (k - 0.5) / n, joined linearly in probability
        positions = (np.arange(1, n + 1) - 0.5) / n
        assert np.allclose(np.interp(ndtr(qx), positions, np.sort(z)), qy, atol=1e-9)
        assert np.all(np.diff(qx) > 0) and np.all(np.diff(qy) >= 0)


def test_qq_points_keep_every_entry_of_a_small_sample() -> None:
    z = np.array([3.0, -1.0, 0.5, 2.0])
    qx, qy = _qq_points(z)
    assert np.array_equal(qy, np.sort(z))
    assert np.allclose(qx, ndtri((np.arange(1, 5) - 0.5) / 4))

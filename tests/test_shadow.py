"""SHADOW generation, mixing and the experiment (netprobe.shadow), on tiny nets and data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from netprobe import shadow as sh
from netprobe.data import Dataset
from netprobe.errors import NetprobeError, OptionError
from netprobe.reverse import ReverseNet


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine spinning OpenMP
    threads make them many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyConv(nn.Module):
    """conv-ReLU-pool x2 on 1x8x8, then a ReLU hidden layer: h1 4x8x8, h2 8x4x4, h3 16."""

    def __init__(self, classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # -> 4x4x4
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # -> 8x2x2
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def quadrant_data(n: int, seed: int) -> Dataset:
    """8x8 images whose class (0..2) is the bright quadrant, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    for c, (r, k) in enumerate([(0, 0), (0, 4), (4, 0)]):
        x[y == c, :, r : r + 4, k : k + 4] += 0.7
    return Dataset(x=x.clamp(0, 1), y=y, classes=["a", "b", "c"], source=f"quadrants({n}, seed {seed})")


def tiny_experiment(arms: str, ratio: float = 1.0, epochs: int = 2, seeds=(0,), **kw):
    train, test = quadrant_data(96, 1), quadrant_data(48, 2)
    torch.manual_seed(0)  # the same starting weights in every call
    spec = sh.ModelSpec("tiny", {}, (1, 8, 8), None, None, None, "tiny", base=TinyConv(), num_classes=3)
    data = sh.prepare_data(train, test, None, spec, {"source": "quadrants"})
    settings = sh.ShadowSettings(layer=2, ratio=ratio, keep=kw.pop("keep", 1.0))
    cfg = sh.TrainSettings(epochs=epochs, batch_size=32, lr=3e-3, warmup=kw.pop("warmup", 0))
    results = sh.run_experiment(data, spec, sh.parse_arms(arms), list(seeds), settings, cfg, **kw)
    return data, spec, settings, results


# --- the SHADOW batch ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["match", "theory"])
@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_shadow_batch_has_real_labels_and_real_shapes(scale: str, keep: float) -> None:
    torch.manual_seed(0)
    model = TinyConv().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(10, 1, 8, 8)
    y = torch.randint(0, 3, (10,))
    aug = sh.Augmenter(sh.ShadowSettings(layer=2, ratio=0.7, keep=keep, smooth=0.5, scale=scale))
    xt, yt, w = aug(model, x, y, torch.Generator().manual_seed(3))
    assert xt.shape == x.shape and xt.dtype == x.dtype
    assert yt is y or torch.equal(yt, y)
    assert w == 0.7
    assert torch.isfinite(xt).all() and not torch.equal(xt, x)
    assert not xt.requires_grad
    # the model is untouched: weights, train mode, no gradients left behind
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.training and all(p.grad is None for p in model.parameters())
    if scale == "match":  # each x̃ carries its real example's mean and std
        torch.testing.assert_close(xt.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5, rtol=0)
        torch.testing.assert_close(xt.std((1, 2, 3)), x.std((1, 2, 3)), atol=1e-5, rtol=1e-5)


def test_shadow_batch_is_a_function_of_the_generator() -> None:
    model = TinyConv()
    x, y = torch.randn(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)
    aug = sh.Augmenter(sh.ShadowSettings(layer=2, keep=0.5))
    a = aug(model, x, y, torch.Generator().manual_seed(1))[0]
    b = aug(model, x, y, torch.Generator().manual_seed(1))[0]
    c = aug(model, x, y, torch.Generator().manual_seed(2))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


class DropoutBelowH2(nn.Module):
    """Dropout between h1 and h2: the train-mode h2 is not the h2 that generation uses."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.5),
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("kind", ["plain", "dropout above h2", "dropout below h2"])
def test_one_pass_forward_gives_the_same_shadow_batch_and_the_true_gradient(kind: str) -> None:
    """fit's one-pass route (Augmenter.shared_forward): the training forward is also the generation
    graph. x̃ must equal the two-pass hook's, and the output's gradient a plain forward's, bit for bit."""
    torch.manual_seed(0)
    model = {"plain": TinyConv(), "dropout above h2": TinyConv(dropout=0.5), "dropout below h2": DropoutBelowH2()}[kind]
    model.train()
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))
    aug = sh.Augmenter(sh.ShadowSettings(layer=2, keep=0.5, smooth=0.5))
    ref = aug(model, x, y, torch.Generator().manual_seed(3))[0]
    torch.manual_seed(7)  # the dropout masks
    got = aug.shared_forward(model, model, x, y, torch.Generator().manual_seed(3))
    assert got is not None
    out, (xt, yt, w) = got
    assert torch.equal(xt, ref) and torch.equal(yt, y) and w == 1.0
    nn.functional.cross_entropy(out, y).backward()
    one_pass = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.manual_seed(7)
    nn.functional.cross_entropy(model(x), y).backward()
    for a, p in zip(one_pass, model.parameters(), strict=True):
        assert torch.equal(a, p.grad)


def test_one_pass_forward_steps_aside_where_it_cannot_match() -> None:
    """Batch norm in training mode, scale=theory and ratio 0 take the two-pass hook."""
    x, y = torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    g = torch.Generator().manual_seed(0)
    assert sh.Augmenter(sh.ShadowSettings(layer=2)).shared_forward(bn, bn, x, y, g) is None
    for settings in (sh.ShadowSettings(layer=2, scale="theory"), sh.ShadowSettings(layer=2, ratio=0.0)):
        assert sh.Augmenter(settings).shared_forward(TinyConv(), TinyConv(), x, y, g) is None


def test_shadow_training_is_the_same_with_one_pass_or_two() -> None:
    """fit with the one-pass hook and with the plain hook train to the same weights, bit for bit."""
    from netprobe.training import fit

    class TwoPass:
        def __init__(self) -> None:
            self.aug = sh.Augmenter(sh.ShadowSettings(layer=2, keep=0.5))

        def __call__(self, *a):  # no shared_forward: fit runs its own forward
            return self.aug(*a)

    weights = []
    for hook in (sh.Augmenter(sh.ShadowSettings(layer=2, keep=0.5)), TwoPass()):
        torch.manual_seed(0)
        model = TinyConv(dropout=0.3)
        fit(model, quadrant_data(64, 1), epochs=2, batch_size=16, seed=4, augment=hook)
        weights.append(model.state_dict())
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k


def test_synthesize_known_answer_one_orthogonal_layer() -> None:
    """h = relu(Q x) with orthogonal Q: the reverse net gives x̃ ∝ Qᵀ relu(Q x) (no ReLU into pixels);
    under scale=match that is standardised to x's mean and std."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    lin = nn.Linear(16, 16, bias=False)
    lin.weight.data.copy_(q)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(5, 16)
    xt = sh.synthesize(model, x, sh.ShadowSettings(layer=1, scale="match"), seed=0)
    raw = torch.relu(x @ q.T) @ q  # Qᵀ h, one row per example
    want = sh.match_moments(raw, x)
    torch.testing.assert_close(xt, want, atol=1e-5, rtol=1e-5)
    # and scale=theory is the reverse net's own output, α included
    th = sh.synthesize(model, x, sh.ShadowSettings(layer=1, scale="theory"), seed=0)
    rn = ReverseNet(model, alpha="theory", seed=0)
    rn.fit(x, 1)
    torch.testing.assert_close(th, rn.generate(rn.forward(x, 1), 1, rn.forward(x, 1).h(1)))
    assert torch.allclose(th / th.norm(dim=1, keepdim=True), raw / raw.norm(dim=1, keepdim=True), atol=1e-5)


def test_match_moments_handles_constant_synthetic_input() -> None:
    x = torch.randn(3, 1, 4, 4)
    out = sh.match_moments(torch.zeros(3, 1, 4, 4), x)
    torch.testing.assert_close(out, x.mean((1, 2, 3), keepdim=True).expand_as(x))


def test_synthetic_error_is_the_error_on_generated_test_inputs() -> None:
    model = TinyConv()
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,))
    s = sh.ShadowSettings(layer=2)
    err, loss = sh.synthetic_error(model, x, y, s, seed=4, batch_size=7)  # chunks of 7
    xt = sh.synthetic_set(model, x, s, seed=4, batch_size=7)
    with torch.no_grad():
        want = float((model.eval()(xt).argmax(1) != y).float().mean())
    assert err == pytest.approx(want) and math.isfinite(loss)


# --- options -------------------------------------------------------------------------------


def test_parse_arms_and_seeds() -> None:
    assert [a.name for a in sh.parse_arms("baseline, shadow+dropout")] == ["baseline", "shadow+dropout"]
    assert sh.parse_arms("shadow+dropout")[0].reference == "baseline+dropout"
    assert sh.parse_arms("shadow")[0].slug == "shadow" and sh.Arm("shadow+dropout").slug == "shadow-dropout"
    assert sh.parse_seeds("0,1,2") == [0, 1, 2] and sh.parse_seeds("3-5") == [3, 4, 5]
    for bad in ("baseline,shadw", "", "shadow,shadow"):
        with pytest.raises(OptionError, match="--arms"):
            sh.parse_arms(bad)
    for bad in ("a", "1,1", ""):
        with pytest.raises(OptionError, match="--seeds"):
            sh.parse_seeds(bad)
    with pytest.raises(OptionError, match="--gen-keep"):
        sh.ShadowSettings(keep=0.0).check()
    with pytest.raises(OptionError, match="--unpool"):
        sh.ShadowSettings(unpool="nearest").check()
    with pytest.raises(OptionError, match="--warmup"):
        sh.TrainSettings(epochs=2, warmup=2).check()


def test_set_dropout_uses_existing_modules_or_hooks_the_head() -> None:
    m = TinyConv(dropout=0.0)
    assert "1 dropout module" in sh.set_dropout(m, 0.5)
    assert m.head[3].p == 0.5
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    keys = list(plain.state_dict())
    how = sh.set_dropout(plain, 0.5)
    assert "3" in how and list(plain.state_dict()) == keys  # the head, state dict unchanged
    x = torch.ones(4, 1, 8, 8)
    torch.manual_seed(0)
    a = plain.train()(x)
    torch.manual_seed(1)
    b = plain(x)
    assert not torch.equal(a, b)  # dropout acts in training
    plain.eval()
    assert torch.equal(plain(x), plain(x))


def test_model_spec_same_start_per_seed_and_new_head() -> None:
    spec = sh.model_spec((1, 28, 28), 10)
    assert spec.arch == "digitnet" and spec.input_shape == (1, 28, 28)
    a, b, c = spec.build(0), spec.build(0), spec.build(1)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["features.0.weight"], c.state_dict()["features.0.weight"])
    assert sh.model_spec((3, 32, 32), 100).arch == "smallvgg"
    base = sh.ModelSpec("tiny", {}, (1, 8, 8), None, None, None, "t", base=TinyConv(classes=3), new_head=True, num_classes=5)
    m0, m1 = base.build(0), base.build(0)
    assert m0.head[4].out_features == 5 and torch.equal(m0.head[4].weight, m1.head[4].weight)
    assert torch.equal(m0.features[0].weight, base.base.features[0].weight)  # the body is kept
    with pytest.raises(OptionError, match="--arch"):
        sh.model_spec((1, 28, 28), 10, arch="resnet1800")


def test_load_splits_single_split_npz_is_split_stratified_and_recorded(tmp_path) -> None:
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.integers(0, 255, (50, 8, 8), dtype=np.uint8), y=np.repeat(np.arange(5), 10))
    train, test, val, info = sh.load_splits(str(p), test_fraction=0.2, val_fraction=0.25, split_seed=3)
    assert len(test) == 10 and sorted(test.y.tolist()) == sorted(list(range(5)) * 2)
    assert len(train) + len(val) == 40 and info["split_seed"] == 3 and "stratified" in info["split"]
    again = sh.load_splits(str(p), test_fraction=0.2, val_fraction=0.25, split_seed=3)
    assert torch.equal(again[1].x, test.x)


def test_image_folder_with_train_and_test_folders_keeps_its_split(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    train, test, val, info = sh.load_splits(str(tmp_path))
    assert (len(train), len(test), val) == (6, 4, None) and info["split"] == "the source's own train/test split"
    spec = sh.model_spec(train.shape, 2)
    data = sh.prepare_data(train, test, val, spec, info)
    assert spec.arch == "digitnet" and data.train.x.shape == (6, 1, 28, 28) and data.classes == ["cat", "dog"]
    assert len(data.mean) == 1 and data.info["normalisation"].startswith("the training data's")


# --- the experiment ------------------------------------------------------------------------


def test_ratio_zero_reproduces_the_baseline_arm_exactly() -> None:
    """A SHADOW arm with ratio 0 still generates every batch (so generation itself must leave the
    model, the RNG and the data order alone) and must match the baseline bit for bit."""
    _, _, _, res = tiny_experiment("baseline,shadow", ratio=0.0, epochs=2)
    base, shad = res
    keys = ["train_loss", "train_accuracy", "test_loss", "test_error", "synthetic_test_error"]
    for rb, rs in zip(base.rows, shad.rows, strict=True):
        assert {k: rb[k] for k in keys} == {k: rs[k] for k in keys}
    for k, v in base.model.state_dict().items():
        assert torch.equal(v, shad.model.state_dict()[k]), k
    assert shad.generation_seconds > 0  # it did generate
    # and a nonzero ratio does change training
    _, _, _, res2 = tiny_experiment("baseline,shadow", ratio=1.0, epochs=1)
    assert res2[0].rows[-1]["train_loss"] != res2[1].rows[-1]["train_loss"]
    assert res2[1].rows[-1]["extra_examples"] == 96 and res2[0].rows[-1]["extra_examples"] == 0


def test_warmup_delays_synthetic_data() -> None:
    _, _, _, res = tiny_experiment("shadow", epochs=2, warmup=1)
    assert [r["extra_examples"] for r in res[0].rows] == [0, 96]


class _Crash(Exception):
    pass


def test_resume_after_a_crash_gives_identical_final_metrics(tmp_path) -> None:
    """A run that dies in epoch 2 of its second arm (no Ctrl-C handler runs: the state on disk is the
    last epoch checkpoint, as after kill -9) and is resumed ends exactly where an uninterrupted run ends."""
    _, _, _, ref = tiny_experiment("baseline,shadow", epochs=3, state_dir=tmp_path / "ref")

    def crash(arm, seed, idx, ev) -> None:
        if arm.name == "shadow" and ev.kind == "batch_end" and ev.epoch == 2 and ev.step == 2:
            raise _Crash

    with pytest.raises(_Crash):
        tiny_experiment("baseline,shadow", epochs=3, state_dir=tmp_path / "run", on_event=crash)
    _, _, _, res = tiny_experiment("baseline,shadow", epochs=3, state_dir=tmp_path / "run", resume=True)
    assert res[1].resumed_from == (1, 0) and res[0].resumed_from == (3, 0)
    keys = ["epoch", "train_loss", "test_error", "test_loss", "synthetic_test_error", "extra_examples"]
    for a, b in zip(ref, res, strict=True):
        assert [{k: r[k] for k in keys} for r in a.rows] == [{k: r[k] for k in keys} for r in b.rows]
        for k, v in a.model.state_dict().items():
            assert torch.equal(v, b.model.state_dict()[k])


# --- statistics ----------------------------------------------------------------------------


def test_paired_difference_known_answer() -> None:
    d = sh.paired_difference([3.0, 4.0, 5.0], [2.0, 2.0, 2.0])  # differences 1, 2, 3
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert d["mean"] == pytest.approx(2.0) and d["sd"] == pytest.approx(1.0)
    assert (d["low"], d["high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert d["p"] == pytest.approx(0.07417990022744853)
    one = sh.paired_difference([1.0], [0.5])
    assert one["mean"] == 0.5 and math.isnan(one["low"])


def test_pearson_known_answers() -> None:
    assert sh.pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert sh.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(sh.pearson([1, 2], [1, 2])) and math.isnan(sh.pearson([1, 1, 1], [1, 2, 3]))


def test_identical_paired_differences_give_no_interval_and_no_verdict() -> None:
    """Issue 13 item 7: test error is a count, so two seeds can differ by the same amount; the
    t interval then has zero width and p = 0, and the old code said "hurt" from 2 seeds. Float
    rounding must not rescue it: 36/1000 − 34/1000 and 97/1000 − 95/1000 differ by 7e-18."""
    from netprobe.shadow.summary import NO_SPREAD, _verdict

    for a, b in (([0.3, 0.3], [0.2, 0.2]), ([36 / 1000, 97 / 1000], [34 / 1000, 95 / 1000])):
        d = sh.paired_difference(a, b)
        assert d["mean"] == pytest.approx(0.1 if a[0] == 0.3 else 0.002) and d["sd"] == 0.0
        assert math.isnan(d["low"]) and math.isnan(d["high"]) and math.isnan(d["p"])
        assert _verdict(d) == NO_SPREAD
    # a real spread, however small next to the mean, still gives an interval
    assert sh.paired_difference([0.036, 0.097], [0.034, 0.0951])["low"] > 0
    # the same through summarise: no "hurt", and the sentence says why
    runs = [_fake("baseline", s, [0.2, 0.1 + s / 1000]) for s in range(3)]
    runs += [_fake("shadow", s, [0.2, 0.1 + (s + 2) / 1000]) for s in range(3)]
    rep = sh.summarise(runs, settings={}, data={}, model={})
    final = next(c for c in rep.comparisons if c["metric"] == "final test error")
    assert final["verdict"] == NO_SPREAD and "hurt" not in rep.conclusion
    assert "the same in every seed, so no interval" in rep.conclusion and "n/a" not in rep.conclusion


def _falling(rng: np.random.Generator, seeds: int, epochs: int, kind: str, together: float = 0.0):
    """Real and synthetic test-error curves (seeds x epochs) that both fall with training.
    Unrelated (``together`` 0) in three ways: white noise around the trend with a seed offset,
    a random walk around it, or each seed its own learning rate; ``together`` > 0 adds the real
    curve's own deviations to the synthetic one, so the two move together epoch to epoch."""
    e = np.arange(epochs)
    if kind == "rate":
        real = 0.08 * np.exp(-e / rng.uniform(1, 3, (seeds, 1))) + 0.03 + rng.normal(0, 0.002, (seeds, epochs))
        syn = 0.15 * np.exp(-e / rng.uniform(1, 4, (seeds, 1))) + 0.05 + rng.normal(0, 0.005, (seeds, epochs))
    else:
        walk = kind == "walk"
        noise_r = rng.normal(0, 0.003, (seeds, epochs))
        noise_s = rng.normal(0, 0.01, (seeds, epochs))
        real = 0.08 * np.exp(-e / 1.5) + 0.03 + (np.cumsum(noise_r, 1) if walk else noise_r + rng.normal(0, 0.004, (seeds, 1)))
        syn = 0.15 * np.exp(-e / 3) + 0.05 + (np.cumsum(noise_s, 1) if walk else noise_s + rng.normal(0, 0.02, (seeds, 1)))
    syn = syn + together * (real - real.mean(0))
    return real.tolist(), syn.tolist()


def test_tracking_known_answers() -> None:
    from netprobe.shadow.summary import tracking_correlation

    trend = [0.5, 0.3, 0.2, 0.15]
    real = [[t + 0.01 * s * (i % 2) for i, t in enumerate(trend)] for s in range(4)]
    # synthetic = 3x real + a shared curve + a per-seed offset: the same centred changes
    syn = [[3 * x + 0.1 * i + 0.05 * s for i, x in enumerate(c)] for s, c in enumerate(real)]
    same = tracking_correlation(real, syn)
    assert same["r"] == pytest.approx(1.0) and (same["seeds"], same["changes"]) == (4, 3)
    opposite = tracking_correlation(real, [[-x + 0.2 * i for i, x in enumerate(c)] for c in real])
    assert opposite["r"] == pytest.approx(-1.0)
    # r and its jackknife interval, against a direct numpy computation
    rng = np.random.default_rng(5)
    r_, s_ = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    r_[:, :] += np.linspace(1, 0, 4)
    s_ += 0.7 * r_

    def r_np(a: np.ndarray, b: np.ndarray) -> float:
        u, w = np.diff(a, axis=1), np.diff(b, axis=1)
        u, w = u - u.mean(0), w - w.mean(0)
        return float((u * w).sum() / np.sqrt((u * u).sum() * (w * w).sum()))

    z = np.arctanh([r_np(np.delete(r_, i, 0), np.delete(s_, i, 0)) for i in range(5)])
    se = np.sqrt(4 / 5 * ((z - z.mean()) ** 2).sum())
    half = 2.7764451051977987 * se  # t(0.975, 4)
    got = tracking_correlation(r_.tolist(), s_.tolist())
    assert got["r"] == pytest.approx(r_np(r_, s_))
    assert got["low"] == pytest.approx(np.tanh(np.arctanh(got["r"]) - half))
    assert got["high"] == pytest.approx(np.tanh(np.arctanh(got["r"]) + half))
    # too few seeds or epochs: no interval, "cannot tell"
    for few in (tracking_correlation(real[:2], syn[:2]), tracking_correlation([c[:1] for c in real], [c[:1] for c in syn])):
        assert few["verdict"].startswith("cannot tell") and math.isnan(few["low"])
    assert tracking_correlation(real[:2], syn[:2])["verdict"] == "cannot tell: 2 seeds, 3 needed"


@pytest.mark.parametrize("kind", ["white", "walk", "rate"])
def test_unrelated_falling_curves_do_not_track(kind: str) -> None:
    """Issue 13 item 7: the old per-run Pearson r over epochs of two unrelated falling curves
    has a median near 1, and "tracks" was said at r >= 0.7. Over 4 shapes (seeds x epochs) the
    new verdict says "tracks" at most at its one-sided level (2.5%, bound 5% over 150 draws)."""
    from netprobe.shadow.summary import tracking_correlation

    rng = np.random.default_rng(13)
    for seeds, epochs in ((3, 4), (4, 4), (4, 10), (8, 6)):
        old, tracks = [], 0
        for _ in range(150):
            real, syn = _falling(rng, seeds, epochs, kind)
            old.append(np.median([sh.pearson(a, b) for a, b in zip(real, syn, strict=True)]))
            tracks += tracking_correlation(real, syn)["verdict"] == "tracks"
        if kind == "white" and epochs == 10:
            assert np.median(old) > 0.9  # the statistic this replaces
        assert tracks / 150 <= 0.05, (seeds, epochs, tracks)


@pytest.mark.parametrize("kind", ["white", "walk", "rate"])
def test_curves_that_move_together_track(kind: str) -> None:
    from netprobe.shadow.summary import tracking_correlation

    rng = np.random.default_rng(14)
    for seeds, epochs, power in ((4, 10, 0.9), (6, 6, 0.9), (4, 4, 0.5)):
        hits = 0
        for _ in range(100):
            real, syn = _falling(rng, seeds, epochs, kind, together=10.0)
            hits += tracking_correlation(real, syn)["verdict"] == "tracks"
        assert hits / 100 >= power, (seeds, epochs, hits)


def _fake(arm: str, seed: int, errs: list[float]) -> sh.RunResult:
    rows = [{"arm": arm, "seed": seed, "epoch": i + 1, "test_error": e, "synthetic_test_error": e + 0.01,
             "train_loss": e, "seconds": 2.0 if arm == "shadow" else 1.0, "wall_seconds": float(i)}
            for i, e in enumerate(errs)]
    return sh.RunResult(sh.Arm(arm), seed, rows, nn.Linear(1, 1), "none")


def test_summarise_says_plainly_whether_shadow_helped() -> None:
    helped = [_fake("baseline", s, [0.5, 0.3, 0.20 + 0.01 * s]) for s in range(3)]
    helped += [_fake("shadow", s, [0.4, 0.2, 0.10 + 0.012 * s]) for s in range(3)]
    rep = sh.summarise(helped, settings={}, data={}, model={})
    final = next(c for c in rep.comparisons if c["metric"] == "final test error")
    assert final["verdict"] == "helped" and final["high"] < 0 and final["cost_ratio"] == pytest.approx(2.0)
    assert "SHADOW helped" in rep.conclusion
    assert rep.tracking["per_arm_r"]["shadow"] == pytest.approx(1.0)
    same = [_fake("baseline", s, [0.5, 0.3, 0.2 + 0.01 * s]) for s in range(3)]
    same += [_fake("shadow", s, [0.5, 0.3, 0.2 + 0.01 * ((s + 1) % 3)]) for s in range(3)]
    rep2 = sh.summarise(same, settings={}, data={}, model={})
    assert "did not clearly help" in rep2.conclusion
    only = sh.summarise([_fake("baseline", 0, [0.5, 0.4, 0.3])], settings={}, data={}, model={})
    assert "says nothing about whether SHADOW helps" in only.conclusion
    assert isinstance(rep.to_markdown(), str) and rep.to_frame().shape[0] == 18


def test_errors_are_netprobe_errors() -> None:
    with pytest.raises(NetprobeError, match="h9"):
        sh.resolve_hidden_layer(TinyConv(), (1, 8, 8), "h9")
    assert sh.resolve_hidden_layer(TinyConv(), (1, 8, 8), "h2")[0] == 2


# --- cost, grammar, streams (issue items 10 and 17; one seed mixer) -------------------------


def _timed(arm: str, walls: list[float], cpus: list[float] | None, examples: int = 100) -> list[dict]:
    return [{"arm": arm, "epoch": i + 1, "examples": examples, "seconds": w,
             **({"cpu_seconds": cpus[i]} if cpus is not None else {})} for i, w in enumerate(walls)]


def test_cost_ratio_known_answers_on_synthetic_timings() -> None:
    """Issue 10: a 1-epoch run reported SHADOW at 0.12x a baseline epoch because the baseline's
    one epoch ran while the machine was busy (18.9 s wall, 1 s of CPU). The cost comes from CPU
    time per example, and the wall-clock disagreement is reported as a caveat."""
    busy = sh.cost_ratio(_timed("shadow", [2.2], [2.0]), _timed("baseline", [18.9], [1.0]))
    assert busy["ratio"] == pytest.approx(2.0) and busy["basis"] == "cpu_seconds"
    assert busy["wall_ratio"] == pytest.approx(2.2 / 18.9) and busy["rough"]
    assert "the wall-clock ratio was 0.12x" in busy["caveat"] and "rough" in busy["caveat"]
    quiet = sh.cost_ratio(_timed("shadow", [2.1, 2.0, 2.2], [2.0, 2.0, 2.0]),
                          _timed("baseline", [1.0, 1.1, 1.0], [1.0, 1.0, 1.0]))
    assert quiet["ratio"] == pytest.approx(2.0) and not quiet["rough"] and "caveat" not in quiet
    # per example: an arm that saw twice the examples per epoch at the same time costs half
    assert sh.cost_ratio(_timed("s", [2.0], [2.0], 200), _timed("b", [1.0], [1.0], 100))["ratio"] == pytest.approx(1.0)
    # wall basis (GPU runs) or rows without CPU times: the median ignores one slow epoch...
    wall = sh.cost_ratio(_timed("s", [3.0, 3.0, 30.0], None), _timed("b", [1.0, 1.5, 1.0], None))
    assert wall["basis"] == "seconds" and wall["ratio"] == pytest.approx(3.0)
    # ...but says the timings spread: 30 / 3 = 10x within the shadow arm
    assert wall["rough"] and "varied up to 10.0x" in wall["caveat"]
    gpu = sh.cost_ratio(_timed("s", [2.0], [9.0]), _timed("b", [1.0], [1.0]), basis="wall")
    assert gpu["basis"] == "seconds" and gpu["ratio"] == pytest.approx(2.0)


def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    return deepest


def test_one_seed_conclusion_reads_without_nested_parentheses_or_bad_plurals() -> None:
    """Issue 17: "1 seeds" and "(cannot tell from one seed (… points))"."""
    one = [_fake("baseline", 0, [0.5, 0.3, 0.2]), _fake("shadow", 0, [0.4, 0.2, 0.1])]
    rep = sh.summarise(one, settings={"epochs": 1}, data={}, model={})
    text = " ".join([rep.conclusion, *rep.notes, rep.to_markdown()])
    assert "cannot tell from one seed" in rep.conclusion
    assert _nesting(rep.conclusion) <= 1 and all(_nesting(n) <= 1 for n in rep.notes)
    assert "1 seeds" not in text and "seed(s)" not in text and "1 epochs" not in text
    assert rep.notes[0].startswith("Only 1 seed:")
    two = sh.summarise([*one, _fake("baseline", 1, [0.5, 0.3, 0.2]), _fake("shadow", 1, [0.4, 0.3, 0.1])],
                       settings={}, data={}, model={})
    assert "2 seeds)" in two.conclusion and _nesting(two.conclusion) <= 1
    assert [sh.plural(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
    # the terminal table too (issue 13 item 7: "1 seed(s) per arm")
    from rich.console import Console

    from netprobe.render import shadow_table

    for report, title in ((rep, "1 seed per arm"), (two, "2 seeds per arm")):
        console = Console(record=True, width=160)
        console.print(shadow_table(report))
        text = console.export_text()
        assert title in text and "seed(s)" not in text


def test_summary_takes_the_cost_from_cpu_time_and_notes_noisy_timings() -> None:
    base = [_fake("baseline", s, [0.5, 0.3, 0.2]) for s in range(2)]
    shad = [_fake("shadow", s, [0.4, 0.2, 0.1]) for s in range(2)]
    for r in base:
        for row in r.rows:
            row.update(cpu_seconds=1.0, seconds=20.0 if row["epoch"] == 1 else 1.0)
    for r in shad:
        for row in r.rows:
            row["cpu_seconds"] = 2.0
    rep = sh.summarise([*base, *shad], settings={}, data={}, model={})
    final = next(c for c in rep.comparisons if c["metric"] == "final test error")
    assert final["cost_ratio"] == pytest.approx(2.0) and final["cost_basis"] == "cpu_seconds"
    assert "SHADOW cost 2.00x the CPU time per training example, a rough figure" in rep.conclusion
    assert any("rough" in n for n in rep.notes)


def test_the_synthetic_test_set_of_each_epoch_comes_from_seeds_derive_seed() -> None:
    """One seed mixer: the tracker's stream is seeds.derive_seed(seed, 17, epoch)."""
    from netprobe.seeds import derive_seed

    data, _, settings, res = tiny_experiment("shadow", epochs=1, seeds=(3,))
    want, _ = sh.synthetic_error(res[0].model, data.normalised(data.test.x), data.test.y, settings,
                                 derive_seed(3, 17, 1), 512)
    assert res[0].rows[-1]["synthetic_test_error"] == want


def test_resume_cannot_lengthen_a_cosine_schedule(tmp_path) -> None:
    import json

    (tmp_path / "settings.json").write_text(json.dumps({"options": sh.ShadowOptions(schedule="cosine").to_dict()}))
    with pytest.raises(OptionError, match="--schedule cosine"):
        sh.resumed_options(tmp_path, {"epochs": 5})
    opts, saved = sh.resumed_options(tmp_path, {"epochs": 3, "seeds": [2, 1, 0]})  # the saved 3 epochs, seeds 0,1,2
    assert opts == saved


# --- the library call ------------------------------------------------------------------------


def test_shadow_train_library_call_returns_a_report_that_writes_its_files(tmp_path) -> None:
    import netprobe
    from netprobe.report import Report

    with pytest.raises(OptionError, match="--epochs 0"):
        netprobe.shadow_train(epochs=0, output=tmp_path / "bad")
    with pytest.raises(TypeError, match="epochz"):
        netprobe.shadow_train(epochz=1)
    assert not (tmp_path / "bad").exists()  # options are checked before anything is written
    lines: list[str] = []
    seen: list[tuple[int, int]] = []
    run = tmp_path / "run"
    rep = netprobe.shadow_train(train_size=32, test_size=16, epochs=1, seeds=[0], batch_size=16, grid=2,
                                output=run, device="cpu", log=lines.append,
                                progress=lambda done, total, label: seen.append((done, total)))
    assert isinstance(rep, Report) and isinstance(rep, sh.ShadowReport)
    assert (run / "settings.json").is_file() and (run / "checkpoints" / "shadow-seed0").is_dir()
    names = rep.write(run)  # the run's own folder, as a path
    assert {"history.csv", "report.json", "report.md", "models/shadow-seed0.pt", "synthetic_grid.png"} <= set(names)
    assert all((run / n).is_file() for n in names)
    assert rep.headline()["conclusion"] == rep.conclusion and rep.to_frame().shape[0] == 2
    assert rep.provenance["arch"] == "digitnet" and rep.options["epochs"] == 1
    assert any("shadow seed 0: test error" in ln for ln in lines) and seen[-1] == (4, 4)  # 2 runs x 2 steps

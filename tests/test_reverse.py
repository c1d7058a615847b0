"""The reverse engine (netprobe/reverse/): known answers for Aᵀ, α, unpooling and the theory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from models import FunctionalNet, TinyMLP
from torch import nn

from netprobe.errors import NothingToAnalyseError, OptionError
from netprobe.reverse import (
    ReverseNet,
    _PoolGeom,
    gaussian_blur,
    parse_gen_scale,
    unpool_copy,
    unpool_random,
    unpool_switches,
)


def _generate(
    model: nn.Module, x: torch.Tensor, layer: int, h: torch.Tensor | None = None, **kw: object
) -> tuple[torch.Tensor, torch.Tensor]:
    rn = ReverseNet(model, **kw)  # type: ignore[arg-type]
    return rn.reconstruct(x, layer, h)


# --- Aᵀ through autograd: exact transposes ------------------------------------------------


def test_orthogonal_square_linear_inverts_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(48, 48, generator=g, dtype=torch.float64))
    lin = nn.Linear(48, 48, bias=False)
    lin.weight.data = q.float()
    model = nn.Sequential(lin, nn.ReLU())
    x = torch.randn(5, 48, generator=g)
    for alpha in ("theory", "calibrated", 1.0):
        h, x_gen = _generate(model, x, 1, alpha=alpha)
        assert (h >= 0).all()
        torch.testing.assert_close(F.relu(lin(x_gen)), h, atol=1e-5, rtol=1e-5)  # Q Qᵀ h = h


@pytest.mark.parametrize(
    ("conv", "size"),
    [
        (nn.Conv2d(3, 64, 11, stride=4, padding=2), 224),  # AlexNet conv1: 224 -> 55 -> 224
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), 17),
        (nn.Conv2d(2, 3, 4, stride=3, padding=0), 13),  # 13 -> 4; a naive transposed conv gives 12
        (nn.Conv2d(6, 6, 3, padding=1, groups=6), 9),  # depthwise
        # narrow convs (C_in·k·k <= C_out) take the matrix-product-and-fold transpose
        (nn.Conv2d(1, 32, 3, padding=1), 28),
        (nn.Conv2d(1, 16, 3, stride=2, padding=1, dilation=2), 13),
        (nn.Conv2d(2, 20, 3, stride=3), 13),  # 13 -> 4: the last input row is never read
    ],
)
def test_conv_transpose_is_the_adjoint(conv: nn.Conv2d, size: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(2, conv.in_channels, size, size)
    rn = ReverseNet(model, alpha=1.0)
    fwd = rn.forward(x, 1)
    y = torch.randn_like(fwd.h(1))  # any y: the top layer passes it through unchanged
    x_gen = rn.generate(fwd, 1, y)
    assert x_gen.shape == x.shape
    ax = F.conv2d(
        x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups
    )  # A x, no bias
    lhs, rhs = (ax.double() * y.double()).sum(), (x.double() * x_gen.double()).sum()
    assert math.isclose(lhs.item(), rhs.item(), rel_tol=1e-4, abs_tol=1e-3)


@pytest.mark.parametrize(
    ("shape", "conf"),
    [
        ((1, 32, 3), ((1, 1), (1, 1), (1, 1))),
        ((3, 32, 3), ((2, 2), (0, 1), (1, 2))),
        ((2, 8, 2), ((3, 1), (1, 0), (1, 1))),
    ],
)
def test_narrow_conv_generation_and_training_backward_match_autograd(shape, conf) -> None:
    """The narrow-conv Function: its generation backward is autograd's input gradient (to float
    rounding); with true_grad its input, weight and bias gradients are autograd's, bit for bit."""
    from netprobe.reverse import _Control, _NarrowConv

    torch.manual_seed(0)
    c_in, c_out, k = shape
    stride, padding, dilation = conf
    x = torch.randn(3, c_in, 11, 10, requires_grad=True)
    w = torch.randn(c_out, c_in, k, k, requires_grad=True)
    b = torch.randn(c_out, requires_grad=True)
    ref = F.conv2d(x, w, b, stride, padding, dilation)
    g = torch.randn_like(ref)
    ctl = _Control(keep=1.0, unpool="random", seed=0)
    out = _NarrowConv.apply(x, w, b, stride, padding, dilation, ctl)
    assert torch.equal(out, ref)
    (gx,) = torch.autograd.grad(out, x, g, retain_graph=True)
    want = torch.autograd.grad(ref, (x, w, b), g, retain_graph=True)
    torch.testing.assert_close(gx, want[0], atol=1e-5, rtol=1e-5)
    ctl.true_grad = True
    got = torch.autograd.grad(out, (x, w, b), g)
    for a, e in zip(got, want, strict=True):
        assert torch.equal(a, e)


def test_alexnet_conv1_from_torchvision_keeps_224() -> None:
    feats = torchvision.models.alexnet(weights=None).features[:2]  # conv1 + ReLU(inplace=True)
    x = torch.randn(1, 3, 224, 224)
    h, x_gen = _generate(feats, x, 1, alpha=1.0)
    assert h.shape == (1, 64, 55, 55) and x_gen.shape == (1, 3, 224, 224)


class _LinearBlock(nn.Module):
    """conv -> eval BatchNorm -> avg pool, plus a residual conv path: linear up to the ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.skip = nn.Conv2d(3, 8, 1)
        self.pool = nn.AvgPool2d(2)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(self.bn(self.conv1(x))) + self.skip(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.linear(x))


def test_bn_avgpool_and_residual_transpose_is_the_adjoint() -> None:
    torch.manual_seed(0)
    block = _LinearBlock()
    block.bn.running_mean.uniform_(-1, 1)
    block.bn.running_var.uniform_(0.5, 2)
    block.bn.weight.data.uniform_(0.5, 2)
    block.eval()
    x = torch.randn(2, 3, 10, 10)
    rn = ReverseNet(block, alpha=1.0)
    fwd = rn.forward(x, 1)
    y = torch.randn_like(fwd.h(1))
    x_gen = rn.generate(fwd, 1, y)
    with torch.no_grad():
        lin = block.linear(x) - block.linear(
            torch.zeros_like(x)
        )  # the linear part: biases/BN shift dropped
    assert math.isclose(
        (lin * y).sum().item(), (x * x_gen).sum().item(), rel_tol=1e-4, abs_tol=1e-4
    )


# --- max pooling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "geom",
    [
        _PoolGeom((3, 3), (2, 2), (0, 0), (1, 1), False),
        _PoolGeom((3, 3), (2, 2), (1, 1), (1, 1), True),
        _PoolGeom((2, 3), (1, 2), (1, 0), (2, 1), False),
    ],
)
def test_switches_match_autograd_with_overlapping_windows(geom: _PoolGeom) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 12, requires_grad=True)
    out, idx = F.max_pool2d(
        x,
        geom.kernel,
        geom.stride,
        geom.padding,
        geom.dilation,
        geom.ceil_mode,
        return_indices=True,
    )
    g = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, x, g)
    got = unpool_switches(g, idx, (11, 12))
    torch.testing.assert_close(got, expected)
    assert len(idx.unique()) < idx.numel()  # the windows really overlap: some switches repeat


def test_switch_mode_through_the_net_equals_autograd() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, bias=False)
    model = nn.Sequential(nn.MaxPool2d(3, 2), conv, nn.ReLU())
    x = torch.randn(2, 2, 15, 15, requires_grad=True)
    rn = ReverseNet(model, alpha=1.0, unpool="switches")
    fwd = rn.forward(x, 1)
    y = torch.rand_like(fwd.h(1))
    x_gen = rn.generate(fwd, 1, y)
    (expected,) = torch.autograd.grad(conv(F.max_pool2d(x, 3, 2)), x, y)
    torch.testing.assert_close(x_gen, expected)


def test_random_unpooling_puts_each_value_at_one_position_of_its_window() -> None:
    geom = _PoolGeom((2, 2), (2, 2), (0, 0), (1, 1), False)
    g = torch.arange(1.0, 1 + 2 * 3 * 4 * 5).view(2, 3, 4, 5)  # distinct values
    out = unpool_random(g, (8, 10), geom, torch.Generator().manual_seed(0))
    windows = out.view(2, 3, 4, 2, 5, 2).permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 5, 4)
    assert ((windows != 0).sum(-1) == 1).all()  # one position per window
    torch.testing.assert_close(windows.sum(-1), g)
    # positions are spread over the window, not always the same one
    pos = (windows != 0).float().argmax(-1)
    assert len(pos.unique()) == 4


def test_random_unpooling_with_overlap_padding_and_ceil_keeps_the_sum_inside_the_input() -> None:
    geom = _PoolGeom((3, 3), (2, 2), (1, 1), (1, 1), True)
    x = torch.randn(1, 2, 9, 9)
    out = F.max_pool2d(x, 3, 2, 1, 1, True)
    g = torch.rand_like(out)
    a = unpool_random(g, (9, 9), geom, torch.Generator().manual_seed(1))
    b = unpool_random(g, (9, 9), geom, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)  # seeded
    torch.testing.assert_close(a.sum(), g.sum())


def test_random_unpooling_is_uniform_over_the_valid_taps_of_each_window() -> None:
    geom = _PoolGeom((3, 3), (2, 2), (1, 1), (1, 1), True)  # windows hang over every edge
    h = w = 8
    ho = wo = 5  # ceil((8 + 2 - 3) / 2) + 1, the last window starting inside the input
    n = 4000
    g = torch.ones(n, 1, ho, wo)
    out = unpool_random(g, (h, w), geom, torch.Generator().manual_seed(0))  # (n,1,8,8)
    for i in range(ho):
        for j in range(wo):
            one = torch.zeros(n, 1, ho, wo)
            one[:, :, i, j] = 1
            pos = unpool_random(one, (h, w), geom, torch.Generator().manual_seed(i * wo + j))[:, 0]
            rows = range(max(0, 2 * i - 1), min(h, 2 * i + 2))
            cols = range(max(0, 2 * j - 1), min(w, 2 * j + 2))
            inside = pos[:, rows.start : rows.stop, cols.start : cols.stop]
            assert (inside.sum((1, 2)) == 1).all()  # always inside the window, never in padding
            freq = inside.mean(0).flatten()
            expected = 1 / (len(rows) * len(cols))
            assert (freq - expected).abs().max() < 0.05, (i, j, freq)
    assert out.sum() == g.sum()


def test_copy_unpooling_is_the_transpose_of_sum_pooling() -> None:
    geom = _PoolGeom((3, 3), (2, 2), (1, 1), (1, 1), True)
    z = torch.zeros(2, 3, 9, 9, requires_grad=True)
    summed = F.avg_pool2d(z, 3, 2, 1, True, count_include_pad=True, divisor_override=1)
    g = torch.randn_like(summed)
    (expected,) = torch.autograd.grad(summed, z, g)
    torch.testing.assert_close(unpool_copy(g, (9, 9), geom), expected)


def test_unpooling_modes_run_through_a_pooled_net() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
    )
    x = torch.randn(3, 1, 12, 12)
    outs = {}
    for mode in ("random", "switches", "copy"):
        h, x_gen = _generate(model, x, 2, unpool=mode)
        assert x_gen.shape == x.shape and torch.isfinite(x_gen).all()
        outs[mode] = x_gen
    assert not torch.allclose(outs["random"], outs["switches"])


# --- α and the theory -----------------------------------------------------------------------


def test_theory_alpha_uses_the_mean_squared_row_norm() -> None:
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(300, 200, bias=False)
    lin.weight.data = torch.randn(200, 300, generator=g) * 0.1
    model = nn.Sequential(nn.ReLU(), lin, nn.ReLU())  # h1 = relu(x), h2 = relu(A h1)
    rn = ReverseNet(model, alpha="theory", keep=0.5)
    fits = rn.fit(torch.randn(128, 300, generator=g), 2)
    nu = float((lin.weight.detach().double() ** 2).sum(1).mean())
    assert fits[1].nu == pytest.approx(nu, rel=0.05)  # Hutchinson estimate of mean ‖A_i‖²
    assert fits[1].alpha == pytest.approx(
        2 / (0.5 * fits[1].nu)
    )  # docs/science.md §1: α = 2/(ρ·mean‖A_i‖²)
    assert fits[0].alpha == pytest.approx(
        1 / 0.5, rel=1e-6
    )  # into pixels: identity rows, no factor 2
    assert fits[1].consumer == 2 and fits[1].reach == 300


def _gaussian_round_trip(
    n: int, m: int, k: int, rho: float, relu_below: bool, seed: int = 0
) -> tuple[float, float]:
    """Generate x̃ from a k-sparse non-negative h through an i.i.d. N(0, 1) layer, re-infer
    h̃ = r(A x̃ − δ‖h‖) and return (mean relative error, √(k/(ρn)))."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, n, generator=g)
    lin = nn.Linear(n, m, bias=False)
    lin.weight.data = a
    model = nn.Sequential(*([nn.ReLU()] if relu_below else []), lin, nn.ReLU())
    top = 2 if relu_below else 1
    b = 8
    h = torch.zeros(b, m)
    for i in range(b):
        h[i, torch.randperm(m, generator=g)[:k]] = torch.rand(k, generator=g) + 0.5
    rn = ReverseNet(model, keep=rho, seed=seed)
    x = torch.randn(b, n, generator=g).abs()
    _, x_gen = rn.reconstruct(x, top, h)
    delta = math.sqrt(math.log(m) / (rho * n))  # the theory's threshold b' = −δ‖h‖
    h_inf = F.relu(x_gen @ a.T - delta * h.norm(dim=1, keepdim=True))
    err = ((h_inf - h).norm(dim=1) / h.norm(dim=1)).mean().item()
    return err, math.sqrt(k / (rho * n))


@pytest.mark.parametrize(
    ("n", "m", "k", "rho", "relu_below"),
    [
        (1000, 1000, 10, 1.0, False),
        (4000, 1000, 10, 1.0, False),
        (4000, 1000, 40, 1.0, False),
        (4000, 1000, 10, 0.5, False),
        (4000, 1000, 10, 1.0, True),
        (4000, 1000, 40, 1.0, True),
    ],
)
def test_wide_gaussian_layer_reinfers_sparse_h_at_the_theorys_rate(
    n: int, m: int, k: int, rho: float, relu_below: bool
) -> None:
    """docs/science.md §1: ‖h̃ − h‖ ≤ Õ(√(k/(ρn))) ‖h‖. The Õ hides a log factor (about √ln m ≈ 2.6
    here); the error must sit within a small constant of √(k/(ρn)) across k, n and ρ."""
    err, bound = _gaussian_round_trip(n, m, k, rho, relu_below)
    assert bound < err < 4.0 * bound, (err, bound)


def test_gaussian_error_shrinks_like_one_over_root_n() -> None:
    small, _ = _gaussian_round_trip(1000, 1000, 10, 1.0, False)
    large, _ = _gaussian_round_trip(4000, 1000, 10, 1.0, False)
    assert 0.35 < large / small < 0.7  # √(1000/4000) = 0.5


# --- any ReLU net; refusals; no mutation ----------------------------------------------------------


def test_functional_relu_net_reverses() -> None:
    torch.manual_seed(0)
    net = FunctionalNet()  # F.relu, F.leaky_relu and Tensor.relu inside forward()
    x = torch.randn(2, 1, 6, 6)
    for layer in (1, 2, 3):
        h, x_gen = _generate(net, x, layer)
        assert x_gen.shape == x.shape and torch.isfinite(x_gen).all() and x_gen.abs().sum() > 0
    rn = ReverseNet(net, alpha=1.0)
    fwd = rn.forward(x, 1)
    y = torch.randn_like(fwd.h(1))
    x_gen = rn.generate(fwd, 1, y)
    ax = F.conv2d(x, net.conv.weight, None, padding=1)
    assert math.isclose((ax * y).sum().item(), (x * x_gen).sum().item(), rel_tol=1e-4)


def test_torch_export_program_reverses_like_the_eager_model() -> None:
    from netprobe.loading import _rectifiers_as_torch_functions

    torch.manual_seed(0)
    eager = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU()
    ).eval()
    x = torch.randn(2, 1, 10, 10)
    program = _rectifiers_as_torch_functions(torch.export.export(eager, (x,)).module())
    for mode in ("switches", "random"):
        _, a = _generate(eager, x, 2, unpool=mode, seed=3)
        _, b = _generate(program, x, 2, unpool=mode, seed=3)
        torch.testing.assert_close(a, b)


class _GeluThenRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = F.relu(self.fc1(x))
        return F.relu(self.fc3(F.gelu(self.fc2(h1))))  # h2 lies above a GELU


def test_layer_above_gelu_is_refused_with_its_name() -> None:
    net = _GeluThenRelu()
    x = torch.randn(3, 6)
    _generate(net, x, 1)  # below the GELU: fine
    with pytest.raises(NothingToAnalyseError, match="gelu") as e:
        _generate(net, x, 2)
    assert "h1..h1" in str(e.value)


def test_attention_is_refused() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.attn(x, x, x)[0])

    with pytest.raises(NothingToAnalyseError, match="attention|softmax"):
        _generate(Attn(), torch.randn(2, 3, 4), 1)


def test_model_is_not_mutated() -> None:
    torch.manual_seed(0)
    net = TinyMLP()  # ReLU(inplace=True), reused twice
    net.fc2.weight.requires_grad_(False)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 8)
    x_in = x.clone()
    for mode in ("theory", "calibrated"):
        _generate(net, x, 2, alpha=mode, keep=0.5)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert (
        net.act.inplace is True
        and not net.fc2.weight.requires_grad
        and net.fc1.weight.requires_grad
    )
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert net.fc1.weight.grad is None  # generation never accumulates into .grad
    torch.testing.assert_close(x, x_in)


def test_keep_mask_is_seeded_and_thins_the_sample() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Linear(50, 40), nn.ReLU())
    x = torch.randn(4, 50)
    _, a = _generate(model, x, 2, keep=0.5, seed=7)
    _, b = _generate(model, x, 2, keep=0.5, seed=7)
    _, c = _generate(model, x, 2, keep=1.0, seed=7)
    torch.testing.assert_close(a, b)
    assert (a == 0).float().mean() > (c == 0).float().mean() + 0.2


def test_bad_options_are_refused() -> None:
    net = TinyMLP()
    with pytest.raises(OptionError, match="--gen-keep"):
        ReverseNet(net, keep=0.0)
    with pytest.raises(OptionError, match="--unpool"):
        ReverseNet(net, unpool="max")
    with pytest.raises(OptionError, match="--gen-scale"):
        parse_gen_scale("-1")
    with pytest.raises(OptionError, match="--gen-scale"):
        parse_gen_scale("often")
    assert parse_gen_scale("0.5") == 0.5 and parse_gen_scale("Theory") == "theory"
    with pytest.raises(OptionError, match="--gen-scale"):
        ReverseNet(net, alpha=-2.0)
    with pytest.raises(OptionError, match="h9"):
        ReverseNet(net).reconstruct(torch.randn(2, 8), 9)


def test_gaussian_blur_keeps_constants_and_smooths_noise() -> None:
    x = torch.full((1, 2, 9, 9), 3.0)
    torch.testing.assert_close(gaussian_blur(x, 1.0), x)
    noise = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise, 1.5).std() < 0.5 * noise.std()


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU()
    ).eval()
    x = torch.randn(2, 1, 10, 10)
    _, cpu = _generate(model, x, 2, unpool="switches")
    _, gpu = _generate(model.cuda(), x.cuda(), 2, unpool="switches")
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
    _, rnd = _generate(model, x.cuda(), 2, unpool="random", keep=0.5)  # generators live on the GPU
    assert rnd.is_cuda and torch.isfinite(rnd).all()


def test_package_keeps_the_old_module_names_and_one_job_per_file() -> None:
    """netprobe.reverse became a package (docs/design.md, "Layers"): every name callers import
    from the old module still resolves there, and each file names its job and stays short."""
    import importlib
    import pkgutil

    import netprobe.reverse as rev

    old_names = {
        "ALPHA_MODES", "UNPOOL_MODES", "Forward", "LayerFit", "ReverseNet", "_Control",
        "_NarrowConv", "_PoolGeom", "gaussian_blur", "parse_gen_scale", "rademacher",
        "random_like_sparsity", "unpool_copy", "unpool_random", "unpool_switches",
    }  # fmt: skip
    assert old_names <= set(rev.__all__) and all(hasattr(rev, n) for n in rev.__all__)
    assert rev.ReverseNet.__module__ == "netprobe.reverse.engine"
    for info in pkgutil.iter_modules(rev.__path__):
        mod = importlib.import_module(f"netprobe.reverse.{info.name}")
        assert mod.__doc__ and mod.__file__, info.name
        with open(mod.__file__, encoding="utf-8") as fh:
            assert sum(1 for _ in fh) < 600, info.name

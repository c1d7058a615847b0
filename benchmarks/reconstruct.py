"""How much the reverse (generative) pass costs against the forward pass to the same layer.

    python benchmarks/reconstruct.py [--batch 64] [--repeat 3] [--device cpu|cuda|all]

Cases (issue 4): torchvision AlexNet (random init: the cost does not depend on the weights)
at h5 on 224×224 inputs, and the bundled digit net at h2 on 28×28 digits; batch 64; CPU, and
CUDA when present. Timed per case, after one warm-up, as the median of ``--repeat`` rounds
(the three timings take turns within each round, so a busy machine slows them alike):

* forward    - the model run to h_ℓ without gradients (what any analysis pays to get h);
* graph      - the same forward with the generative backward rules attached (netprobe's
               ReverseNet.forward: records the autograd graph that generation runs backwards);
* reverse    - generation itself, x̃ from h_ℓ through Aᵀ (ReverseNet.generate: one VJP).

Printed ratios: reverse / forward (the issue's target: ≤ 2×) and (graph + reverse) / forward,
the whole cost of one reconstruction relative to a plain forward pass.

    python benchmarks/reconstruct.py --ssim [--batch 4] [--threads 1]

times SSIM instead (issue item 5: it took 30 of 53 s of a resnet18 run): netprobe's SSIM
(separable Gaussian, moments filtered together in float32) against the direct 11×11 float64
2-D window it replaced, on batch×3×224×224 images, and the largest difference between them.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn

from netprobe.archs import DigitNet
from netprobe.loading import BUNDLED_MODEL, load
from netprobe.netlayers import RectifierMode, eval_mode
from netprobe.reverse import ReverseNet


class _Stop(Exception):
    pass


def forward_to(model: nn.Module, x: torch.Tensor, layer: int) -> torch.Tensor:
    """h_layer by the ordinary forward pass, stopped there, without gradients."""
    got: dict[str, torch.Tensor] = {}

    def on(call: Any, func: Any, args: Any, kwargs: Any) -> torch.Tensor:
        out = func(*args, **kwargs)
        if call.index == layer:
            got["h"] = out
            raise _Stop
        return out

    with eval_mode(model), torch.no_grad():
        try:
            with RectifierMode(model, on):
                model(x)
        except _Stop:
            pass
    return got["h"]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fns: dict[str, Callable[[], Any]], device: str, repeat: int) -> dict[str, float]:
    """Median seconds of each function; the functions take turns within every round, so a
    busy machine slows them alike."""
    for fn in fns.values():  # warm-up
        fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(
    name: str, model: nn.Module, x: torch.Tensor, layer: int, device: str, repeat: int
) -> dict[str, Any]:
    model = model.to(device).eval()
    x = x.to(device)
    rn = ReverseNet(model, alpha="theory", keep=1.0, unpool="random", seed=0)  # --gen-scale theory
    rn.fit(x, layer)
    fwd = rn.forward(x, layer)
    h = fwd.h(layer)
    t = timed(
        {
            "forward": lambda: forward_to(model, x, layer),
            "graph": lambda: rn.forward(x, layer),
            "reverse": lambda: rn.generate(fwd, layer, h),
        },
        device,
        repeat,
    )
    return {
        "case": name,
        "device": device,
        "forward_s": t["forward"],
        "graph_s": t["graph"],
        "reverse_s": t["reverse"],
        "reverse/forward": t["reverse"] / t["forward"],
        "(graph+reverse)/forward": (t["graph"] + t["reverse"]) / t["forward"],
    }


def bench_ssim(batch: int, devices: list[str], repeat: int) -> None:
    from netprobe.reconstruction.metrics import ssim, ssim_direct

    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 224, 224, generator=g)
    y = (x + 0.2 * torch.rand(batch, 3, 224, 224, generator=g)).clamp(0, 1)
    print(f"SSIM of {batch}x3x224x224, {torch.get_num_threads()} CPU threads, median of {repeat}")
    for dev in devices:
        xd, yd = x.to(dev), y.to(dev)
        fns = {
            "new": functools.partial(ssim, xd, yd),
            "old": functools.partial(ssim_direct, xd, yd),
        }
        t = timed(fns, dev, repeat)
        diff = float((ssim(xd, yd) - ssim_direct(xd, yd)).abs().max())
        print(
            f"{dev:<6} direct 2-D float64 {t['old'] * 1e3:9.1f}ms   separable {t['new'] * 1e3:8.1f}ms"
            f"   {t['old'] / t['new']:6.1f}x faster   max |difference| {diff:.1e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--device", default="all", help="cpu, cuda or all (cpu, plus cuda when present)"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ssim", action="store_true", help="time SSIM (batch default 4) instead")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if args.ssim:
        bench_ssim(4 if args.batch == 64 else args.batch, devices, args.repeat)
        return
    g = torch.Generator().manual_seed(0)
    if BUNDLED_MODEL.is_file():
        digit, digit_name = load(None).module, "bundled digitnet h2"
    else:
        digit, digit_name = DigitNet(), "digitnet (random init; bundled file missing) h2"
    assert digit is not None
    cases = [
        (
            "alexnet h5",
            torchvision.models.alexnet(weights=None),
            torch.randn(args.batch, 3, 224, 224, generator=g),
            5,
        ),
        (digit_name, digit, torch.randn(args.batch, 1, 28, 28, generator=g), 2),
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}, median of {args.repeat}"
    )
    header = f"{'case':<44} {'device':<6} {'forward':>9} {'graph':>9} {'reverse':>9} {'rev/fwd':>8} {'(g+r)/fwd':>9}"
    print(header)
    print("-" * len(header))
    for dev in devices:
        for name, model, x, layer in cases:
            r = bench(name, model, x, layer, dev, args.repeat)
            print(
                f"{r['case']:<44} {dev:<6} {r['forward_s'] * 1e3:8.1f}ms {r['graph_s'] * 1e3:8.1f}ms "
                f"{r['reverse_s'] * 1e3:8.1f}ms {r['reverse/forward']:7.2f}x {r['(graph+reverse)/forward']:8.2f}x"
            )


if __name__ == "__main__":
    main()

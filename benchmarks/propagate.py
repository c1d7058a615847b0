"""What ``netprobe propagate`` costs against the least work its statistics need.

    python benchmarks/propagate.py [--num 32] [--jacobian-inputs 4] [--lanczos-steps 20]
                                   [--device cpu|cuda] [--cli]

Case (issue 17, item 5): torchvision AlexNet at random init (``weights=None``, no download),
224×224 inputs, ``--num`` real (bundled photographs) and as many Gaussian inputs, the model and
its fresh initialisation. Timed after one warm-up:

* propagate - the library call (``netprobe.propagate``), everything included;
* floor     - the same forward passes, plain (``model(x)`` without gradients, every arm and
              source), plus the Lanczos products it needs, bare: per arm, source and layer one
              forward with the graph kept, and ``--lanczos-steps`` Gram products (one VJP and one
              double-backward JVP each) on the ``--jacobian-inputs`` inputs.

Prints propagate / floor (the issue's target: ≤ 3×). With ``--cli`` it also times the whole
process as a user runs it (``python -m netprobe propagate alexnet --weights none ...``), next
to the in-process figure: the difference is start-up, loading and writing the report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
import torchvision

from netprobe import propagate
from netprobe.netlayers import hidden_layers
from netprobe.propagation.jacobian import gram_operator, hidden_with_grad
from netprobe.seeds import fresh_init


def floor_time(net: torch.nn.Module, xs: list[torch.Tensor], nj: int, steps: int) -> float:
    """Plain forwards of every input set, plus the bare Gram products Lanczos needs."""
    L = len(hidden_layers(net, tuple(xs[0].shape[1:])))
    t0 = time.perf_counter()
    with torch.no_grad():
        for x in xs:
            net(x)
    for x in xs:
        xj = x[:nj].clone().requires_grad_(True)
        acts = hidden_with_grad(net, xj, L)
        for h in acts:
            G, side, _ = gram_operator(h, xj)
            v = torch.randn(nj, side, device=x.device)
            for _ in range(steps):
                v = G(v)
                v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--jacobian-inputs", type=int, default=4)
    ap.add_argument("--lanczos-steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cli", action="store_true")
    a = ap.parse_args()
    dev = a.device
    model = torchvision.models.alexnet(weights=None).eval().to(dev)
    fresh, _ = fresh_init(model, 1)
    fresh = fresh.eval().to(dev)
    kw = dict(
        num=a.num,
        jacobian_inputs=a.jacobian_inputs,
        lanczos_steps=a.lanczos_steps,
        device=dev,
        input_shape=(3, 224, 224),
    )
    propagate(model, **{**kw, "num": 2, "jacobian_inputs": 2, "lanczos_steps": 2})  # warm-up
    t0 = time.perf_counter()
    propagate(model, **kw)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t_run = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(a.num, 3, 224, 224, generator=g).to(dev) for _ in range(2)]
    floor_time(model, [x[:2] for x in xs], 2, 2)  # warm-up
    t1 = time.perf_counter()
    floor_time(model, xs, a.jacobian_inputs, a.lanczos_steps)
    floor_time(fresh, xs, a.jacobian_inputs, a.lanczos_steps)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t_floor = time.perf_counter() - t1
    print(
        f"AlexNet (random init), {a.num} inputs per source, {a.jacobian_inputs} Jacobians x "
        f"{a.lanczos_steps} Lanczos steps, {dev}, {torch.get_num_threads()} threads"
    )
    print(f"propagate (in process) {t_run:8.2f} s")
    print(f"floor                  {t_floor:8.2f} s")
    print(f"ratio                  {t_run / t_floor:8.2f} x   (target <= 3x)")
    if a.cli:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                "-m",
                "netprobe",
                "propagate",
                "alexnet",
                "--weights",
                "none",
                "--num",
                str(a.num),
                "--jacobian-inputs",
                str(a.jacobian_inputs),
                "--lanczos-steps",
                str(a.lanczos_steps),
                "--device",
                dev,
                "-q",
                "-o",
                os.path.join(tmp, "o"),
            ]
            t2 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print(f"whole process (CLI)    {time.perf_counter() - t2:8.2f} s")


if __name__ == "__main__":
    main()

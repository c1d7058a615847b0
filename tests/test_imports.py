"""Which heavy modules a command imports (docs/design.md, "Speed").

Users wait for the whole process, and imports were most of it: torchvision's model zoo
reaches torch._dynamo (~2 s), matplotlib and pandas ~0.5 s each. Each case runs the CLI or
the library in a fresh interpreter and reads ``sys.modules`` at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what a command must not import unless it uses it
ZOO = ("torchvision", "torchvision.models", "torchvision.ops", "torch._dynamo")
PLOTTING = ("matplotlib", "pandas")

PROBE = textwrap.dedent(
    """
    import json, sys
    argv = json.loads(sys.argv[1])
    sys.argv = ["netprobe", *argv]
    code = 0
    try:  # the Typer app, not cli.main: main ends the process without returning here
        from netprobe.cli import app
        app()
    except SystemExit as e:
        code = e.code or 0
    print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr)
    sys.exit(code)
    """
)


def modules_after(args: list[str], cwd: Path) -> set[str]:
    """The modules loaded once ``netprobe ARGS`` has run in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES ")][-1]
    return set(json.loads(line[len("MODULES ") :]))


def test_help_imports_no_torch(tmp_path: Path) -> None:
    mods = modules_after(["--help"], tmp_path)
    assert "torch" not in mods
    assert not mods & {*ZOO, *PLOTTING, "numpy"}


def test_layers_on_the_bundled_net_imports_only_torch(tmp_path: Path) -> None:
    mods = modules_after(["layers", "-q"], tmp_path)
    assert "torch" in mods
    assert not mods & {*ZOO, *PLOTTING, "scipy"}, sorted(mods & {*ZOO, *PLOTTING, "scipy"})


@pytest.mark.slow
def test_randomness_without_figures_draws_nothing(tmp_path: Path) -> None:
    mods = modules_after(["randomness", "-q", "--no-figures", "-o", str(tmp_path / "r")], tmp_path)
    # scipy.stats (0.5 s): the tail fit's chi-squared tail comes from scipy.special
    unwanted = {*ZOO, "matplotlib", "scipy.stats"}
    assert not mods & unwanted, sorted(mods & unwanted)
    assert (tmp_path / "r" / "run.json").is_file()


@pytest.mark.slow
def test_reconstruct_on_the_bundled_net_imports_no_model_zoo(tmp_path: Path) -> None:
    # the bundled digits need no resize, so torchvision's transforms are not imported
    mods = modules_after(
        ["reconstruct", "-q", "--layer", "all", "-o", str(tmp_path / "r")], tmp_path
    )
    assert not mods & set(ZOO), sorted(mods & set(ZOO))
    # autograd.grad(..., grad_outputs=v) imports sympy through torch.fx's shape checks (~1 s)
    assert "sympy" not in mods
    # its table, files and figures read the summary as rows (pandas: 0.3-0.45 s)
    assert "pandas" not in mods


def test_run_json_versions_import_nothing() -> None:
    """Provenance reads installed metadata: it neither imports torchvision nor takes long."""
    code = textwrap.dedent(
        """
        import json, sys, time
        from netprobe.report import versions
        t = time.perf_counter()
        v = versions()
        print(json.dumps({"s": time.perf_counter() - t, "v": v,
                          "imported": [m for m in ("torch", "torchvision") if m in sys.modules]}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    res = json.loads(out.stdout)
    assert res["imported"] == []
    assert {"netprobe", "python", "torch", "numpy"} <= set(res["v"])
    assert res["s"] < 1.0  # 0.05 s measured; importing torchvision took 2-3 s


def test_torchvision_names_are_known_without_importing_torchvision() -> None:
    """The table is torchvision's own (the pinned 0.29; a newer torchvision may add names):
    every name, and the tensor and entry counts of a few architectures built on the meta
    device (scripts/torchvision_table.py builds them all)."""
    import torch
    import torchvision.models as tvm

    from netprobe.archs import TORCHVISION_CLASSIFIERS, TORCHVISION_STATE, is_torchvision_name

    listed = set(tvm.list_models(module=tvm))
    assert TORCHVISION_CLASSIFIERS <= listed
    assert all(is_torchvision_name(n) for n in listed)
    assert not is_torchvision_name("alexnett") and not is_torchvision_name("hf:org/x")
    for name in ("alexnet", "resnet18", "vit_b_16", "mobilenet_v3_small"):
        with torch.device("meta"):
            sd = tvm.get_model(name, weights=None).state_dict()
        assert TORCHVISION_STATE[name] == (len(sd), sum(v.numel() for v in sd.values()))


@pytest.mark.slow
def test_randomness_of_a_named_weights_file_reads_tensors_without_torchvision(
    tmp_path: Path,
) -> None:
    """``randomness squeezenet1_1 --weights-file W`` analyses W's tensors, checked against the
    architecture's counts; the kinds come from the tensors; torchvision (and torch._dynamo)
    are never imported. A file of another architecture is one line (exit 3)."""
    import torch
    import torchvision.models as tvm
    from typer.testing import CliRunner

    from netprobe.cli import app

    torch.manual_seed(0)
    w = tmp_path / "w.pt"
    torch.save(tvm.squeezenet1_1(weights=None).state_dict(), w)
    out = tmp_path / "r"
    args = ["randomness", "squeezenet1_1", "--weights-file", str(w), "-q", "--no-figures"]
    args += ["--layers", "features.0.*", "--layers", "classifier.1.*", "-o", str(out)]
    mods = modules_after(args, tmp_path)
    assert not mods & set(ZOO), sorted(mods & set(ZOO))
    rows = (out / "layers.csv").read_text().splitlines()
    kinds = {r.split(",")[0]: r.split(",")[2] for r in rows[1:]}
    assert kinds["features.0.weight"] == "Conv2d" and kinds["classifier.1.weight"] == "Conv2d"
    assert "squeezenet1_1" in (out / "run.json").read_text()
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.randn(48, 64)}, other)
    res = CliRunner().invoke(
        app,
        ["randomness", "alexnet", "--weights-file", str(other), "-q", "-o", str(tmp_path / "x")],
    )
    assert res.exit_code == 3
    assert "do not fit the alexnet architecture: 1 tensors with 3,072 entries" in res.output
    assert not (tmp_path / "x").exists()

"""`netprobe check`: targets, rules, isolation, baselines and the report formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from models import CrashOnLoad, HangOnLoad, TinyMLP
from typer.testing import CliRunner

from netprobe import zoo as chk
from netprobe.cli import app
from netprobe.errors import OptionError

runner = CliRunner()


def _save(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    torch.save(sd, path)
    return path


def _healthy(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"fc1.weight": torch.randn(128, 64, generator=g) / 8, "fc1.bias": torch.zeros(128),
            "fc2.weight": torch.randn(32, 128, generator=g) / 11}


def junit_cases(path: Path) -> dict[tuple[str, str], str]:
    root = ET.parse(path).getroot()
    out = {}
    for case in root.iter("testcase"):
        status = "pass"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                status = {"failure": "fail", "error": "error", "skipped": "skipped"}[tag]
        out[(Path(case.get("classname")).name, case.get("name"))] = status
    return out


@pytest.fixture()
def zoo(tmp_path: Path) -> Path:
    z = tmp_path / "zoo"
    (z / "sub").mkdir(parents=True)
    _save(z / "healthy.pt", _healthy())
    nan = _healthy(1)
    nan["fc2.weight"][3, 4] = float("nan")
    _save(z / "nan.pt", nan)
    dead = _healthy(2)
    dead["fc2.weight"].zero_()
    _save(z / "sub" / "dead.pth", dead)
    rank1 = _healthy(3)
    g = torch.Generator().manual_seed(4)
    rank1["fc2.weight"] = torch.outer(torch.randn(32, generator=g), torch.randn(128, generator=g)) + 0.01 * torch.randn(
        32, 128, generator=g
    )
    _save(z / "rank1.pt", rank1)
    data = (z / "healthy.pt").read_bytes()
    (z / "truncated.pt").write_bytes(data[: len(data) // 3])
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"w": torch.zeros(2, 2), "x": Evil()}, z / "evil.pt")
    (z / "README.txt").write_text("not a model")
    return z


def test_zoo_statuses_in_junit_json_and_exit_code(zoo: Path, tmp_path: Path) -> None:
    junit, jsonl, md = tmp_path / "r.xml", tmp_path / "r.jsonl", tmp_path / "r.md"
    result = runner.invoke(app, ["check", str(zoo), "--junit", str(junit), "--json", str(jsonl),
                                 "--markdown", str(md), "-q", "--jobs", "2"])
    assert result.exit_code == 3, result.stderr  # a model could not be loaded
    cases = junit_cases(junit)
    assert cases[("healthy.pt", "no_nan")] == "pass"
    assert cases[("healthy.pt", "no_dead_layer")] == "pass"
    assert cases[("nan.pt", "no_nan")] == "fail"
    assert cases[("dead.pth", "no_dead_layer")] == "fail"
    assert cases[("healthy.pt", "max:s_max_over_edge")] == "pass"
    assert cases[("rank1.pt", "max:s_max_over_edge")] == "fail"
    assert cases[("rank1.pt", "no_nan")] == "pass"
    assert cases[("truncated.pt", "load")] == "error"
    assert cases[("evil.pt", "load")] == "error"
    assert not any(name == "README.txt" for name, _ in cases)
    lines = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
    by = {Path(d["model"]).name: d for d in lines}
    assert by["healthy.pt"]["status"] == "pass" and by["nan.pt"]["status"] == "fail"
    assert by["evil.pt"]["status"] == "error" and "--trust-pickle" in by["evil.pt"]["error"]
    assert by["healthy.pt"]["sha256"] and len(by) == 6
    worst = {r["rule"]: r for r in by["rank1.pt"]["rules"]}["max:s_max_over_edge"]
    assert worst["layer"] == "fc2.weight" and worst["value"] > 100
    assert "| `" in md.read_text() and "❌ fail" in md.read_text()
    assert not (tmp_path / "PWNED").exists()


def test_exit_1_when_only_rules_fail(zoo: Path) -> None:
    result = runner.invoke(app, ["check", str(zoo / "healthy.pt"), str(zoo / "nan.pt"), "-q"])
    assert result.exit_code == 1
    ok = runner.invoke(app, ["check", str(zoo / "healthy.pt"), "-q"])
    assert ok.exit_code == 0


def test_hang_and_crash_are_that_models_errors(tmp_path: Path) -> None:
    torch.save(HangOnLoad(), tmp_path / "hang.pt")
    torch.save(CrashOnLoad(), tmp_path / "crash.pt")
    torch.save(TinyMLP().state_dict(), tmp_path / "fine.pt")
    results = chk.run_checks(
        [str(tmp_path / n) for n in ("hang.pt", "crash.pt", "fine.pt")], chk.Config(chk.Rules()),
        jobs=2, timeout=8, opts={"trust_pickle": True},
    )
    hang, crash, fine = results
    assert hang.status == "error" and "timed out after 8 s" in hang.error
    assert crash.status == "error" and "SIGKILL" in crash.error
    assert fine.status == "pass"


def test_targets_lists_globs_names_and_sharding(zoo: Path, tmp_path: Path) -> None:
    lst = tmp_path / "models.txt"
    lst.write_text(f"# zoo\n{zoo / 'healthy.pt'}\nalexnet\n\n{zoo}/sub/*.pth\n")
    got = chk.expand_targets([f"@{lst}", str(zoo / "healthy.pt")])
    assert got == [str(zoo / "healthy.pt"), "alexnet", str(zoo / "sub" / "dead.pth")]
    everything = chk.expand_targets([str(zoo)])
    assert len(everything) == 6
    shards = [chk.shard(everything, (k, 3)) for k in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(everything)
    assert all(set(a).isdisjoint(b) for a in shards for b in shards if a is not b)
    assert shards == [chk.shard(list(reversed(everything)), (k, 3)) for k in (1, 2, 3)]
    with pytest.raises(OptionError):
        chk.parse_shard("4/3")
    with pytest.raises(OptionError):
        chk.expand_targets([str(tmp_path / "*.nothing")])


def test_config_from_pyproject_overrides_and_validation(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.netprobe.check]\nno_dead_layer = false\ntimeout = 30\n[tool.netprobe.check.drift]\ndefault = 0.5\n'
        '[[tool.netprobe.check.models]]\nmatch = "*nan*"\nskip = ["no_nan"]\n'
    )
    cfg = chk.load_config(None, cwd=tmp_path)
    assert cfg.base.no_dead_layer is False and cfg.base.timeout == 30
    assert cfg.for_model("zoo/nan.pt").skip == ("no_nan",)
    assert cfg.for_model("zoo/ok.pt").skip == ()
    bad = tmp_path / "bad.toml"
    bad.write_text("[tool.netprobe.check]\nmax_spikes = 3\n")
    with pytest.raises(OptionError, match="unknown key 'max_spikes'"):
        chk.load_config(bad)
    bad.write_text("[tool.netprobe.check\n")
    with pytest.raises(OptionError, match="not valid TOML"):
        chk.load_config(bad)


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    dest = tmp_path / "netprobe.toml"
    assert runner.invoke(app, ["check", "--init", "--config", str(dest)]).exit_code == 0
    cfg = chk.load_config(dest)
    assert cfg.base.no_nan and cfg.base.drift["default"] == 0.05
    assert cfg.base.max == {"s_max_over_edge": 100.0}
    again = runner.invoke(app, ["check", "--init", "--config", str(dest)])
    assert again.exit_code == 2


def test_baseline_flags_drift(zoo: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.jsonl"
    runner.invoke(app, ["check", str(zoo / "healthy.pt"), str(zoo / "nan.pt"), "--json", str(first), "-q"])
    # the healthy model changes: now 2 tensors hold NaN
    sd = _healthy()
    sd["fc1.weight"][0, 0] = float("inf")
    sd["fc2.weight"][0, 0] = float("nan")
    _save(zoo / "healthy.pt", sd)
    second = tmp_path / "second.jsonl"
    result = runner.invoke(app, ["check", str(zoo / "healthy.pt"), str(zoo / "nan.pt"), "--json", str(second),
                                 "--baseline", str(first), "-q"])
    assert result.exit_code == 1
    by = {Path(d["model"]).name: d for d in map(json.loads, second.read_text().splitlines())}
    drift = {r["rule"]: r for r in by["healthy.pt"]["rules"]}["drift:no_nan"]
    assert drift["status"] == "fail" and drift["value"] == 2.0
    assert {r["rule"]: r for r in by["nan.pt"]["rules"]}["drift:no_nan"]["status"] == "pass"


def test_usage_errors() -> None:
    assert runner.invoke(app, ["check"]).exit_code == 2
    assert runner.invoke(app, ["check", "x.pt", "--jobs", "0"]).exit_code == 2
    assert runner.invoke(app, ["check", "x.pt", "--shard", "0/2"]).exit_code == 2


def test_reconstruct_rule_on_the_bundled_net(tmp_path: Path) -> None:
    from netprobe.loading import BUNDLED_MODEL

    cfg = tmp_path / "rules.toml"
    for max_error, status in ((0.95, "pass"), (0.2, "fail")):
        cfg.write_text(
            f'[tool.netprobe.check.reconstruct]\nlayer = "h2"\nmax_error = {max_error}\nnum = 8\n'
        )
        results = chk.run_checks([str(BUNDLED_MODEL)], chk.load_config(cfg), jobs=1, timeout=120)
        rule = {r.rule: r for r in results[0].rules}["reconstruct"]
        assert rule.status == status, rule
        assert 0.3 < rule.value < 0.95  # measured ~0.7 for the trained net at h2

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


# --- rules-file discovery (issue: `check --init` wrote netprobe.toml, `check` ignored it) ---


def _pyproject_rules(folder: Path) -> None:
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.netprobe.check]\ntimeout = 11\n'
    )


def test_config_discovery_order(tmp_path: Path) -> None:
    assert chk.load_config(None, cwd=tmp_path).source == "built-in defaults"
    _pyproject_rules(tmp_path)
    cfg = chk.load_config(None, cwd=tmp_path)
    assert cfg.source == str(tmp_path / "pyproject.toml") and cfg.base.timeout == 11
    assert cfg.note is None
    (tmp_path / "netprobe.toml").write_text("[tool.netprobe.check]\ntimeout = 22\n")
    cfg = chk.load_config(None, cwd=tmp_path)
    assert cfg.source == str(tmp_path / "netprobe.toml") and cfg.base.timeout == 22
    assert "both hold rules" in cfg.note and "pyproject.toml is ignored" in cfg.note
    explicit = tmp_path / "ci.toml"
    explicit.write_text("[tool.netprobe.check]\ntimeout = 33\n")
    cfg = chk.load_config(explicit, cwd=tmp_path)
    assert cfg.source == str(explicit) and cfg.base.timeout == 33 and cfg.note is None
    # a pyproject.toml without the table is no conflict
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert chk.load_config(None, cwd=tmp_path).note is None


def test_init_then_check_uses_netprobe_toml_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "one.pt", _healthy())
    init = runner.invoke(app, ["check", "--init"])
    assert init.exit_code == 0 and (tmp_path / "netprobe.toml").is_file()
    _pyproject_rules(tmp_path)
    result = runner.invoke(app, ["check", "one.pt", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert f"rules from {tmp_path / 'netprobe.toml'}" in err
    assert "both hold rules: using netprobe.toml" in err
    assert json.loads(result.stdout)["config"] == str(tmp_path / "netprobe.toml")
    # one model, one worker: singular nouns (issue: "1 workers")
    assert "checking 1 model with 1 worker;" in err and "1 model: 1 passed, 0 failed, 0 errors" in err
    assert "1 workers" not in err and "1 models" not in err


def test_config_help_shows_the_lookup_order() -> None:
    result = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert "[tool.netprobe.check] in ./pyproject.toml" in text  # was eaten as rich markup
    assert "default: ./netprobe.toml, else [tool.netprobe.check]" in text


def test_counts_read_singular_for_one() -> None:
    ok = chk.ModelResult("a.pt", "pass", (chk.RuleResult("no_nan", "pass", 0.0, 0.0),))
    bad = chk.ModelResult.failed("b.pt", "load", "no such file", 0.1)
    assert chk.plural(1, "worker") == "1 worker" and chk.plural(2, "worker") == "2 workers"
    assert chk.plural(0, "error") == "0 errors"
    one = chk.CheckReport([ok], seconds=1.0)
    assert one.summary() == "1 model: 1 passed, 0 failed, 0 errors in 1.0 s"
    assert one.to_markdown().startswith("### netprobe check: 1 model — 1 passed")
    two = chk.CheckReport([ok, bad], seconds=2.0)
    assert two.summary() == "2 models: 1 passed, 0 failed, 1 error in 2.0 s"


# --- reconstruct keys: gen_scale / gen_keep (old names alpha / keep still read) ----------


def test_reconstruct_gen_keys_and_their_old_names(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.toml"
    head = '[tool.netprobe.check.reconstruct]\nlayer = "h2"\nmax_error = 0.9\n'
    cfg.write_text(head + 'gen_scale = "calibrated"\ngen_keep = 0.5\n')
    new = chk.load_config(cfg).base.reconstruct
    cfg.write_text(head + 'alpha = "calibrated"\nkeep = 0.5\n')
    old = chk.load_config(cfg).base.reconstruct
    assert new == old == {"layer": "h2", "max_error": 0.9, "gen_scale": "calibrated", "gen_keep": 0.5}
    for bad, match in (
        ("gen_keep = 0.5\nkeep = 0.4\n", "both 'gen_keep' and its old name 'keep'"),
        ("gen_keep = 1.5\n", r"gen_keep = 1.5: must lie in \(0, 1\]"),
        ('gen_scale = "huge"\n', "not theory, calibrated or a positive number"),
        ("smooth = 2\n", "unknown key 'smooth'"),
    ):
        cfg.write_text(head + bad)
        with pytest.raises(OptionError, match=match):
            chk.load_config(cfg)
    # the --init template documents both keys, and its reconstruct table loads as written
    assert "# gen_scale = " in chk.STARTER_CONFIG and "# gen_keep = " in chk.STARTER_CONFIG
    start = chk.STARTER_CONFIG.index("# [tool.netprobe.check.reconstruct]")
    end = chk.STARTER_CONFIG.index("\n\n", start)
    block = "\n".join(
        ln.lstrip("# ").split("#")[0] if '"path/' not in ln else ""
        for ln in chk.STARTER_CONFIG[start:end].splitlines()
    )
    cfg.write_text(block + "\n")
    table = chk.load_config(cfg).base.reconstruct
    assert table["gen_scale"] == "theory" and table["gen_keep"] == 1.0


@pytest.mark.slow
def test_gen_keep_reaches_the_reverse_net() -> None:
    from netprobe.loading import BUNDLED_MODEL

    base = {"layer": "h2", "max_error": 0.95, "num": 8}

    def error(**gen: object) -> float:
        rules = chk.Rules(max={}, no_nan=False, no_dead_layer=False, reconstruct={**base, **gen})
        (rule,) = chk.measure(str(BUNDLED_MODEL), rules, {}).rules
        return rule.value

    default = error()
    assert error(gen_keep=1.0) == default  # the default keep-probability is 1
    assert error(gen_keep=0.3) != default


# --- the library entry point -------------------------------------------------------------


def test_check_returns_a_report_and_writes_what_is_asked(zoo: Path, tmp_path: Path) -> None:
    import netprobe

    junit, jsonl = tmp_path / "r.xml", tmp_path / "r.jsonl"
    lines: list[str] = []
    ticks: list[tuple[int, int]] = []
    report = netprobe.check(
        [zoo / "healthy.pt", zoo / "nan.pt"],
        jobs=2,
        junit=junit,
        json=jsonl,
        config=chk.Config(chk.Rules()),
        log=lines.append,
        progress=lambda done, total, label: ticks.append((done, total)),
    )
    assert isinstance(report, chk.CheckReport)
    assert [Path(r.model).name for r in report.results] == ["healthy.pt", "nan.pt"]
    assert report.exit_code() == 1
    assert report.headline() == {"models": 2, "passed": 1, "failed": 1, "errors": 0, "exit_code": 1}
    assert lines[0] == "checking 2 models with 2 workers; rules from built-in defaults"
    assert ticks[-1] == (2, 2)
    assert junit_cases(junit)[("nan.pt", "no_nan")] == "fail"
    assert [json.loads(ln)["status"] for ln in jsonl.read_text().splitlines()] == ["pass", "fail"]
    frame = report.to_frame()
    assert set(frame["rule"]) >= {"no_nan", "no_dead_layer", "max:s_max_over_edge"}
    assert report.to_dict()["results"][1]["status"] == "fail"
    out = tmp_path / "out"
    assert report.write(out) == ["check.xml", "check.jsonl", "check.md"]
    assert (out / "check.jsonl").read_text() == jsonl.read_text()


def test_check_validates_options_before_running(zoo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    md = tmp_path / "r.md"
    with pytest.raises(OptionError, match="is a folder"):
        chk.check([zoo / "healthy.pt"], junit=folder, markdown=md)
    with pytest.raises(OptionError, match="--jobs 0"):
        chk.check([zoo / "healthy.pt"], jobs=0, markdown=md)
    with pytest.raises(OptionError, match="--shard 3/2"):
        chk.check([zoo / "healthy.pt"], shard=(3, 2), markdown=md)
    assert not md.exists()


def test_rule_messages_count_one_in_the_singular(zoo: Path, tmp_path: Path) -> None:
    def messages(path: Path) -> dict[str, str]:
        return {r.rule: r.message for r in chk.measure(str(path), chk.Rules(), {}).rules}

    nan = messages(zoo / "nan.pt")
    assert nan["no_nan"] == "1 tensor holds NaN/Inf: fc2.weight"
    assert messages(zoo / "rank1.pt")["max:s_max_over_edge"].startswith("1 layer above 100: fc2.weight")
    single = _save(tmp_path / "single.pt", {"fc.weight": torch.randn(16, 8)})
    assert messages(single)["no_dead_layer"] == "1 layer varies"
    assert messages(zoo / "healthy.pt")["no_dead_layer"] == "2 layers vary"

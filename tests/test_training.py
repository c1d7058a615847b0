"""netprobe.training: known-answer steps, determinism, exact resume after a crash, Ctrl-C
or SIGKILL, the augment hook, and one DDP step equal to one full-batch step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netprobe.data import Dataset
from netprobe.errors import DatasetError, LoadError, OptionError
from netprobe.seeds import seeded
from netprobe.training import (
    STATE_FILE,
    DivergedError,
    Event,
    RandomAffine,
    evaluate,
    fit,
    init_model,
    load_state,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose a lot on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Tiny(nn.Module):
    """conv-ReLU-pool, dropout, linear: 1x4x4 -> 3 classes (dropout exercises the global RNG)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)  # -> 4x4x4
        self.pool = nn.MaxPool2d(2)  # -> 4x2x2
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv(x)))
        return self.fc(self.drop(h.flatten(1)))  # (N,16) -> (N,3)


def toy(n: int = 48, seed: int = 0) -> Dataset:
    """Three classes: a bright row 0, 1 or 2 in a 4x4 image, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.2 * torch.rand(n, 1, 4, 4, generator=g)
    x[torch.arange(n), 0, y] += 0.7
    return Dataset(x=x.clamp(0, 1), y=y, classes=["a", "b", "c"], source="toy")


def model(seed: int = 0, dropout: float = 0.0) -> Tiny:
    with seeded(seed):
        return Tiny(dropout)


def weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metrics(hist) -> list[tuple]:
    keys = (
        "epoch",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "examples",
        "extra_examples",
        "lr",
    )
    return [tuple(r[k] for k in keys) for r in hist.rows]


def shift_augment(m: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator):
    """An extra batch built with the generator: noisy copies of the real batch, real labels."""
    return x + 0.1 * torch.randn(x.shape, generator=g, device=x.device), y


FULL = dict(
    epochs=3,
    batch_size=10,
    lr=0.05,
    optimizer="adam",
    seed=7,
    mean=(0.3,),
    std=(0.2,),
    transform=RandomAffine(degrees=10, translate=0.1),
    augment=shift_augment,
)


# ---------------------------------------------------------------------------------------
# known answers


def test_one_sgd_step_matches_the_hand_computed_step():
    ds = toy(12)
    m = model(1)
    ref = model(1)
    fit(m, ds, epochs=1, batch_size=12, lr=0.1, optimizer="sgd", seed=0)
    loss = F.cross_entropy(ref(ds.x), ds.y)  # mean over the full batch
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for (name, p), g in zip(ref.named_parameters(), grads, strict=True):
        assert torch.allclose(m.state_dict()[name], p.detach() - 0.1 * g, atol=1e-6), (
            name
        )  # momentum buffer = grad on step 1


def test_training_learns_the_toy_problem_and_history_is_complete():
    seen: list[str] = []
    hist = fit(
        model(0),
        toy(),
        test=toy(30, seed=1),
        epochs=15,
        batch_size=8,
        lr=0.05,
        seed=0,
        callbacks=[lambda e: seen.append(e.kind)],
    )
    assert len(hist) == 15 and hist.final["test_accuracy"] == 1.0
    assert hist.rows[-1]["train_loss"] < hist.rows[0]["train_loss"]
    assert {"seconds", "eval_seconds", "wall_seconds", "test_error", "lr"} <= set(hist.final)
    assert all(r["cpu_seconds"] > 0 for r in hist.rows)  # process CPU time of the steps
    assert seen[0] == "fit_start" and seen[-1] == "fit_end"
    assert seen.count("epoch_end") == 15 and seen.count("batch_end") == 15 * 6
    assert hist.to_frame().shape[0] == 15


def test_evaluate_known_answer_and_mode_restored():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3, bias=False))
    with torch.no_grad():
        lin[1].weight.zero_()
        lin[1].weight[0, 0:4] = 1.0  # logit 0 > 0 = the others: always class 0
    ds = toy(9)
    lin.train()
    res = evaluate(lin, ds)
    assert res["accuracy"] == pytest.approx(3 / 9) and res["n"] == 9
    assert res["error"] == pytest.approx(6 / 9)
    logits = lin(ds.x)
    assert res["loss"] == pytest.approx(float(F.cross_entropy(logits, ds.y).detach()), rel=1e-6)
    assert lin.training
    with pytest.raises(DatasetError, match="no labels"):
        evaluate(lin, Dataset(ds.x, None, None, "unlabelled"))


def test_random_affine_identity_and_generator():
    x = torch.rand(3, 1, 8, 8)
    ident = RandomAffine(degrees=0, translate=0, scale=(1, 1))
    assert torch.allclose(ident(x, torch.Generator().manual_seed(0)), x, atol=1e-6)
    aug = RandomAffine()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_seeded_init_and_global_rng_untouched():
    m = Tiny()
    before = torch.get_rng_state()
    assert same(weights(model(3)), weights(model(3)))
    assert not same(weights(model(3)), weights(model(4)))
    assert same(weights(init_model(m, 3)), weights(model(3)))
    fit(model(0), toy(), epochs=1, batch_size=8, seed=0)
    assert torch.equal(torch.get_rng_state(), before)


# ---------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_results_different_seed_different():
    runs = []
    for seed in (7, 7, 8):
        m = model(0, dropout=0.3)
        hist = fit(m, toy(), test=toy(12, 1), **{**FULL, "seed": seed})
        runs.append((weights(m), metrics(hist)))
    assert same(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not same(runs[0][0], runs[2][0])


def test_augment_hook_weight_zero_reproduces_baseline_and_start_epoch():
    calls: list[tuple] = []

    def aug(m, x, y, g):
        calls.append((type(m).__name__, x.shape, y.shape))
        return x.flip(-1), y, 0.0

    base, zero = model(0), model(0)
    fit(base, toy(), epochs=2, batch_size=8, seed=1)
    h = fit(zero, toy(), epochs=2, batch_size=8, seed=1, augment=aug)
    assert same(weights(base), weights(zero)) and h.final["extra_examples"] == 0
    assert calls[0] == ("Tiny", (8, 1, 4, 4), (8,)) and len(calls) == 12

    calls.clear()
    h = fit(
        model(0),
        toy(),
        epochs=3,
        batch_size=8,
        seed=1,
        augment=lambda m, x, y, g: aug(m, x, y, g)[:2],
        augment_start=3,
    )
    assert [r["extra_examples"] for r in h.rows] == [0, 0, 48] and len(calls) == 6


def test_callbacks_can_add_metrics_to_the_row(tmp_path):
    def extra(ev: Event):
        if ev.kind == "epoch_end":
            return {"synthetic_error": 0.5 * ev.epoch}
        return None

    hist = fit(model(0), toy(), epochs=2, batch_size=16, callbacks=[extra], checkpoint_dir=tmp_path)
    assert [r["synthetic_error"] for r in hist.rows] == [0.5, 1.0]
    assert load_state(tmp_path)["history"][1]["synthetic_error"] == 1.0


def test_data_order_is_the_stream_seeds_derive_seed_gives():
    """One seed mixer: epoch e's order is randperm(N) from seeds.derive_seed(seed, 1, e)."""
    from netprobe.seeds import derive_seed

    n = 12
    ds = Dataset(x=torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone(),
                 y=torch.arange(n) % 3, classes=None, source="indexed")  # fmt: skip
    seen: list[int] = []

    def record(m, x, y, g):
        seen.extend(int(v) for v in x[:, 0, 0, 0])
        return None

    fit(model(0), ds, epochs=2, batch_size=5, seed=9, augment=record)
    for epoch in (1, 2):
        g = torch.Generator().manual_seed(derive_seed(9, 1, epoch))
        assert seen[(epoch - 1) * n : epoch * n] == torch.randperm(n, generator=g).tolist()


def test_device_is_resolved_by_runtime():
    with pytest.raises(OptionError, match="--device tpu: unknown device"):
        fit(model(0), toy(), epochs=1, device="tpu")


# ---------------------------------------------------------------------------------------
# checkpoints and resume


class Crash(Exception):
    pass


def _reference() -> tuple[dict, list]:
    m = model(0, dropout=0.3)
    hist = fit(m, toy(), test=toy(12, 1), **FULL)
    return weights(m), metrics(hist)


def _resume(ckdir: Path) -> tuple[dict, list, object]:
    m = model(5, dropout=0.3)  # a different init: everything must come from the checkpoint
    hist = fit(m, toy(), test=toy(12, 1), **FULL, checkpoint_dir=ckdir, resume=True)
    return weights(m), metrics(hist), hist


def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path):
    ref_w, ref_m = _reference()

    def crash(ev: Event):
        if ev.kind == "batch_end" and ev.epoch == 2 and ev.step == 3:
            raise Crash

    with pytest.raises(Crash):
        fit(
            model(0, dropout=0.3),
            toy(),
            test=toy(12, 1),
            **FULL,
            checkpoint_dir=tmp_path,
            callbacks=[crash],
        )
    state = load_state(tmp_path / STATE_FILE)
    assert (state["epoch"], state["step"]) == (1, 0)  # a crash keeps the last epoch checkpoint
    w, m, hist = _resume(tmp_path)
    assert hist.resumed_from == (1, 0)
    assert same(w, ref_w) and m == ref_m


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(tmp_path):
    ref_w, ref_m = _reference()

    def ctrl_c(ev: Event):
        if ev.kind == "batch_end" and ev.epoch == 2 and ev.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, honoured at the batch boundary

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(
            model(0, dropout=0.3),
            toy(),
            test=toy(12, 1),
            **FULL,
            checkpoint_dir=tmp_path,
            callbacks=[ctrl_c],
        )
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    state = load_state(tmp_path)
    assert (state["epoch"], state["step"]) == (1, 2) and len(state["history"]) == 1
    w, m, hist = _resume(tmp_path)
    assert hist.resumed_from == (1, 2)
    assert same(w, ref_w) and m == ref_m


def test_keyboard_interrupt_from_a_callback_saves_too(tmp_path):
    ref_w, ref_m = _reference()

    def stop(ev: Event):
        if ev.kind == "batch_end" and ev.epoch == 3 and ev.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            model(0, dropout=0.3),
            toy(),
            test=toy(12, 1),
            **FULL,
            checkpoint_dir=tmp_path,
            callbacks=[stop],
        )
    assert (load_state(tmp_path)["epoch"], load_state(tmp_path)["step"]) == (2, 4)
    w, m, _ = _resume(tmp_path)
    assert same(w, ref_w) and m == ref_m


KILLED = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from test_training import FULL, model, toy
from netprobe.training import fit

torch.set_num_threads(1)  # as the test process (floating-point sums depend on the thread count)


def kill(ev):
    if ev.kind == "batch_end" and ev.epoch == 2 and ev.step == 3:
        os.kill(os.getpid(), signal.SIGKILL)

fit(model(0, dropout=0.3), toy(), test=toy(12, 1), **FULL, checkpoint_dir={ckdir!r}, callbacks=[kill])
"""


@pytest.mark.slow
def test_resume_after_sigkill_equals_the_uninterrupted_run(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED.format(tests=str(REPO / "tests"), ckdir=str(tmp_path / "ck")))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not [
        p for p in (tmp_path / "ck").iterdir() if p.name != STATE_FILE
    ]  # no temp files left
    assert load_state(tmp_path / "ck")["epoch"] == 1
    ref_w, ref_m = _reference()
    w, m, _ = _resume(tmp_path / "ck")
    assert same(w, ref_w) and m == ref_m


def test_resume_extends_a_finished_run(tmp_path):
    m1 = model(0)
    fit(m1, toy(), epochs=4, batch_size=8, seed=2)
    m2 = model(0)
    fit(m2, toy(), epochs=2, batch_size=8, seed=2, checkpoint_dir=tmp_path)
    h = fit(m2, toy(), epochs=4, batch_size=8, seed=2, checkpoint_dir=tmp_path, resume=True)
    assert same(weights(m1), weights(m2)) and [r["epoch"] for r in h.rows] == [1, 2, 3, 4]


def test_resume_refuses_other_settings_and_missing_state(tmp_path):
    fit(model(0), toy(), epochs=1, batch_size=8, seed=2, checkpoint_dir=tmp_path)
    with pytest.raises(OptionError, match="batch_size 8, this run uses 16"):
        fit(model(0), toy(), epochs=2, batch_size=16, seed=2, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(LoadError, match="no training state"):
        fit(model(0), toy(), epochs=2, checkpoint_dir=tmp_path / "empty", resume=True)
    bad = tmp_path / "other.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(LoadError, match="not a netprobe training state"):
        load_state(bad)


def test_bad_settings_and_divergence():
    with pytest.raises(OptionError, match="epochs 0"):
        fit(model(0), toy(), epochs=0)
    with pytest.raises(OptionError, match="--optimizer rmsprop"):
        fit(model(0), toy(), optimizer="rmsprop")
    with pytest.raises(DatasetError, match="no labels"):
        fit(model(0), Dataset(toy().x, None, None, "unlabelled"))
    nan = toy()
    nan.x[3, 0, 0, 0] = float("nan")
    with pytest.raises(DivergedError, match="diverged at epoch 1"):
        fit(model(0), nan, epochs=1, batch_size=48)


# ---------------------------------------------------------------------------------------
# DDP


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
sys.path.insert(0, {tests!r})
from test_training import model, toy
from netprobe.training import fit

CASES = (("one", 12, 12), ("uneven", 21, 8))  # one full-batch step; 3 steps, the last uneven


def run(rank, world, init):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    for tag, n, batch in CASES:
        out = os.path.join({tmp!r}, tag + ".pt")
        m = model(0)
        hist = fit(m, toy(n), epochs=1, batch_size=batch, lr=0.1, optimizer="sgd", seed=3,
                   test=toy(9, 1), checkpoint_dir=out + "-ck")
        if rank == 0:
            torch.save({{"w": m.state_dict(), "row": hist.final}}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    init = "file://" + os.path.join({tmp!r}, "init")
    mp.spawn(run, args=(2, init), nprocs=2, join=True)
"""


@pytest.mark.slow
def test_ddp_step_equals_single_process_full_batch_step(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(DDP_SCRIPT.format(tests=str(REPO / "tests"), tmp=str(tmp_path)))
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for tag, n, batch in (("one", 12, 12), ("uneven", 21, 8)):
        got = torch.load(tmp_path / f"{tag}.pt", weights_only=True)
        m = model(0)
        hist = fit(
            m, toy(n), epochs=1, batch_size=batch, lr=0.1, optimizer="sgd", seed=3, test=toy(9, 1)
        )
        for k, v in m.state_dict().items():
            assert torch.allclose(got["w"][k], v, atol=1e-6), (tag, k)
        assert not torch.equal(
            m.state_dict()["fc.weight"], model(0).state_dict()["fc.weight"]
        )  # it moved
        for k in ("train_loss", "train_accuracy", "test_accuracy", "test_loss"):
            assert got["row"][k] == pytest.approx(hist.final[k], abs=1e-6), (tag, k)
        assert got["row"]["examples"] == n
        assert (tmp_path / f"{tag}.pt-ck" / STATE_FILE).is_file()  # written once, by rank 0


# ---------------------------------------------------------------------------------------
# the bundled default model


def test_bundled_model_reproduces_its_recorded_test_accuracy():
    from netprobe.data import bundled_digits
    from netprobe.loading import load

    lm = load(None)
    assert lm.input_shape == (1, 28, 28) and lm.classes == [str(i) for i in range(10)]
    res = evaluate(lm.require_module("test"), bundled_digits("test"), mean=lm.mean, std=lm.std)
    assert res["n"] == 1000
    assert res["accuracy"] == lm.meta["test_accuracy"]  # what build_assets.py measured and recorded
    assert res["accuracy"] >= 0.99

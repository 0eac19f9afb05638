"""`relief calibrate`: the throughput fit on hand-made samples, and a real (short) calibration whose profile loads
and drives the virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.cli import main as relief
from common.clock import client_cost, compute_budget_flops, simulate_round
from common.profiles import load_profile
from relief_client.calibrate import StepSample, all_subsets, fit_throughput


def test_fit_recovers_throughput_and_step_overhead() -> None:
    # t = F / 1e9 + 1 ms, exactly
    samples = [StepSample(("a",), f, f / 1e9 + 1e-3) for f in (1e6, 2e6, 4e6, 8e6)]
    fit = fit_throughput(samples)
    assert fit.flops_per_s == pytest.approx(1e9)
    assert fit.step_overhead_s == pytest.approx(1e-3)
    assert fit.r2 == pytest.approx(1.0) and fit.max_rel_error == pytest.approx(0.0, abs=1e-9)
    assert fit.predict(4e7, 10) == pytest.approx(0.04 + 0.01)


def test_fit_never_returns_a_negative_overhead() -> None:
    # time grows faster than FLOPs: the free line would cross zero below, so it is forced through the origin
    samples = [StepSample(("a",), 1e6, 0.5e-3), StepSample(("b",), 2e6, 2.5e-3)]
    fit = fit_throughput(samples)
    assert fit.step_overhead_s == 0.0
    assert fit.flops_per_s == pytest.approx((1e12 + 4e12) / (0.5e3 + 5e3))


def test_all_subsets() -> None:
    assert all_subsets(["a", "b", "c"]) == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]


def test_calibrated_profile_loads_and_drives_the_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "here.yaml"
    argv = ["calibrate", "--name", "here", "--out", str(out), "--steps", "2", "--warmup", "1", "--repeats", "1"]
    assert relief([*argv, "--batch-size", "8", "--window", "32", "--idle-s", "0.1", "--threads", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    p = load_profile(out)
    assert p.name == "here" and p.provenance == "calibrated" and p.accelerator == "cpu"
    assert p.flops_per_s > 1e6 and p.step_overhead_s >= 0
    assert p.calibration["subsets"] == 15 and p.calibration["batch_size"] == 8
    assert "x86-host" in p.notes  # link (and, without a meter, power) figures come from the base profile
    cost = client_cost(p, flops=p.flops_per_s * 2.0, bytes_up=1_000_000, bytes_down=1_000_000, steps=0)
    assert cost.compute_s == pytest.approx(2.0)
    r = simulate_round([cost])
    assert r.duration_s == pytest.approx(cost.total_s) and r.energy_j > 2.0 * p.idle_w
    assert compute_budget_flops(p, cost.total_s, 1_000_000, 1_000_000) == pytest.approx(2.0 * p.flops_per_s)


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert relief(["calibrate", "--name", "x", "--out", str(tmp_path / "x.yaml"), "--steps", "0"]) == 2

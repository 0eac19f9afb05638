"""Virtual clock against hand-computed examples.

Two devices on the same link (1 MB/s each way, 0.1 s latency per transfer, 1 uJ radio energy per byte):
fast = 1 GFLOP/s, 10 W active, 2 W idle; slow = 0.1 GFLOP/s, 5 W active, 1 W idle.
Each downloads 1e6 bytes (0.1 + 1.0 = 1.1 s) and uploads 5e5 bytes (0.1 + 0.5 = 0.6 s).
fast computes 2e9 FLOPs (2 s): finishes at 3.7 s; slow computes 1e9 FLOPs (10 s): finishes at 11.7 s.
"""

from __future__ import annotations

import pytest

from common.clock import (
    ClockConfig,
    Ledger,
    client_cost,
    compute_budget_flops,
    simulate_round,
    to_target,
)
from common.config import ConfigError, build
from common.profiles import DeviceProfile

LINK = {"up_bps": 8e6, "down_bps": 8e6, "latency_s": 0.1, "radio_j_per_byte": 1e-6}
FAST = DeviceProfile(name="fast", flops_per_s=1e9, active_w=10.0, idle_w=2.0, **LINK)
SLOW = DeviceProfile(name="slow", flops_per_s=1e8, active_w=5.0, idle_w=1.0, **LINK)


def costs():
    return [
        client_cost(FAST, 2e9, bytes_up=500_000, bytes_down=1_000_000, client_id="f"),
        client_cost(SLOW, 1e9, bytes_up=500_000, bytes_down=1_000_000, client_id="s"),
    ]


def test_phases_of_one_client() -> None:
    f = costs()[0]
    assert f.download_s == pytest.approx(1.1)
    assert f.compute_s == pytest.approx(2.0)
    assert f.upload_s == pytest.approx(0.6)
    assert f.total_s == pytest.approx(3.7)


def test_straggler_sets_the_round_and_fast_device_pays_idle_waiting() -> None:
    r = simulate_round(costs())
    assert r.duration_s == pytest.approx(11.7)
    assert r.dropped == []
    # fast: 10 W x 2 s computing + 2 W x 9.7 s waiting/communicating + 1e-6 J x 1.5e6 bytes
    assert r.clients["f"].energy_j == pytest.approx(20.0 + 19.4 + 1.5)
    # slow: 5 W x 10 s + 1 W x 1.7 s + 1.5 J
    assert r.clients["s"].energy_j == pytest.approx(50.0 + 1.7 + 1.5)
    assert r.energy_j == pytest.approx(94.1)
    assert (r.bytes_up, r.bytes_down) == (1_000_000, 2_000_000)


def test_deadline_drops_the_late_update_and_cuts_its_work() -> None:
    r = simulate_round(costs(), deadline_s=5.0)
    assert r.duration_s == pytest.approx(5.0)
    assert r.dropped == ["s"] and r.completed == ["f"]
    # fast: 20 J computing + 2 W x 3 s + 1.5 J radio
    assert r.clients["f"].energy_j == pytest.approx(27.5)
    # slow: downloads (1.1 s, 1e6 bytes), computes 3.9 s until the cut, never uploads
    s = r.clients["s"]
    assert s.compute_s == pytest.approx(3.9)
    assert s.energy_j == pytest.approx(5.0 * 3.9 + 1.0 * 1.1 + 1.0)
    assert (s.bytes_up, s.bytes_down) == (0, 1_000_000)
    assert r.bytes_up == 500_000


def test_loose_deadline_does_not_stretch_the_round() -> None:
    r = simulate_round(costs(), deadline_s=20.0)
    assert r.duration_s == pytest.approx(11.7) and r.dropped == []


def test_finishing_exactly_at_the_deadline_is_on_time() -> None:
    r = simulate_round(costs(), deadline_s=0.1 + 1.0 + 10.0 + 0.1 + 0.5)
    assert r.dropped == []


def test_unselected_devices_draw_idle_power_all_round() -> None:
    r = simulate_round(costs(), idle={"x": SLOW, "y": FAST})
    assert r.idle_energy_j == pytest.approx((1.0 + 2.0) * 11.7)
    assert r.energy_j == pytest.approx(94.1 + 35.1)


def test_empty_round_and_nothing_to_send() -> None:
    assert simulate_round([]).duration_s == 0.0
    c = client_cost(FAST, 1e9, bytes_up=0, bytes_down=0)
    assert c.total_s == pytest.approx(1.0)  # no transfer, no latency


def test_step_overhead() -> None:
    p = DeviceProfile(name="p", flops_per_s=1e9, active_w=1, idle_w=1, up_bps=1, down_bps=1, step_overhead_s=0.01)
    assert client_cost(p, 1e9, 0, 0, steps=50).compute_s == pytest.approx(1.5)


def test_compute_budget() -> None:
    # slow device, 5 s deadline, 1.7 s of communication: 3.3 s x 1e8 FLOP/s
    assert compute_budget_flops(SLOW, 5.0, 500_000, 1_000_000) == pytest.approx(3.3e8)
    assert compute_budget_flops(SLOW, 1.0, 500_000, 1_000_000) == 0.0  # communication alone misses it


def test_relative_deadlines() -> None:
    cfg = build(ClockConfig, {"deadline_mode": "fastest", "deadline_factor": 2.0})
    assert cfg.resolve_deadline([3.7, 11.7]) == pytest.approx(7.4)
    cfg = build(ClockConfig, {"deadline_mode": "median", "deadline_factor": 2.0})
    assert cfg.resolve_deadline([1.0, 2.0, 10.0]) == pytest.approx(4.0)
    assert build(ClockConfig, {}).resolve_deadline([1.0]) is None  # default: no deadline
    assert build(ClockConfig, {"deadline_s": 3}).resolve_deadline([1.0]) == 3.0
    with pytest.raises(ConfigError, match="deadline_s"):
        build(ClockConfig, {"deadline_mode": "fastest", "deadline_s": 3.0})
    with pytest.raises(ConfigError, match="deadline_s"):
        build(ClockConfig, {"deadline_s": -1})


def _ledger() -> Ledger:
    led = Ledger()
    led.add(10.0, 1.0, 100, 200, metric=0.5)
    led.add(20.0, 2.0, 100, 200)  # not evaluated
    led.add(30.0, 3.0, 100, 200, metric=0.8)
    return led


def test_ledger_accumulates() -> None:
    rows = _ledger().rows()
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert [r["cum_time_s"] for r in rows] == [10.0, 30.0, 60.0]
    assert [r["cum_energy_j"] for r in rows] == [1.0, 3.0, 6.0]
    assert rows[-1]["cum_bytes_up"] == 300 and rows[-1]["cum_bytes_down"] == 600


def test_time_energy_bytes_to_target() -> None:
    hit = to_target(_ledger(), 0.7)
    assert hit is not None
    assert (hit.round, hit.time_s, hit.energy_j, hit.bytes_total) == (3, 60.0, 6.0, 900)
    first = to_target(_ledger(), 0.5)  # reached at the first round (>=)
    assert first is not None and first.round == 1


def test_target_never_reached_is_none() -> None:
    assert to_target(_ledger(), 0.9) is None
    assert to_target(Ledger(), 0.1) is None


def test_lower_is_better_target_and_late_metric() -> None:
    led = _ledger()
    led.set_metric(2, 0.1)
    hit = to_target(led, 0.2, higher_is_better=False)
    assert hit is not None and hit.round == 2 and hit.time_s == 30.0


def test_ledger_from_simulated_rounds() -> None:
    led = Ledger()
    led.add_timing(simulate_round(costs(), deadline_s=5.0), metric=0.3)
    led.add_timing(simulate_round(costs()), metric=0.6)
    hit = to_target(led, 0.6)
    assert hit is not None
    assert hit.time_s == pytest.approx(5.0 + 11.7)
    assert hit.energy_j == pytest.approx(27.5 + 21.6 + 94.1)
    assert led.rounds[0].n_dropped == 1

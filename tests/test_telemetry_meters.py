"""CPU-time model, meter selection and the per-phase timer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from fixtures.sysfs import orin_tree, rapl_zone

from common.profiles import DeviceProfile
from relief_client.telemetry.cpu_model import CpuModelMeter, cpu_model_joules
from relief_client.telemetry.jetson import HwmonMeter
from relief_client.telemetry.meter import Meter
from relief_client.telemetry.phases import PhaseTimer
from relief_client.telemetry.rapl import RaplMeter
from relief_client.telemetry.select import best_meter

PROFILE = DeviceProfile(name="p", flops_per_s=1e9, up_bps=1e6, down_bps=1e6, active_w=10.0, idle_w=2.0)


def test_cpu_model_formula() -> None:
    # 2 CPU-seconds over 4 s on 2 CPUs: 25 % utilisation -> (2 + 8 x 0.25) W x 4 s
    assert cpu_model_joules(2.0, 4.0, 2, 10.0, 2.0) == pytest.approx(16.0)
    assert cpu_model_joules(0.0, 4.0, 2, 10.0, 2.0) == pytest.approx(8.0)  # asleep: idle power
    assert cpu_model_joules(9.0, 4.0, 2, 10.0, 2.0) == pytest.approx(40.0)  # capped at active power
    assert cpu_model_joules(1.0, 0.0, 2, 10.0, 2.0) == 0.0


def test_cpu_model_meter_busy_loop() -> None:
    meter = CpuModelMeter(PROFILE, n_cpus=1)
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    with meter:
        t_end = time.perf_counter() + 0.2
        while time.perf_counter() < t_end:
            pass
    cpu_s = sum(proc.cpu_times()[:2]) - cpu0
    r = meter.reading
    assert r is not None and r.method == "estimated:cpu-model"
    # the meter's utilisation is this process's CPU time over the interval (how much of a CPU the scheduler gave
    # the busy thread depends on what else runs, so compare with what the process itself measured)
    assert r.extra["utilisation"] == pytest.approx(min(1.0, cpu_s / r.seconds), abs=0.05)
    assert r.extra["utilisation"] > 0.1  # the busy loop registered
    assert 2.0 * r.seconds <= r.joules <= 10.0 * r.seconds


def test_best_meter_prefers_jetson_then_rapl_then_cpu(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert isinstance(best_meter(PROFILE, root=empty, powercap=empty), CpuModelMeter)
    rapl_zone(tmp_path / "powercap", "intel-rapl:0", "package-0", 0)
    assert isinstance(best_meter(PROFILE, root=empty, powercap=tmp_path / "powercap"), RaplMeter)
    orin_tree(tmp_path / "orin")  # no jtop installed here, so hwmon is the Jetson source
    chosen = best_meter(PROFILE, root=tmp_path / "orin", powercap=tmp_path / "powercap")
    assert isinstance(chosen, HwmonMeter) and chosen.method == "measured:jetson-rails"


class FakeMeter(Meter):
    method = "measured:fake"

    def _begin(self) -> None:
        pass

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        return 3.0 * seconds, {"rail": 3.0 * seconds}, {"source": "test"}


def test_phase_timer_records_phases_counters_and_energy() -> None:
    timer = PhaseTimer()
    with timer.phase("load"):  # before start(): kept, but outside the energy window
        time.sleep(0.02)
    timer.meter = FakeMeter()
    timer.start()
    for _ in range(2):  # a repeated phase accumulates
        with timer.phase("train"):
            time.sleep(0.02)
            timer.count(flops=1e6, steps=1)
    with timer.phase("serialise"):
        timer.count(bytes_up=1000, bytes_down=2000)
    t = timer.finish()
    assert set(t.phases_s) == {"load", "train", "serialise"}
    assert t.phases_s["train"] >= 0.04 and t.wall_s >= t.phases_s["train"] + t.phases_s["serialise"]
    assert t.phases_s["load"] >= 0.02
    assert (t.flops, t.steps, t.bytes_up, t.bytes_down) == (2e6, 2, 1000, 2000)
    assert t.peak_rss_bytes > 0
    m = t.metrics()
    assert m["flops"] == 2e6 and m["time.train_s"] == t.phases_s["train"] and "energy.rail_j" in m
    assert m["energy_j"] == pytest.approx(3.0 * t.energy.seconds)  # type: ignore[union-attr]
    assert t.provenance()["energy_method"] == "measured:fake"
    with pytest.raises(RuntimeError):
        timer.finish()

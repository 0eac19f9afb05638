"""Jetson rails: hwmon reader on a fixture tree laid out like an AGX Orin's sysfs, tegrastats lines in their real
format (AGX Orin, Orin Nano, Xavier), the tegrastats subprocess reader, and the board-state readers."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from fixtures.sysfs import orin_tree, write

from relief_client.telemetry.jetson import (
    HwmonMeter,
    TegrastatsMeter,
    find_ina3221,
    is_jetson,
    jetson_clocks_state,
    parse_nvpmodel,
    parse_tegrastats,
    rails_total,
)
from relief_client.telemetry.meter import PowerIntegrator

# tegrastats --interval 100 on an AGX Orin (JetPack 5/6): rails as `NAME <now>mW/<avg>mW` after RAM/CPU/temps.
ORIN_LINE = (
    "08-21-2023 14:40:53 RAM 3391/30536MB (lfb 6036x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,off,off,off,off] EMC_FREQ 0%@2133 "
    "GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@45.218C Tboard@34C SOC2@42.062C Tdiode@35.5C "
    "SOC0@42.437C CV1@-256C GPU@-256C tj@45.218C SOC1@41.843C CV2@-256C "
    "VDD_GPU_SOC 2385mW/2385mW VDD_CPU_CV 397mW/397mW VIN_SYS_5V0 2222mW/2222mW VDDQ_VDD2_1V8AO 302mW/302mW"
)
# Orin Nano (JetPack 6): a total input rail VDD_IN plus its parts.
NANO_LINE = (
    "11-14-2024 22:27:50 RAM 2980/7620MB (lfb 2x4MB) SWAP 17/3810MB (cached 0MB) "
    "CPU [3%@1510,2%@1510,1%@1510,0%@1510,4%@1510,1%@1510] GR3D_FREQ 0% cpu@47.5C soc2@46.125C "
    "soc0@46.312C gpu@46.781C tj@47.5C soc1@46.125C VDD_IN 4890mW/4901mW VDD_CPU_GPU_CV 489mW/495mW "
    "VDD_SOC 1467mW/1470mW"
)
# AGX Xavier (JetPack 4.2): no units on the rails.
XAVIER_LINE = (
    "RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,0%@1190,"
    "0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C Tboard@31C Tdiode@32C "
    "AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 "
    "SYS5V 3306/3306"
)


def test_find_ina3221_channels(tmp_path: Path) -> None:
    orin_tree(tmp_path)
    chans = find_ina3221(tmp_path)
    assert [c.rail for c in chans] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert [c.watts() for c in chans] == pytest.approx([4.0, 1.0, 2.5, 0.5])


def test_hwmon_meter_integrates_rails_at_10hz_or_more(tmp_path: Path) -> None:
    orin_tree(tmp_path)
    meter = HwmonMeter(tmp_path, interval_s=0.02)
    with meter:
        time.sleep(0.3)
    r = meter.reading
    assert r is not None and r.method == "measured:jetson-rails"
    assert r.extra["source"] == "hwmon" and r.extra["total"] == "sum of rails"
    assert r.extra["sample_hz"] >= 10
    # constant power: each rail's energy is its power x the interval; the total sums the four rails (8 W)
    assert r.rails["VDD_GPU_SOC"] == pytest.approx(4.0 * r.seconds, rel=0.02)
    assert r.joules == pytest.approx(8.0 * r.seconds, rel=0.02)
    assert r.extra["compute_j"] == pytest.approx(5.0 * r.seconds, rel=0.02)
    assert r.extra["jetson_clocks"] == "unknown"  # no cpufreq in the fixture


def test_hwmon_follows_a_power_step(tmp_path: Path) -> None:
    a = orin_tree(tmp_path)
    meter = HwmonMeter(tmp_path, interval_s=0.01, context=False)
    meter.start()
    time.sleep(0.2)
    write(a / "curr1_input", "1800")  # GPU rail 4 W -> 9 W
    time.sleep(0.2)
    r = meter.stop()
    assert 4.0 * r.seconds < r.rails["VDD_GPU_SOC"] < 9.0 * r.seconds
    assert r.rails["VDD_GPU_SOC"] == pytest.approx(6.5 * r.seconds, rel=0.15)


def test_hwmon_rejects_slow_sampling_and_missing_sensor(tmp_path: Path) -> None:
    orin_tree(tmp_path)
    with pytest.raises(ValueError, match="10"):
        HwmonMeter(tmp_path, interval_s=0.5)
    with pytest.raises(OSError):
        HwmonMeter(tmp_path / "elsewhere")


def test_power_integrator_trapezoid_and_padding() -> None:
    integ = PowerIntegrator()
    integ.add(0.0, {"A": 10.0})
    integ.add(1.0, {"A": 20.0})
    integ.add(3.0, {"A": 20.0})
    assert integ.joules["A"] == pytest.approx(15.0 + 40.0)
    assert integ.rate_hz == pytest.approx(2 / 3)
    assert integ.pad(-0.5, 4.0) == pytest.approx(1.5)
    assert integ.joules["A"] == pytest.approx(55.0 + 10.0 * 0.5 + 20.0 * 1.0)


def test_parse_tegrastats_orin() -> None:
    rails = parse_tegrastats(ORIN_LINE)
    assert rails == pytest.approx(
        {"VDD_GPU_SOC": 2.385, "VDD_CPU_CV": 0.397, "VIN_SYS_5V0": 2.222, "VDDQ_VDD2_1V8AO": 0.302}
    )
    assert rails_total(rails) == pytest.approx(5.306)


def test_parse_tegrastats_nano_total_is_the_input_rail() -> None:
    rails = parse_tegrastats(NANO_LINE)
    assert rails == pytest.approx({"VDD_IN": 4.890, "VDD_CPU_GPU_CV": 0.489, "VDD_SOC": 1.467})
    assert rails_total(rails) == pytest.approx(4.890)  # the parts are inside VDD_IN


def test_parse_tegrastats_xavier_and_non_rail_lines() -> None:
    rails = parse_tegrastats(XAVIER_LINE)
    assert rails == pytest.approx({"GPU": 0.463, "CPU": 0.618, "SOC": 2.936, "CV": 0.0, "VDDRQ": 0.309, "SYS5V": 3.306})
    assert parse_tegrastats("RAM 3391/30536MB (lfb 6036x4MB) SWAP 0/15268MB (cached 0MB)") == {}


def test_tegrastats_feed_integrates_lines() -> None:
    meter = TegrastatsMeter(exe="/bin/true")
    for t in (0.0, 0.1, 0.2):
        meter.feed(t, ORIN_LINE)
    meter.feed(0.25, "garbage")
    assert sum(meter._integ.joules.values()) == pytest.approx(5.306 * 0.2)


def test_tegrastats_subprocess_reader(tmp_path: Path) -> None:
    fake = tmp_path / "tegrastats"
    fake.write_text(f'#!/bin/sh\nwhile true; do echo "{ORIN_LINE}"; sleep 0.05; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    meter = TegrastatsMeter(interval_ms=50, exe=str(fake))
    with meter:
        time.sleep(0.4)
    r = meter.reading
    assert r is not None and r.extra["source"] == "tegrastats" and r.extra["samples"] >= 3
    assert r.joules == pytest.approx(5.306 * r.seconds, rel=0.05)  # padded to the whole interval


def test_board_state_readers(tmp_path: Path) -> None:
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == "MAXN"
    assert parse_nvpmodel("NV Power Mode: 30W\n2\n") == "30W"
    assert parse_nvpmodel("nvpmodel: command not found") is None
    cpufreq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    write(cpufreq / "scaling_min_freq", "2201600")
    write(cpufreq / "scaling_max_freq", "2201600")
    assert jetson_clocks_state(tmp_path) == "on"
    write(cpufreq / "scaling_min_freq", "115200")
    assert jetson_clocks_state(tmp_path) == "off"
    assert jetson_clocks_state(tmp_path / "none") == "unknown"
    assert not is_jetson(tmp_path)
    write(tmp_path / "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert is_jetson(tmp_path)

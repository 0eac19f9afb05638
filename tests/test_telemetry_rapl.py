"""RAPL: counter wrap arithmetic and the meter on a powercap fixture tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.sysfs import RAPL_MAX, rapl_zone

from relief_client.telemetry.rapl import RaplMeter, counter_delta, find_zones, rapl_available

MAX = RAPL_MAX


def test_counter_delta() -> None:
    assert counter_delta(100, 250, 1000) == 150
    assert counter_delta(900, 50, 1000) == 150  # wrapped: 100 to the top, 50 after
    assert counter_delta(MAX - 1_000_000, 2_000_000, MAX) == 3_000_000


def test_meter_handles_wrap_and_keeps_subzones_out_of_the_total(tmp_path: Path) -> None:
    pkg = rapl_zone(tmp_path, "intel-rapl:0", "package-0", MAX - 4_000_000)
    core = rapl_zone(tmp_path, "intel-rapl:0:0", "core", 1_000_000)
    dram = rapl_zone(tmp_path, "intel-rapl:0:1", "dram", 0)
    (tmp_path / "intel-rapl").mkdir()  # the control-type folder, no counters: ignored
    meter = RaplMeter(tmp_path, poll_s=10.0)
    meter.start()
    (pkg / "energy_uj").write_text(f"{6_000_000}\n")  # wrapped: 4 J to the top + 6 J = 10 J
    (core / "energy_uj").write_text(f"{8_000_000}\n")  # 7 J
    (dram / "energy_uj").write_text(f"{2_500_000}\n")  # 2.5 J
    r = meter.stop()
    assert r.method == "measured:rapl"
    assert r.joules == pytest.approx(10.0)
    assert r.rails == pytest.approx({"package-0": 10.0, "package-0/core": 7.0, "package-0/dram": 2.5})
    assert r.extra["wraps"] == 1 and r.extra["summed"] == ["package-0"]


def test_two_packages_sum_and_psys_wins(tmp_path: Path) -> None:
    a = rapl_zone(tmp_path / "two", "intel-rapl:0", "package-0", 0)
    b = rapl_zone(tmp_path / "two", "intel-rapl:1", "package-1", 0)
    with RaplMeter(tmp_path / "two", poll_s=10.0) as m:
        (a / "energy_uj").write_text("3000000")
        (b / "energy_uj").write_text("2000000")
    assert m.reading is not None and m.reading.joules == pytest.approx(5.0)

    pkg = rapl_zone(tmp_path / "psys", "intel-rapl:0", "package-0", 0)
    psys = rapl_zone(tmp_path / "psys", "intel-rapl:1", "psys", 0)
    with RaplMeter(tmp_path / "psys", poll_s=10.0) as m:
        (pkg / "energy_uj").write_text("3000000")
        (psys / "energy_uj").write_text("9000000")
    assert m.reading is not None and m.reading.joules == pytest.approx(9.0)  # platform covers the package


def test_background_poll_catches_repeated_wraps(tmp_path: Path) -> None:
    import time

    pkg = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 900, max_uj=1000)
    meter = RaplMeter(tmp_path, poll_s=0.02)
    meter.start()
    for value in (100, 800, 200):  # three increments of 200, 700 and 400 uJ, two of them across a wrap
        (pkg / "energy_uj").write_text(str(value))
        time.sleep(0.15)
    r = meter.stop()
    assert r.rails["package-0"] == pytest.approx(1300e-6)
    assert r.extra["wraps"] == 2


def test_absent_or_unreadable(tmp_path: Path) -> None:
    assert not rapl_available(tmp_path / "missing")
    assert find_zones(tmp_path) == []
    with pytest.raises(OSError):
        RaplMeter(tmp_path)

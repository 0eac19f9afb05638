"""Choose the best energy source present: Jetson rails, then RAPL, then the CPU-time model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from common.profiles import DeviceProfile
from relief_client.telemetry.cpu_model import CpuModelMeter
from relief_client.telemetry.jetson import HwmonMeter, JtopMeter, TegrastatsMeter, is_jetson
from relief_client.telemetry.meter import Meter
from relief_client.telemetry.rapl import POWERCAP, RaplMeter

log = logging.getLogger(__name__)


def best_meter(profile: DeviceProfile, *, root: Path | str = "/", powercap: Path | str = POWERCAP) -> Meter:
    """The most direct meter available on this machine; its ``method`` tag says which kind it is.

    Jetson: jtop, else the INA3221 hwmon files, else tegrastats (all ``measured:jetson-rails``); x86 with readable
    RAPL: ``measured:rapl``; otherwise ``estimated:cpu-model`` from ``profile``'s power figures. Each candidate that
    fails to start is logged and skipped, so this never raises for a missing sensor.
    """
    if is_jetson(root):
        makers: tuple[tuple[str, Callable[[], Meter]], ...] = (
            ("jtop", lambda: JtopMeter()),
            ("hwmon", lambda: HwmonMeter(root)),
            ("tegrastats", lambda: TegrastatsMeter()),
        )
        for name, make in makers:
            try:
                return make()
            except (ImportError, OSError, ValueError) as err:
                log.info("jetson power source %s unavailable: %s", name, err)
            except Exception as err:  # jtop raises its own exception types when the service is absent
                log.info("jetson power source %s failed: %s", name, err)
    try:
        return RaplMeter(powercap)
    except OSError as err:
        log.info("RAPL unavailable: %s", err)
    return CpuModelMeter(profile)

"""Fallback meter: process CPU time x the device profile's power (no power sensor needed).

Linear utilisation model: ``E = idle_w * wall + (active_w - idle_w) * cpu_s / n_cpus``, where ``cpu_s`` is this
process's user + system CPU time (children included) and ``n_cpus`` the CPUs it may run on. A process keeping every
CPU busy is charged ``active_w`` (the profile's training power, measured with all cores busy); one that sleeps is
charged ``idle_w``. It is an estimate and is tagged ``estimated:cpu-model``.
"""

from __future__ import annotations

import os
from typing import Any

import psutil

from common.profiles import DeviceProfile
from relief_client.telemetry.meter import ESTIMATED_CPU, Meter


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def process_cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0))


def cpu_model_joules(cpu_s: float, wall_s: float, n_cpus: int, active_w: float, idle_w: float) -> float:
    """The model's energy; utilisation is capped at 1 (CPU time can exceed wall x CPUs only through rounding)."""
    if wall_s <= 0:
        return 0.0
    util = min(1.0, max(0.0, cpu_s / (wall_s * n_cpus)))
    return (idle_w + (active_w - idle_w) * util) * wall_s


class CpuModelMeter(Meter):
    """Energy estimated from this process's CPU time and the profile's active/idle power."""

    method = ESTIMATED_CPU

    def __init__(self, profile: DeviceProfile, n_cpus: int | None = None) -> None:
        super().__init__()
        self.profile = profile
        self.n_cpus = n_cpus or usable_cpus()
        self._proc = psutil.Process()
        self._cpu0 = 0.0

    def _begin(self) -> None:
        self._cpu0 = process_cpu_s(self._proc)

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        cpu_s = process_cpu_s(self._proc) - self._cpu0
        joules = cpu_model_joules(cpu_s, seconds, self.n_cpus, self.profile.active_w, self.profile.idle_w)
        util = cpu_s / (seconds * self.n_cpus) if seconds > 0 else 0.0
        extra = {
            "source": "psutil",
            "profile": self.profile.name,
            "cpu_s": round(cpu_s, 6),
            "n_cpus": self.n_cpus,
            "utilisation": round(min(1.0, util), 4),
        }
        return joules, {"cpu": joules}, extra

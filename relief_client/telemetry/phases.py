"""Per-round client telemetry: wall-clock per phase (load, train, serialise, ...), executed FLOPs, bytes, peak RSS,
and the energy reading with its method tag.

Usage::

    timer = PhaseTimer(best_meter(profile))
    with timer.phase("load"): ...      # phases may come before start(); energy and wall_s count from start()
    timer.start()
    with timer.phase("train"): ...; timer.count(flops=f, steps=n)
    with timer.phase("serialise"): ...; timer.count(bytes_up=len(payload))
    telemetry = timer.finish()          # RoundTelemetry; .metrics() for a flat numeric record
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relief_client.telemetry.meter import EnergyReading, Meter

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next read is this round's peak; Linux only, fails soft."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last reset (or process start), bytes."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


@dataclass
class RoundTelemetry:
    """What a client measured over one round."""

    phases_s: dict[str, float]
    wall_s: float
    flops: float = 0.0
    steps: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    peak_rss_bytes: int = 0
    peak_rss_is_round: bool = False  # False: the peak is the process lifetime's (the reset was not possible)
    energy: EnergyReading | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.energy.method if self.energy is not None else "none"

    def metrics(self) -> dict[str, float]:
        """Flat numeric view (for a Flower MetricRecord); the method tag and provenance are in :meth:`provenance`."""
        out: dict[str, float] = {f"time.{name}_s": s for name, s in self.phases_s.items()}
        out |= {
            "time.wall_s": self.wall_s,
            "flops": self.flops,
            "steps": float(self.steps),
            "bytes_up": float(self.bytes_up),
            "bytes_down": float(self.bytes_down),
            "peak_rss_bytes": float(self.peak_rss_bytes),
        }
        if self.energy is not None:
            out["energy_j"] = self.energy.joules
            out["energy_s"] = self.energy.seconds
            out |= {f"energy.{rail}_j": j for rail, j in self.energy.rails.items()}
        return out

    def provenance(self) -> dict[str, str]:
        """String view of how the numbers were obtained (for a Flower ConfigRecord / the run log)."""
        out = {"energy_method": self.method, "peak_rss_scope": "round" if self.peak_rss_is_round else "process"}
        if self.energy is not None:
            out |= {f"energy.{k}": str(v) for k, v in self.energy.extra.items()}
        return out


class PhaseTimer:
    """Wall-clock per named phase (accumulating when a phase repeats), counters, and an optional energy meter."""

    def __init__(self, meter: Meter | None = None) -> None:
        self.meter = meter
        self.phases_s: dict[str, float] = {}
        self.flops = 0.0
        self.steps = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._t0: float | None = None
        self._rss_reset = False

    def reset(self) -> None:
        """Forget recorded phases and counters (to reuse the timer for another round)."""
        self.phases_s.clear()
        self.flops, self.steps, self.bytes_up, self.bytes_down = 0.0, 0, 0, 0

    def start(self) -> None:
        """Start the energy meter, the wall clock and the peak-RSS window. Phases may be recorded before this (e.g.
        a load phase that decides which meter to use); they are kept."""
        self._rss_reset = reset_peak_rss()
        if self.meter is not None:
            self.meter.start()
        self._t0 = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases_s[name] = self.phases_s.get(name, 0.0) + time.perf_counter() - t0

    def count(self, *, flops: float = 0.0, steps: int = 0, bytes_up: int = 0, bytes_down: int = 0) -> None:
        self.flops += flops
        self.steps += steps
        self.bytes_up += bytes_up
        self.bytes_down += bytes_down

    def finish(self) -> RoundTelemetry:
        if self._t0 is None:
            raise RuntimeError("PhaseTimer.finish() before start()")
        wall = time.perf_counter() - self._t0
        self._t0 = None
        energy = self.meter.stop() if self.meter is not None else None
        return RoundTelemetry(
            phases_s=dict(self.phases_s),
            wall_s=wall,
            flops=self.flops,
            steps=self.steps,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
            peak_rss_bytes=peak_rss_bytes(),
            peak_rss_is_round=self._rss_reset,
            energy=energy,
        )

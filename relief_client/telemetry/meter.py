"""The meter interface: ``start()`` / ``stop() -> EnergyReading`` (or a ``with`` block), plus the shared machinery
for meters that sample power in a background thread and integrate it over time."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

MEASURED_JETSON = "measured:jetson-rails"
MEASURED_RAPL = "measured:rapl"
ESTIMATED_CPU = "estimated:cpu-model"


@dataclass
class EnergyReading:
    """Energy over one measured interval, and how it was obtained.

    ``rails`` holds joules per measured rail (or per RAPL zone); ``joules`` is what the method counts as the device
    total (see docs/energy.md for which rails are summed). ``extra`` carries provenance details: the source within
    the method (jtop/hwmon/tegrastats), sampling rate, power mode, counter wraps, ...
    """

    joules: float
    seconds: float
    method: str
    rails: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def watts(self) -> float:
        """Mean power over the interval (0 for an empty interval)."""
        return self.joules / self.seconds if self.seconds > 0 else 0.0


class Meter(ABC):
    """Measures energy between ``start()`` and ``stop()``. Use once per interval; reusable after ``stop()``.

    ``with meter:`` starts it and leaves the result in ``meter.reading`` on exit.
    """

    method: str = ""

    def __init__(self) -> None:
        self.reading: EnergyReading | None = None
        self._t0: float | None = None

    def start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self.reading = None
        self._begin()
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError(f"{type(self).__name__} was not started")
        seconds = time.perf_counter() - self._t0
        self._t0 = None
        joules, rails, extra = self._end(seconds)
        self.reading = EnergyReading(joules, seconds, self.method, rails, extra)
        return self.reading

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @abstractmethod
    def _begin(self) -> None:
        """Take the starting counters / start sampling."""

    @abstractmethod
    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        """Stop; return (total joules, joules per rail, extra provenance)."""


class PowerIntegrator:
    """Trapezoidal integration of per-rail power samples (watts) over time (seconds)."""

    def __init__(self) -> None:
        self.joules: dict[str, float] = {}
        self.n_samples = 0
        self._last_t: float | None = None
        self._last: dict[str, float] = {}
        self._first_t: float | None = None
        self._first: dict[str, float] = {}

    def add(self, t: float, watts: dict[str, float]) -> None:
        if self._last_t is not None:
            dt = t - self._last_t
            if dt > 0:
                for rail, w in watts.items():
                    prev = self._last.get(rail, w)  # a rail that appears late starts flat
                    self.joules[rail] = self.joules.get(rail, 0.0) + 0.5 * (prev + w) * dt
        else:
            self._first_t, self._first = t, dict(watts)
        for rail in watts:
            self.joules.setdefault(rail, 0.0)
        self._last_t, self._last = t, dict(watts)
        self.n_samples += 1

    def pad(self, t_begin: float, t_end: float) -> float:
        """Hold the first/last sample flat back to ``t_begin`` and on to ``t_end`` (for sources that push samples
        at their own pace, e.g. tegrastats, whose first line arrives only after one interval). Returns seconds added."""
        if self._first_t is None or self._last_t is None:
            return 0.0
        head, tail = max(0.0, self._first_t - t_begin), max(0.0, t_end - self._last_t)
        for rail in self.joules:
            self.joules[rail] += self._first.get(rail, 0.0) * head + self._last.get(rail, 0.0) * tail
        return head + tail

    @property
    def last_watts(self) -> dict[str, float]:
        return dict(self._last)

    @property
    def span_s(self) -> float:
        return 0.0 if self._first_t is None or self._last_t is None else self._last_t - self._first_t

    @property
    def rate_hz(self) -> float:
        """Mean sampling rate actually achieved."""
        return (self.n_samples - 1) / self.span_s if self.span_s > 0 else 0.0


class SampledMeter(Meter):
    """A meter that polls instantaneous per-rail power in a background thread (so short rounds are resolved)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self._thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._integ = PowerIntegrator()
        self._lock = threading.Lock()
        self._errors = 0

    @abstractmethod
    def sample(self) -> dict[str, float]:
        """Instantaneous power per rail, watts."""

    def _take(self) -> None:
        try:
            watts = self.sample()
        except OSError:
            self._errors += 1  # a transient sysfs read error must not kill the measurement
            return
        with self._lock:
            self._integ.add(time.perf_counter(), watts)

    def _loop(self) -> None:
        while not self._stop_evt.wait(self.interval_s):
            self._take()

    def _begin(self) -> None:
        self._integ = PowerIntegrator()
        self._errors = 0
        self._stop_evt.clear()
        self._take()
        self._thread = threading.Thread(target=self._loop, name=f"{type(self).__name__}-sampler", daemon=True)
        self._thread.start()

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        self._stop_evt.set()
        if self._thread is not None:
            self._thread.join()
        self._take()  # close the interval at the stop instant
        # The samples span [first, last], which a loaded scheduler can stretch or shrink around the meter's own
        # interval; report the mean sampled power over exactly that interval (``seconds``).
        span = self._integ.span_s
        if span > 0:
            rails = {rail: j * seconds / span for rail, j in self._integ.joules.items()}
        else:  # a single sample: hold it flat over the interval
            rails = {rail: w * seconds for rail, w in self._integ.last_watts.items()}
        extra: dict[str, Any] = {"samples": self._integ.n_samples, "sample_hz": round(self._integ.rate_hz, 2)}
        if self._errors:
            extra["read_errors"] = self._errors
        return self.total(rails), rails, extra

    def total(self, rails: dict[str, float]) -> float:
        """Device total from the rails (default: their sum)."""
        return sum(rails.values())

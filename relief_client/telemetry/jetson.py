"""Jetson power rails (INA3221), three ways, all tagged ``measured:jetson-rails`` (``extra["source"]`` says which):

1. ``jtop`` (jetson-stats) when importable and its service answers;
2. the INA3221 hwmon sysfs files, sampled at >= 10 Hz in a background thread (power = bus mV x mA per channel);
3. ``tegrastats --interval 100`` parsed line by line.

Total: on boards with a total-input rail (``VDD_IN`` on Orin Nano/NX, ``POM_5V_IN`` on older boards) that rail is the
total and the others are its parts; otherwise (AGX Orin: ``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``,
``VDDQ_VDD2_1V8AO``) the total is the sum of the sensed rails, as jtop reports it (the carrier board is not
measured). ``extra["compute_j"]`` adds the compute rails only (GPU_SOC + CPU_CV) for the "compute power" figure.
Every reading records the nvpmodel mode and jetson_clocks state; both readers fail soft (None / "unknown").
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relief_client.telemetry.meter import MEASURED_JETSON, Meter, PowerIntegrator, SampledMeter

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
COMPUTE_RAILS = ("VDD_GPU_SOC", "VDD_CPU_CV")
MIN_RATE_HZ = 10.0


# ---------------------------------------------------------------------------------------------------- board state


def is_jetson(root: Path | str = "/") -> bool:
    """True on an NVIDIA Jetson (L4T release file or a device-tree model naming Jetson)."""
    r = Path(root)
    if (r / "etc/nv_tegra_release").is_file():
        return True
    try:
        return "jetson" in (r / "proc/device-tree/model").read_text(errors="ignore").lower()
    except OSError:
        return False


def parse_nvpmodel(text: str) -> str | None:
    """Mode name from ``nvpmodel -q`` output (``NV Power Mode: MAXN``)."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    return m.group(1) if m else None


def nvpmodel_mode(timeout_s: float = 3.0) -> str | None:
    """The active nvpmodel mode name, or None when nvpmodel is absent or fails."""
    exe = shutil.which("nvpmodel")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvpmodel(out.stdout + out.stderr)


def jetson_clocks_state(root: Path | str = "/") -> str:
    """``on`` when the CPU clocks are pinned (scaling_min_freq == max), ``off`` otherwise, ``unknown`` if unreadable.

    ``jetson_clocks --show`` needs root; jetson_clocks pins every CPU's minimum to its maximum, which any user can
    read from cpufreq, so that is what we check.
    """
    cpufreq = Path(root) / "sys/devices/system/cpu/cpu0/cpufreq"
    try:
        lo = int((cpufreq / "scaling_min_freq").read_text())
        hi = int((cpufreq / "scaling_max_freq").read_text())
    except (OSError, ValueError):
        return "unknown"
    return "on" if lo == hi else "off"


def board_context(root: Path | str = "/") -> dict[str, Any]:
    return {"nvpmodel": nvpmodel_mode(), "jetson_clocks": jetson_clocks_state(root)}


def rails_total(rails: dict[str, float]) -> float:
    """Device total from per-rail values (watts or joules): the input rail if sensed, else the sum."""
    for name in TOTAL_RAILS:
        if name in rails:
            return rails[name]
    return sum(rails.values())


def _rail_extra(rails: dict[str, float]) -> dict[str, Any]:
    compute = [r for r in COMPUTE_RAILS if r in rails]
    extra: dict[str, Any] = {"total": next((r for r in TOTAL_RAILS if r in rails), "sum of rails")}
    if compute:
        extra["compute_j"] = sum(rails[r] for r in compute)
    return extra


# ---------------------------------------------------------------------------------------------------- hwmon


@dataclass(frozen=True)
class Ina3221Channel:
    rail: str
    volt: Path  # inK_input, bus voltage in mV
    curr: Path  # currK_input, current in mA

    def watts(self) -> float:
        return int(self.volt.read_text()) * int(self.curr.read_text()) / 1e6


def find_ina3221(root: Path | str = "/") -> list[Ina3221Channel]:
    """Labelled INA3221 channels under ``root`` (the i2c driver's hwmon folders, or hwmon class entries)."""
    r = Path(root)
    dirs = sorted(r.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"))
    for d in sorted(r.glob("sys/class/hwmon/hwmon*")):
        try:
            if (d / "name").read_text().strip() == "ina3221":
                dirs.append(d)
        except OSError:
            continue
    seen: set[Path] = set()
    channels: list[Ina3221Channel] = []
    for d in dirs:
        real = d.resolve()
        if real in seen:
            continue
        seen.add(real)
        for label in sorted(d.glob("in*_label")):
            k = label.name[2:].split("_")[0]
            volt, curr = d / f"in{k}_input", d / f"curr{k}_input"
            try:
                name = label.read_text().strip()
            except OSError:
                continue
            # Unconnected channels are labelled NC; newer kernels add a summation channel that is not a rail.
            if not name or name.upper() == "NC" or "sum" in name.lower() or not (volt.is_file() and curr.is_file()):
                continue
            channels.append(Ina3221Channel(name, volt, curr))
    return channels


class HwmonMeter(SampledMeter):
    """INA3221 hwmon files sampled in a background thread at ``1/interval_s`` Hz (>= 10 Hz)."""

    method = MEASURED_JETSON

    def __init__(self, root: Path | str = "/", interval_s: float = 0.05, context: bool = True) -> None:
        if interval_s > 1.0 / MIN_RATE_HZ:
            raise ValueError(f"interval_s must be <= {1.0 / MIN_RATE_HZ} s (sample at >= {MIN_RATE_HZ} Hz)")
        super().__init__(interval_s)
        self.root = root
        self.channels = find_ina3221(root)
        if not self.channels:
            raise OSError(f"no readable INA3221 channel under {root}")
        self.context = context

    def sample(self) -> dict[str, float]:
        return {c.rail: c.watts() for c in self.channels}

    def total(self, rails: dict[str, float]) -> float:
        return rails_total(rails)

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        total, rails, extra = super()._end(seconds)
        extra |= {"source": "hwmon", **_rail_extra(rails)}
        if self.context:
            extra |= board_context(self.root)
        return total, rails, extra


# ---------------------------------------------------------------------------------------------------- jtop


class JtopMeter(SampledMeter):
    """Rails through jetson-stats' service (``/run/jtop.sock``), polled at ``1/interval_s`` Hz."""

    method = MEASURED_JETSON

    def __init__(self, interval_s: float = 0.1) -> None:
        super().__init__(interval_s)
        from jtop import jtop  # optional dependency (extra `jetson`)

        # jtop's default service interval is 1 s: ask for our rate, or every sample between updates repeats.
        self._jetson = jtop(interval=interval_s)
        self._jetson.start()
        if not self._jetson.ok():
            self._jetson.close()
            raise OSError("jtop service did not answer")

    def sample(self) -> dict[str, float]:
        rails = self._jetson.power.get("rail", {})
        return {name: float(v.get("power", 0.0)) / 1000.0 for name, v in rails.items() if v.get("online", True)}

    def total(self, rails: dict[str, float]) -> float:
        return rails_total(rails)

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        total, rails, extra = super()._end(seconds)
        extra |= {"source": "jtop", **_rail_extra(rails)}
        try:
            extra["nvpmodel"] = str(self._jetson.nvpmodel)
            extra["jetson_clocks"] = "on" if self._jetson.jetson_clocks.status == "running" else "off"
        except Exception:  # jtop's attributes differ between versions; never fail a measurement on them
            extra |= board_context()
        return total, rails, extra

    def close(self) -> None:
        self._jetson.close()


# ---------------------------------------------------------------------------------------------------- tegrastats

# `NAME <now>mW/<avg>mW` (Orin, JetPack 5+), or `NAME <now>/<avg>` without units (TX2/Xavier). The look-ahead
# rejects `RAM 3391/30536MB`, `SWAP 0/15268MB`, whose second number is followed by a unit other than mW.
_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}


def parse_tegrastats(line: str) -> dict[str, float]:
    """Instantaneous power per rail (watts) from one tegrastats line; the running averages are ignored."""
    return {m.group(1): int(m.group(2)) / 1000.0 for m in _RAIL_RE.finditer(line) if m.group(1) not in _NOT_RAILS}


class TegrastatsMeter(Meter):
    """Runs ``tegrastats --interval <ms>`` and integrates each line's instantaneous rail power."""

    method = MEASURED_JETSON

    def __init__(self, interval_ms: int = 100, exe: str | None = None) -> None:
        super().__init__()
        found = exe or shutil.which("tegrastats")
        if found is None:
            raise OSError("tegrastats not found")
        self.exe, self.interval_ms = found, interval_ms
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._integ = PowerIntegrator()
        self._lock = threading.Lock()
        self._t_begin = 0.0

    def feed(self, t: float, line: str) -> None:
        """Integrate one line received at time ``t`` (seconds); lines without rails are ignored."""
        watts = parse_tegrastats(line)
        if watts:
            with self._lock:
                self._integ.add(t, watts)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.feed(time.perf_counter(), line)

    def _begin(self) -> None:
        self._integ = PowerIntegrator()
        self._t_begin = time.perf_counter()
        self._proc = subprocess.Popen(
            [self.exe, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader", daemon=True)
        self._thread.start()

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        t_end = time.perf_counter()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=2)
        padded = self._integ.pad(self._t_begin, t_end)
        rails = dict(self._integ.joules)
        extra: dict[str, Any] = {
            "source": "tegrastats",
            "padded_s": round(padded, 4),
            "samples": self._integ.n_samples,
            "sample_hz": round(self._integ.rate_hz, 2),
            **_rail_extra(rails),
            **board_context(),
        }
        return rails_total(rails), rails, extra

"""RAPL energy counters on x86 (``/sys/class/powercap/intel-rapl:*``, also exposed for AMD Zen), wrap-safe.

Each zone exposes a monotonically increasing ``energy_uj`` that wraps to 0 after ``max_energy_range_uj``. A
background thread reads the counters every ``poll_s`` seconds so that at most one wrap falls between two reads (a
package at 200 W wraps a 262 kJ range after ~20 minutes; the default poll of 1 s is far inside that).

Total: the sum of the top-level package zones; if a top-level ``psys`` (platform) zone exists it already covers the
packages and is used alone. Sub-zones (core, uncore, dram) are reported as rails, never added to the total.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relief_client.telemetry.meter import MEASURED_RAPL, Meter

POWERCAP = Path("/sys/class/powercap")
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


def counter_delta(start_uj: int, end_uj: int, max_range_uj: int) -> int:
    """Microjoules between two readings of a counter that wraps to 0 after ``max_range_uj`` (at most one wrap)."""
    if end_uj >= start_uj:
        return end_uj - start_uj
    return end_uj + (max_range_uj - start_uj)


@dataclass(frozen=True)
class RaplZone:
    path: Path
    rail: str  # "package-0", "package-0/dram", ...
    top_level: bool
    max_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def find_zones(root: Path = POWERCAP) -> list[RaplZone]:
    """Readable RAPL zones under ``root`` (an unreadable ``energy_uj``, root-only on recent kernels, is skipped)."""
    zones: list[RaplZone] = []
    if not root.is_dir():
        return zones
    names: dict[str, str] = {}
    for d in sorted(root.iterdir()):
        m = _ZONE_RE.match(d.name)
        if not m or not (d / "energy_uj").is_file():
            continue
        try:
            name = (d / "name").read_text().strip() if (d / "name").is_file() else d.name
            max_range = int((d / "max_energy_range_uj").read_text().strip())
            int((d / "energy_uj").read_text().strip())  # readable?
        except (OSError, ValueError):
            continue
        top = m.group(2) is None
        names[m.group(1) if top else d.name] = name
        parent = names.get(m.group(1), f"zone{m.group(1)}")
        zones.append(RaplZone(d, name if top else f"{parent}/{name}", top, max_range))
    return zones


def rapl_available(root: Path = POWERCAP) -> bool:
    return any(z.top_level for z in find_zones(root))


class RaplMeter(Meter):
    """Energy from RAPL counters; method tag ``measured:rapl``."""

    method = MEASURED_RAPL

    def __init__(self, root: Path | str = POWERCAP, poll_s: float = 1.0) -> None:
        super().__init__()
        self.zones = find_zones(Path(root))
        if not any(z.top_level for z in self.zones):
            raise OSError(f"no readable RAPL package zone under {root}")
        self.poll_s = poll_s
        self._last: dict[str, int] = {}
        self._acc: dict[str, int] = {}
        self._wraps = 0
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        with self._lock:
            for z in self.zones:
                try:
                    now = z.read_uj()
                except (OSError, ValueError):
                    continue
                prev = self._last[z.rail]
                if now < prev:
                    self._wraps += 1
                self._acc[z.rail] += counter_delta(prev, now, z.max_range_uj)
                self._last[z.rail] = now

    def _loop(self) -> None:
        while not self._stop_evt.wait(self.poll_s):
            self._poll()

    def _begin(self) -> None:
        self._last = {z.rail: z.read_uj() for z in self.zones}
        self._acc = {z.rail: 0 for z in self.zones}
        self._wraps = 0
        self._stop_evt.clear()
        self._thread = threading.Thread(target=self._loop, name="rapl-poller", daemon=True)
        self._thread.start()

    def _end(self, seconds: float) -> tuple[float, dict[str, float], dict[str, Any]]:
        self._stop_evt.set()
        if self._thread is not None:
            self._thread.join()
        self._poll()
        rails = {rail: uj / 1e6 for rail, uj in self._acc.items()}
        top = [z.rail for z in self.zones if z.top_level]
        psys = [r for r in top if r.startswith("psys")]
        counted = psys or [r for r in top if not r.startswith("psys")]
        total = sum(rails[r] for r in counted)
        return total, rails, {"source": "powercap", "summed": counted, "wraps": self._wraps}

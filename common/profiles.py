"""Device profiles: the figures that turn executed FLOPs and transferred bytes into seconds and joules.

A profile is one YAML file in ``configs/devices/`` (or anywhere, given by path). Every figure carries its provenance:
``provenance: estimate`` for figures taken from datasheets and published measurements (each cited in
``docs/devices.md``), ``provenance: calibrated`` for profiles written by ``relief calibrate`` on the device itself.

Units are SI throughout, with one exception stated in the field name: link rates are in **bits** per second
(``up_bps`` / ``down_bps``), as network links are quoted; the clock converts bytes to bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.config import ConfigError, build, option, read_yaml, to_dict

DEVICES_ENV = "RELIEF_DEVICES_DIR"


@dataclass
class DeviceProfile:
    """Throughput, link and power figures of one device (in one power mode)."""

    name: str = option(help="profile name (the YAML file's stem for the shipped profiles)")
    flops_per_s: float = option(
        help="effective training throughput for this model family (fwd+bwd FLOP/s actually achieved)", gt=0
    )
    up_bps: float = option(help="uplink rate, bits per second (device -> server)", gt=0)
    down_bps: float = option(help="downlink rate, bits per second (server -> device)", gt=0)
    active_w: float = option(help="power while training (compute busy), watts", ge=0)
    idle_w: float = option(help="power while idle / waiting / communicating (radio extra: radio_j_per_byte)", ge=0)
    latency_s: float = option(0.0, help="one-way latency added once per transfer (each direction), seconds", ge=0)
    radio_j_per_byte: float = option(0.0, help="incremental radio energy per byte sent or received, joules", ge=0)
    step_overhead_s: float = option(
        0.0, help="fixed time per optimiser step not explained by FLOPs (dispatch, optimiser), seconds", ge=0
    )
    accelerator: Literal["cpu", "cuda"] = option("cpu", help="where training runs on this device")
    power_mode: str = option("", help="power mode the figures hold for (nvpmodel name, e.g. MAXN, 30W)")
    provenance: Literal["estimate", "calibrated"] = option(
        "estimate", help="estimate: datasheet/published figures; calibrated: measured by `relief calibrate`"
    )
    source: str = option("", help="where the figures come from (a docs/devices.md reference, or the calibration)")
    notes: str = option("", help="free text")
    calibration: dict[str, float] = option(
        {}, help="fit diagnostics written by `relief calibrate` (e.g. r2, max relative error, steps)"
    )

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("name", "a non-empty string")
        if self.idle_w > self.active_w:
            raise ConfigError("idle_w", f"a value <= active_w ({self.active_w})", self.idle_w)


def devices_dir() -> Path:
    """Folder of the named profiles: ``$RELIEF_DEVICES_DIR`` if set, else ``configs/devices`` of the checkout."""
    env = os.environ.get(DEVICES_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "configs" / "devices"


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    # A bare name (no separator, no YAML suffix) is looked up in the devices folder; anything else is a path.
    if isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    return devices_dir() / f"{text}.yaml"


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a profile by bare name (``orin-maxn``) or path; any bad key or value raises ConfigError naming it."""
    path = _resolve(name_or_path)
    if not path.is_file():
        known = ", ".join(list_profiles()) or "none"
        raise ConfigError("<file>", f"an existing device profile (known names: {known})", str(name_or_path), str(path))
    return build(DeviceProfile, read_yaml(path), source=str(path))


def list_profiles() -> list[str]:
    """Names of the profiles in the devices folder, sorted."""
    folder = devices_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def profile_to_yaml(profile: DeviceProfile) -> str:
    """YAML text of a profile, in field order (what `relief calibrate` writes)."""
    import yaml

    return yaml.safe_dump(to_dict(profile), sort_keys=False, default_flow_style=False)

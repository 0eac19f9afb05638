"""Device profiles: loading by name and path, validation errors that name the key and file, shipped profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError
from common.profiles import DeviceProfile, list_profiles, load_profile, profile_to_yaml

GOOD = """\
name: tiny
flops_per_s: 1.0e+9
up_bps: 8.0e+6
down_bps: 1.6e+7
active_w: 10
idle_w: 2
latency_s: 0.1
"""


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RELIEF_DEVICES_DIR", str(tmp_path))
    (tmp_path / "tiny.yaml").write_text(GOOD)
    return tmp_path


def test_load_by_name_and_path(devices: Path) -> None:
    p = load_profile("tiny")
    assert p == load_profile(devices / "tiny.yaml") == load_profile(str(devices / "tiny.yaml"))
    assert (p.flops_per_s, p.up_bps, p.down_bps, p.active_w, p.idle_w, p.latency_s) == (1e9, 8e6, 1.6e7, 10, 2, 0.1)
    assert p.radio_j_per_byte == 0.0 and p.provenance == "estimate"  # defaults
    assert list_profiles() == ["tiny"]


def test_unknown_name_lists_known(devices: Path) -> None:
    with pytest.raises(ConfigError, match="tiny"):
        load_profile("nope")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("flops_per_s: -1\n", "flops_per_s"),
        ("idle_w: 20\n", "idle_w"),  # idle above active
        ("bandwidth: 3\n", "bandwidth"),  # unknown key
        ("up_bps: fast\n", "up_bps"),
        ("provenance: guess\n", "provenance"),
    ],
)
def test_bad_values_name_key_and_file(devices: Path, extra: str, key: str) -> None:
    lines = [ln for ln in GOOD.splitlines(keepends=True) if not ln.startswith(extra.split(":")[0] + ":")]
    bad = devices / "bad.yaml"
    bad.write_text("".join(lines) + extra)
    with pytest.raises(ConfigError) as info:
        load_profile("bad")
    assert info.value.key == key
    assert str(bad) in str(info.value)


def test_missing_required_key(devices: Path) -> None:
    (devices / "bad.yaml").write_text(GOOD.replace("active_w: 10\n", ""))
    with pytest.raises(ConfigError, match="active_w"):
        load_profile("bad")


def test_yaml_round_trip(devices: Path, tmp_path: Path) -> None:
    p = load_profile("tiny")
    out = tmp_path / "copy.yaml"
    out.write_text(profile_to_yaml(p))
    assert load_profile(out) == p


def test_shipped_profiles_load_and_tiers_are_plausible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELIEF_DEVICES_DIR", raising=False)
    names = list_profiles()
    for wanted in ("orin-maxn", "orin-30w", "orin-15w", "orin-nano", "rpi4", "x86-host"):
        assert wanted in names
    profiles: dict[str, DeviceProfile] = {n: load_profile(n) for n in names}
    for name, p in profiles.items():
        assert p.name == name and p.source, name  # every figure set cites its source
    orin = [profiles[n].flops_per_s for n in ("orin-maxn", "orin-30w", "orin-15w")]
    assert orin == sorted(orin, reverse=True)  # lower power modes are slower
    assert 10 <= profiles["orin-maxn"].flops_per_s / profiles["rpi4"].flops_per_s <= 50

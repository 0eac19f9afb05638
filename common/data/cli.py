"""`relief data info CONFIG [--set key=value ...]`: what the clients of an experiment get, before running it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common.data.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    info = sub.add_parser("info", help="per client: tier, modality set, window count, class histogram; and totals")
    info.add_argument("config", help="experiment YAML (its data: and clients: sections are used)")
    info.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override")
    info.add_argument("--cache-dir", default=None, help="window cache folder (default: $RELIEF_CACHE_DIR or .cache/)")


def _load(config: str, overrides: list[str]) -> tuple[Any, Any, int]:
    """(DataConfig, ClientsConfig, seed) of an experiment YAML."""
    try:
        from common.experiment import load_experiment
    except ImportError:  # the experiment tree is not there yet: read only the sections we need
        from common.config import apply_overrides, build, read_yaml
        from common.data.config import ClientsConfig, DataConfig

        d = apply_overrides(read_yaml(config), overrides)
        source = config + (" + --set" if overrides else "")
        seed = d.get("seed", 0)
        return (
            build(DataConfig, d.get("data"), source=source, prefix="data"),
            build(ClientsConfig, d.get("clients"), source=source, prefix="clients"),
            int(seed),
        )
    exp = load_experiment(Path(config), overrides)
    return exp.data, exp.clients, exp.seed


def main(args: argparse.Namespace) -> int:
    from common.data.federation import load_federation

    data, clients, seed = _load(args.config, args.overrides)
    try:
        fed = load_federation(data, clients, seed, args.cache_dir)
    except DataError as err:
        print(f"relief data: data error: {err}", file=sys.stderr)
        return 2
    print(format_info(fed))
    return 0


def format_info(fed: Any) -> str:
    """The report of `relief data info` as text."""
    import numpy as np

    k = len(fed.class_names)
    all_y = np.concatenate([c.y for c in fed.clients]) if fed.clients else np.empty(0, dtype=np.int64)
    width = max(3, len(str(int(np.bincount(all_y, minlength=k).max()))) if len(all_y) else 3)

    def hist(y: np.ndarray) -> str:
        return " ".join(f"{v:{width}d}" for v in np.bincount(y, minlength=k))

    mods = " ".join(f"{m.name}({m.channels})" for m in fed.modalities)
    lines = [
        f"data set: {fed.dataset}   modalities: {mods}   rate: {fed.rate_hz:g} Hz   "
        f"window: {fed.window} samples ({fed.window / fed.rate_hz:.2f} s)",
        "classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(fed.class_names)),
        "",
        f"{'cid':>3} {'subject':>7} {'tier':<8} {'profile':<12} {'modalities':<32} {'windows':>7}  class histogram",
    ]
    for c in fed.clients:
        lines.append(
            f"{c.cid:>3} {c.subject:>7} {c.tier:<8} {c.profile:<12} {','.join(c.modalities):<32} {c.n:>7}  {hist(c.y)}"
        )
    total = sum(c.n for c in fed.clients)
    lines.append(f"{'':>3} {'total':>7} {'':<8} {'':<12} {'':<32} {total:>7}  {hist(all_y)}")
    lines.append("")
    tiers: dict[str, int] = {}
    for c in fed.clients:
        tiers[c.tier] = tiers.get(c.tier, 0) + 1
    lines.append(f"clients: {len(fed.clients)}   tiers: " + ", ".join(f"{t} {n}" for t, n in tiers.items()))
    lines.append("owners per modality: " + ", ".join(f"{m.name} {len(fed.owners(m.name))}" for m in fed.modalities))
    lines.append(f"rarest modalities (fewest owners): {', '.join(fed.rarest_modalities())}")
    lines.append(f"test subjects: {fed.test_subjects}   test windows: {len(fed.test_y)}")
    lines.append(f"{'':>3} {'test':>7} {'':<8} {'':<12} {'':<32} {len(fed.test_y):>7}  {hist(fed.test_y)}")
    return "\n".join(lines)

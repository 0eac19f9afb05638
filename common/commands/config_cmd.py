"""`relief config show CONFIG [--set k=v ...]` prints the resolved configuration as YAML;
`relief config keys` lists every key with its default and help text."""

from __future__ import annotations

import argparse

import yaml

from common.config import describe, to_dict
from common.experiment import ExperimentConfig, load_experiment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print the resolved configuration")
    show.add_argument("config", help="experiment YAML")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("keys", help="list every configuration key with its default and help")


def main(args: argparse.Namespace) -> int:
    if args.action == "keys":
        for key, default, help_text in describe(ExperimentConfig):
            print(f"{key:36s} {default:24s} {help_text}")
        return 0
    cfg = load_experiment(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0

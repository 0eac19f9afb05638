"""The `relief` command. Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules are imported only when their command runs, so `relief --help` stays fast and the pure
core never imports Flower unless a Flower command is asked for.

Exit codes: 0 success, 1 run-time failure, 2 bad input (configuration, arguments, data layout).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from common.config import ConfigError

# name -> (module, one-line help). Modules must keep heavy imports (torch, flwr) inside main().
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("common.commands.config_cmd", "show the resolved configuration or list every key with its help"),
    "data": ("common.data.cli", "inspect data sets: `relief data info CONFIG`"),
    "calibrate": ("relief_client.calibrate", "measure this machine and write a device-profile YAML"),
    "simulate": ("relief_server.simulate", "run an experiment through Flower's simulation runtime"),
    "pretrain": ("common.commands.pretrain_cmd", "train the LoRA regime's frozen backbone checkpoint centrally"),
}


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="relief", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub = _parser()
    # Import only the module of the command asked for; `relief --help` lists commands without importing them.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.main(args) or 0)
    except ConfigError as err:
        print(f"relief {args.command}: configuration error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"relief {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`relief simulate CONFIG [--strategy NAME | --compare A,B,...] [--set key=value ...]`

Runs the RELIEF ServerApp and ClientApp through Flower's simulation runtime — exactly what `flwr run .` does with
the local simulation connection — with one virtual SuperNode per client. Each run gets a private ``FLWR_HOME`` and
private ports, so runs never meet a SuperLink left over from elsewhere, and every process started is stopped by
process id at the end (also on Ctrl-C or failure).

With ``--compare``, the strategies run one after the other on the same configuration and clock, then a
side-by-side table is printed and a plot of macro-F1 against virtual time is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relief_server.processes import free_port, kill_tree, processes_mentioning

ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (e.g. configs/default.yaml)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--strategy", help="relief | fedavg | fedavg-deadline (default: the YAML's strategy.name)")
    group.add_argument("--compare", help="comma-separated strategies to run side by side, e.g. relief,fedavg")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="parent folder of the run folders (default: runs/)", default="runs")
    parser.add_argument("--cpus-per-client", type=float, default=1.0, help="Ray CPUs per virtual client")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is stopped")


def _superlinks_of(home: Path) -> list[int]:
    """Process ids of SuperLinks whose files live in ``home`` (the one `flwr run` started for us, detached)."""
    return [p.pid for p in processes_mentioning("flower-superlink", str(home))]


def run_one(
    config: str, overrides: list[str], strategy: str, run_dir: Path, num_clients: int, cpus: float, timeout: float
) -> int:
    """One `flwr run` on a private local simulation SuperLink; returns its exit code."""
    home = Path(tempfile.mkdtemp(prefix="relief-flwr-"))
    env = dict(os.environ)
    env.update(
        {
            "FLWR_HOME": str(home),
            "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
            "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "RAY_DEDUP_LOGS": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    print(f"   private FLWR_HOME {home}", flush=True)
    (home / "config.toml").write_text('[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n')
    run_config = " ".join(
        [
            f"config={_toml_str(str(Path(config).resolve()))}",
            f"overrides={_toml_str(shlex.join(overrides))}",
            f"strategy={_toml_str(strategy)}",
            f"run-dir={_toml_str(str(run_dir.resolve()))}",
        ]
    )
    federation = f"num-supernodes={num_clients} client-resources-num-cpus={cpus:g}"
    cmd = [
        str(Path(sys.executable).parent / "flwr"),
        "run",
        str(ROOT),
        "local",
        "--run-config",
        run_config,
        "--federation-config",
        federation,
        "--stream",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started, summary, last = time.monotonic(), run_dir / "summary.json", ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            shown = _worth_showing(line)
            if shown is not None and shown != last:
                print(shown, flush=True)
                last = shown
            if summary.exists() or time.monotonic() - started > timeout:
                break  # the ServerApp wrote its summary: the run is over (or it ran past the timeout)
        if summary.exists():
            proc.wait(timeout=30) if proc.poll() is None else None
            return 0
        return proc.wait(timeout=5) or 1
    except subprocess.TimeoutExpired:
        return 0 if summary.exists() else 1
    finally:
        kill_tree([proc.pid, *_superlinks_of(home)])
        shutil.rmtree(home, ignore_errors=True)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _worth_showing(line: str) -> str | None:
    """Our progress lines, warnings and errors (without colour codes); Flower's per-round chatter is dropped."""
    plain = _ANSI.sub("", line).rstrip()
    if plain.startswith(("RELIEF", "[relief]", "[fedavg")) or plain.startswith(("ERROR", "Traceback")):
        return plain
    if "WARNING" in plain and "default simulated SuperNodes" not in plain:
        return plain
    return None


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through run_one's `finally`, which stops the processes


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupted)  # systemd / CI stop a run with SIGTERM: clean up as for Ctrl-C
    from common.data import load_federation
    from common.experiment import load_experiment

    strategies = [s.strip() for s in (args.compare or args.strategy or "").split(",") if s.strip()]
    base = load_experiment(args.config, args.overrides)  # fails fast (exit 2) on a bad config
    from common.commands.pretrain_cmd import ensure_checkpoint

    ready = ensure_checkpoint(base)  # lora without model.checkpoint: make or reuse runs/checkpoints/<data>-seed<N>.pt
    if ready is not base:  # the Flower processes re-read CONFIG + overrides, so pass the path on
        args.overrides = [*args.overrides, f"model.checkpoint={ready.model.checkpoint}"]
        base = ready
    strategies = strategies or [base.strategy.name]
    for s in strategies:
        load_experiment(args.config, [*args.overrides, f"strategy.name={s}"])
    fed = load_federation(base.data, base.clients, base.seed)  # builds the data cache once, before any process
    out = Path(args.out)
    run_dirs = {}
    for s in strategies:
        run_dir = out / (f"{base.name}-{s}" if len(strategies) > 1 else base.name)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        print(f"== {s}: {len(fed.clients)} virtual clients, {base.train.rounds} rounds -> {run_dir}", flush=True)
        rc = run_one(args.config, args.overrides, s, run_dir, len(fed.clients), args.cpus_per_client, args.timeout)
        if rc != 0 or not (run_dir / "summary.json").exists():
            print(f"relief simulate: the {s} run failed (exit {rc}); see the log above", file=sys.stderr)
            return 1
        run_dirs[s] = run_dir
        done = json.loads((run_dir / "summary.json").read_text())
        final = done["final"]
        print(
            f"== {s} done in {done['wall_clock_s']:.0f} s: macro-F1 {final.get('macro_f1', 0):.3f}, rare-modality "
            f"F1 {final.get('rare_modality_f1', 0):.3f}, virtual time {done['totals']['virtual_time_s']:.1f} s "
            f"-> {run_dir.resolve()}",
            flush=True,
        )
    if len(run_dirs) > 1:
        from relief_server.report import compare

        print(compare(run_dirs, out / f"{base.name}-comparison"))
    return 0

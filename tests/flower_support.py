"""Helpers shared by the integration tests that start real Flower processes (imported as a plain module).

- `SMALL`: a small experiment (synthetic PAMAP2, 4 clients, 3 rounds); a test that needs a variant copies it;
- `flower_env`: the environment of one Flower process (telemetry and update checks off, the venv first on PATH,
  a private FLWR_HOME);
- `Processes`: every process a test starts and every descendant seen while it ran, stopped by process id;
- `wait_for_file`, `wait_healthy`, `superlink_healthy`: polling with a deadline;
- `write_connection`: a FLWR_HOME config.toml with one SuperLink connection;
- `rows`, `alive`, `toml_str`: small readers and formatters.
"""

from __future__ import annotations

import contextlib
import csv
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from relief_server.processes import free_port, kill_tree, processes_mentioning, stop

__all__ = [
    "BIN",
    "ROOT",
    "SMALL",
    "Processes",
    "alive",
    "flower_env",
    "free_port",
    "kill_tree",
    "processes_mentioning",
    "rows",
    "superlink_healthy",
    "toml_str",
    "wait_for_file",
    "wait_healthy",
    "write_connection",
]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SMALL: dict[str, Any] = {
    "name": "it",
    "seed": 3,
    "data": {"name": "synthetic-pamap2", "synthetic_seconds": 12.0},
    "clients": {"test_count": 5},  # 9 subjects - 5 held out = 4 clients = 4 supernodes
    "clock": {"deadline_mode": "fastest", "deadline_factor": 2.0},
    "train": {"rounds": 3, "batch_size": 16},
    "eval": {"target_macro_f1": 0.3},
}


def flower_env(tmp: Path, name: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of one process a test starts.

    ``os.environ`` without any FLWR_* or RELIEF_* setting of the caller's, plus: Flower telemetry, update check and
    runtime dependency installation off, one synthetic-data cache ``tmp/cache``, the venv's bin first on PATH; with
    ``name``, a private ``FLWR_HOME`` ``tmp/home-<name>`` (created), so app installs of two processes never race.
    ``extra`` is added last (it may replace any of these).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "RELIEF_"))} | {
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RELIEF_CACHE_DIR": str(tmp / "cache"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if name is not None:
        home = tmp / f"home-{name}"
        home.mkdir(exist_ok=True)
        env["FLWR_HOME"] = str(home)
    return env | extra


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_connection(
    home: Path, name: str, address: str, *, insecure: bool = False, root_certificates: Path | None = None
) -> Path:
    """Write ``home/config.toml`` with one SuperLink connection ``name`` (the default); returns its path.

    ``address`` is ``host:port`` or ``:local:``; a remote one takes ``insecure=True`` or ``root_certificates``.
    """
    assert not (insecure and root_certificates), "a connection is either insecure or verified, not both"
    text = f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\naddress = {toml_str(address)}\n'
    if insecure:
        text += "insecure = true\n"
    if root_certificates is not None:
        text += f"root-certificates = {toml_str(str(root_certificates))}\n"
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


def rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file; none while it does not exist yet."""
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Processes:
    """Every process the test starts, and every descendant seen while it ran (orphans included)."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen] = []
        self.seen: dict[int, psutil.Process] = {}

    def start(self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
        """Start ``cmd`` with stdout and stderr to ``log``."""
        out = log.open("w")
        try:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        finally:
            out.close()  # the child holds its own descriptor
        self.popens.append(proc)
        self.snapshot()
        return proc

    def snapshot(self) -> None:
        """Remember the descendants the started processes have now (so that orphans are stopped too)."""
        for proc in self.popens:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(proc.pid)
                for q in [p, *p.children(recursive=True)]:
                    self.seen.setdefault(q.pid, q)

    def stop_all(self) -> None:
        self.snapshot()
        stop([p for p in self.seen.values() if alive(p)], timeout=10)
        for proc in self.popens:  # reap our direct children
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def left_running(self, markers: list[str]) -> list[str]:
        """Processes still alive that we started or saw, or whose command line names our folder or ports."""
        left = {pid: " ".join(p.cmdline()) for pid, p in self.seen.items() if alive(p)}
        for marker in markers:
            for p in processes_mentioning(marker):
                left.setdefault(p.pid, " ".join(p.info.get("cmdline") or []))
        return list(left.values())


def wait_for_file(
    path: Path, timeout: float, procs: Processes | None = None, *, keep_going: Callable[[], bool] | None = None
) -> bool:
    """Poll every 0.5 s until ``path`` exists, ``timeout`` s have passed or ``keep_going()`` says no (it runs once a
    poll, after ``procs.snapshot()``: a place for the test's own actions). Returns whether ``path`` exists."""
    started = time.monotonic()
    while not path.exists() and time.monotonic() - started < timeout:
        if procs is not None:
            procs.snapshot()
        if keep_going is not None and not keep_going():
            break
        time.sleep(0.5)
    return path.exists()


def superlink_healthy(port: int, ca: Path | None = None, timeout: float = 0.5) -> bool:
    """GET <scheme>://127.0.0.1:<port>/health: plain HTTP, or HTTPS verified against ``ca`` (and its SANs)."""
    scheme, ctx = ("https", ssl.create_default_context(cafile=str(ca))) if ca is not None else ("http", None)
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=timeout, context=ctx) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def wait_healthy(
    healthy: Callable[[], bool], proc: subprocess.Popen, log: Path, since: float, limit: float = 60.0
) -> None:
    """Wait until ``healthy()``; fail (with the log's tail) when ``proc`` exits or ``limit`` s after ``since``."""
    while not healthy():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() - since < limit, f"SuperLink not healthy after {limit:.0f} s"
        time.sleep(0.3)


def finish_run(cli: subprocess.Popen, nodes: list[subprocess.Popen], summary: Path, result: dict) -> None:
    """After the wait: give `flwr run` time to exit once the run is over, then record its and the nodes' codes."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        cli.wait(timeout=60 if summary.exists() else 1)
    result["cli_rc"] = cli.poll()
    result["node_rcs"] = [n.poll() for n in nodes]


def wind_down(procs: Processes, result: dict, tmp: Path, started: float) -> None:
    """Stop everything started, record what is left running, the wall time and every log (for failure messages)."""
    procs.stop_all()
    result["left"] = procs.left_running(result["markers"])
    result["wall_s"] = time.monotonic() - started
    result["logs"] = {p.name: p.read_text(errors="replace") for p in sorted(tmp.glob("*.log"))}


def log_tail(result: dict, name: str = "flwr-run.log", n: int = 4000) -> str:
    return result["logs"].get(name, "")[-n:]

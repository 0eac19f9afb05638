"""Process bookkeeping for runs that start Flower processes: free loopback ports, finding processes by their
command line, and stopping process trees by process id (terminate, then kill what did not stop)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

import psutil


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_mentioning(*texts: str) -> list[psutil.Process]:
    """Live processes (zombies excluded: they hold no resources) whose command line contains every one of ``texts``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if p.info["status"] != psutil.STATUS_ZOMBIE and all(t in cmd for t in texts):
            found.append(p)
    return found


def stop(procs: Iterable[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """Terminate ``procs``, wait up to ``timeout`` s, kill the survivors and reap them; returns the ones killed."""
    procs = list(procs)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return alive


def kill_tree(pids: Iterable[int], timeout: float = 5.0) -> list[psutil.Process]:
    """Stop each process in ``pids`` and all its descendants (see `stop`); returns every process it signalled."""
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for q in [*p.children(recursive=True), p]:
                procs.setdefault(q.pid, q)
        except psutil.NoSuchProcess:
            continue
    stop(procs.values(), timeout)
    return list(procs.values())

"""Virtual clock: turns what each client executed (FLOPs, optimiser steps, bytes) into seconds and joules.

Model of one synchronous round (all figures from the client's :class:`~common.profiles.DeviceProfile`):

* a client first downloads its assignment, then computes, then uploads:
  ``download = latency + 8*bytes_down/down_bps``, ``compute = flops/flops_per_s + steps*step_overhead_s``,
  ``upload = latency + 8*bytes_up/up_bps``; it finishes at ``download + compute + upload``;
* the round lasts as long as its slowest participant; with a deadline, the server stops waiting at the deadline and
  drops every update that had not fully arrived (the round then lasts exactly the deadline);
* energy of a participant over the round ``D``: ``active_w * compute_busy + idle_w * (D - compute_busy) +
  radio_j_per_byte * bytes_moved``. Communicating counts as idle draw plus the radio's per-byte increment (the SoC is
  not computing while it waits on the radio), and every second until the round ends is paid, so a fast device
  waiting for the straggler burns idle power. A dropped client is cut off at the deadline: it pays what it did up to
  then, and only the bytes it moved before the cut count;
* devices not selected this round (``idle=``) draw idle power for the whole round.

Everything here is pure arithmetic (no torch, no Flower) so the allocator and the tests can use it directly.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from common.config import ConfigError, option
from common.profiles import DeviceProfile

# Finishing exactly at the deadline is on time; a relative tolerance keeps float noise from dropping such a client.
_EPS = 1e-9


@dataclass
class ClockConfig:
    """How round deadlines are set for the virtual clock."""

    deadline_mode: Literal["fixed", "fastest", "median"] = option(
        "fixed",
        help="fixed: deadline_s seconds (null = no deadline, the round waits for the slowest); fastest/median: "
        "deadline_factor x the fastest / median participant's full-work round time (download+compute+upload)",
    )
    deadline_s: float | None = option(None, help="round deadline in seconds (deadline_mode=fixed); null = none", gt=0)
    deadline_factor: float = option(
        2.0, help="multiple of the reference client's full-work time (deadline_mode=fastest|median)", gt=0
    )

    def validate(self) -> None:
        if self.deadline_mode != "fixed" and self.deadline_s is not None:
            raise ConfigError("deadline_s", f"null when deadline_mode is {self.deadline_mode!r}", self.deadline_s)

    def resolve_deadline(self, full_work_s: Sequence[float]) -> float | None:
        """The round's deadline in seconds, given each participant's time to do its full (unreduced) work."""
        if self.deadline_mode == "fixed":
            return self.deadline_s
        if not full_work_s:
            return None
        ref = min(full_work_s) if self.deadline_mode == "fastest" else statistics.median(full_work_s)
        return self.deadline_factor * ref


# ---------------------------------------------------------------------------------------------------- one client


@dataclass(frozen=True)
class ClientCost:
    """What one client does in a round and how long each phase takes on its device."""

    client_id: str
    profile: DeviceProfile
    flops: float
    bytes_up: int
    bytes_down: int
    steps: int = 0

    @property
    def download_s(self) -> float:
        return transfer_s(self.bytes_down, self.profile.down_bps, self.profile.latency_s)

    @property
    def compute_s(self) -> float:
        return self.flops / self.profile.flops_per_s + self.steps * self.profile.step_overhead_s

    @property
    def upload_s(self) -> float:
        return transfer_s(self.bytes_up, self.profile.up_bps, self.profile.latency_s)

    @property
    def total_s(self) -> float:
        """Time from the round's start until the server holds this client's update."""
        return self.download_s + self.compute_s + self.upload_s


def transfer_s(n_bytes: int | float, bps: float, latency_s: float) -> float:
    """Seconds to move ``n_bytes`` over a link of ``bps`` bits/s; nothing to move costs nothing (no latency)."""
    if n_bytes <= 0:
        return 0.0
    return latency_s + 8.0 * n_bytes / bps


def client_cost(
    profile: DeviceProfile,
    flops: float,
    bytes_up: int,
    bytes_down: int,
    *,
    steps: int = 0,
    client_id: str = "",
) -> ClientCost:
    """Cost of one client's round: FLOPs it actually executed, optimiser steps, and bytes each way."""
    if flops < 0 or bytes_up < 0 or bytes_down < 0 or steps < 0:
        raise ValueError("flops, bytes and steps must be >= 0")
    return ClientCost(client_id or profile.name, profile, float(flops), int(bytes_up), int(bytes_down), int(steps))


def compute_budget_flops(
    profile: DeviceProfile, deadline_s: float, bytes_up: int, bytes_down: int, *, steps: int = 0
) -> float:
    """FLOPs the device can execute before the deadline once its download and upload are paid (>= 0).

    ``steps`` is the number of optimiser steps planned (their fixed overhead is subtracted too). The allocator uses
    this as the budget ``speed_k x (deadline - comm_k)``.
    """
    comm = transfer_s(bytes_down, profile.down_bps, profile.latency_s)
    comm += transfer_s(bytes_up, profile.up_bps, profile.latency_s)
    spare = deadline_s - comm - steps * profile.step_overhead_s
    return max(0.0, spare) * profile.flops_per_s


# ---------------------------------------------------------------------------------------------------- one round


@dataclass(frozen=True)
class ClientRound:
    """One participant's outcome in a simulated round."""

    client_id: str
    finish_s: float  # when its update would have arrived (may exceed the round when dropped)
    dropped: bool
    compute_s: float  # compute seconds actually spent within the round
    energy_j: float
    bytes_up: float  # bytes actually moved within the round (an update cut off at the deadline moved only part)
    bytes_down: float


@dataclass(frozen=True)
class RoundTiming:
    """Outcome of one synchronous round on the virtual clock."""

    duration_s: float
    deadline_s: float | None
    clients: dict[str, ClientRound]
    idle_energy_j: float = 0.0  # energy of the devices that were not selected, waiting the round out

    @property
    def dropped(self) -> list[str]:
        return [c.client_id for c in self.clients.values() if c.dropped]

    @property
    def completed(self) -> list[str]:
        return [c.client_id for c in self.clients.values() if not c.dropped]

    @property
    def energy_j(self) -> float:
        return sum(c.energy_j for c in self.clients.values()) + self.idle_energy_j

    @property
    def bytes_up(self) -> float:
        return sum(c.bytes_up for c in self.clients.values())

    @property
    def bytes_down(self) -> float:
        return sum(c.bytes_down for c in self.clients.values())


def _overlap(start: float, length: float, end: float) -> float:
    """Seconds of the phase [start, start+length) that fall before ``end``."""
    return max(0.0, min(start + length, end) - start)


def _fraction(start: float, length: float, end: float) -> float:
    return 1.0 if length <= 0 else min(1.0, _overlap(start, length, end) / length)


def simulate_round(
    costs: Sequence[ClientCost],
    deadline_s: float | None = None,
    *,
    idle: Mapping[str, DeviceProfile] | None = None,
) -> RoundTiming:
    """Simulate one synchronous round: duration, dropped clients, per-client energy and bytes.

    ``idle`` maps the ids of devices that were not selected to their profiles; they draw idle power all round.
    """
    if deadline_s is not None and deadline_s <= 0:
        raise ValueError("deadline_s must be > 0 or None")
    ids = [c.client_id for c in costs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate client ids in one round: {ids}")
    finish = {c.client_id: c.total_s for c in costs}
    slowest = max(finish.values(), default=0.0)
    # Everybody made it: the server does not wait for the deadline. Otherwise it stops waiting at the deadline.
    on_time = deadline_s is None or slowest <= deadline_s * (1 + _EPS)
    duration = slowest if on_time or deadline_s is None else deadline_s
    clients: dict[str, ClientRound] = {}
    for c in costs:
        p = c.profile
        dropped = finish[c.client_id] > duration * (1 + _EPS)
        down_s, comp_s, up_s = c.download_s, c.compute_s, c.upload_s
        if dropped:  # cut off at the deadline: count only the work done and the bytes moved before the cut
            busy = _overlap(down_s, comp_s, duration)
            moved_down = c.bytes_down * _fraction(0.0, down_s, duration)
            moved_up = c.bytes_up * _fraction(down_s + comp_s, up_s, duration)
        else:
            busy, moved_down, moved_up = comp_s, float(c.bytes_down), float(c.bytes_up)
        energy = p.active_w * busy + p.idle_w * (duration - busy) + p.radio_j_per_byte * (moved_down + moved_up)
        clients[c.client_id] = ClientRound(
            c.client_id, finish[c.client_id], dropped, busy, energy, moved_up, moved_down
        )
    idle_energy = sum(p.idle_w * duration for p in (idle or {}).values())
    return RoundTiming(duration, deadline_s, clients, idle_energy)


# ---------------------------------------------------------------------------------------------------- series


@dataclass
class RoundRecord:
    """One round in a ledger: its own cost and the cumulative totals up to and including it."""

    round: int
    duration_s: float
    energy_j: float
    bytes_up: float
    bytes_down: float
    n_dropped: int
    metric: float | None
    cum_time_s: float
    cum_energy_j: float
    cum_bytes_up: float
    cum_bytes_down: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Ledger:
    """Cumulative time, energy and bytes per round (simulated or measured), with the metric when evaluated."""

    rounds: list[RoundRecord] = field(default_factory=list)

    def add(
        self,
        duration_s: float,
        energy_j: float,
        bytes_up: float = 0.0,
        bytes_down: float = 0.0,
        *,
        metric: float | None = None,
        n_dropped: int = 0,
        round: int | None = None,
    ) -> RoundRecord:
        """Append one round given its own totals (use :meth:`add_timing` for a simulated round)."""
        last = self.rounds[-1] if self.rounds else None
        rec = RoundRecord(
            round=round if round is not None else (last.round + 1 if last else 1),
            duration_s=duration_s,
            energy_j=energy_j,
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            n_dropped=n_dropped,
            metric=metric,
            cum_time_s=(last.cum_time_s if last else 0.0) + duration_s,
            cum_energy_j=(last.cum_energy_j if last else 0.0) + energy_j,
            cum_bytes_up=(last.cum_bytes_up if last else 0.0) + bytes_up,
            cum_bytes_down=(last.cum_bytes_down if last else 0.0) + bytes_down,
        )
        self.rounds.append(rec)
        return rec

    def add_timing(self, timing: RoundTiming, *, metric: float | None = None, round: int | None = None) -> RoundRecord:
        return self.add(
            timing.duration_s,
            timing.energy_j,
            timing.bytes_up,
            timing.bytes_down,
            metric=metric,
            n_dropped=len(timing.dropped),
            round=round,
        )

    def set_metric(self, round: int, metric: float) -> None:
        """Attach a metric evaluated after the round was recorded (evaluation often comes later)."""
        for rec in self.rounds:
            if rec.round == round:
                rec.metric = metric
                return
        raise KeyError(f"no round {round} in the ledger")

    def rows(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rounds]


@dataclass(frozen=True)
class TargetHit:
    """Cumulative cost at the first round whose metric reached the target."""

    round: int
    time_s: float
    energy_j: float
    bytes_up: float
    bytes_down: float

    @property
    def bytes_total(self) -> float:
        return self.bytes_up + self.bytes_down


def to_target(
    series: Ledger | Sequence[RoundRecord], target: float, *, higher_is_better: bool = True
) -> TargetHit | None:
    """Time-, energy- and bytes-to-target: cumulative cost at the first round whose metric reaches ``target``.

    Rounds without a metric (not evaluated) are skipped; returns None when the target is never reached.
    """
    rounds = series.rounds if isinstance(series, Ledger) else series
    for rec in rounds:
        if rec.metric is None:
            continue
        if (rec.metric >= target) if higher_is_better else (rec.metric <= target):
            return TargetHit(rec.round, rec.cum_time_s, rec.cum_energy_j, rec.cum_bytes_up, rec.cum_bytes_down)
    return None

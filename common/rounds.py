"""The server's round logic, free of Flower: plan each device's work, then fold the replies into the global model.

    core = ServerCore(cfg, strategy="relief", model=global_model)
    plan = core.plan(round, clients)              # ClientInfo -> Assignment (groups, modalities, samples)
    ...                                           # the clients train (Flower messages, or direct calls in tests)
    outcome = core.aggregate(round, clients, replies)

Strategies differ only in what they plan and which keys come back; the aggregation is the one masked mean of
:mod:`common.aggregation`:

- ``relief``: divergence-guided elastic allocation within each device's deadline budget; a device returns only the
  groups it trained, so each modality block is averaged over its cohort.
- ``fedavg``: every device trains everything it can, receives and returns the whole model; the round waits for the
  slowest device.
- ``fedavg-deadline``: FedAvg under RELIEF's deadline: updates that would arrive after it are dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from common.aggregation import ReplyLimits, ReplyRejected, Update, carried_by, masked_mean, validate_reply
from common.allocation import AllocationConfig, Assignment, DivergenceTracker, allocate
from common.clock import ClockConfig, Ledger, RoundTiming, client_cost, compute_budget_flops, simulate_round
from common.groups import GroupRegistry
from common.model import MultimodalNet
from common.profiles import DeviceProfile

STRATEGIES = ("relief", "fedavg", "fedavg-deadline")


@dataclass(frozen=True)
class ClientInfo:
    """What the server knows about a device (from the federation in simulation, from a QUERY on real nodes)."""

    cid: str
    modalities: tuple[str, ...]
    samples: int
    profile: DeviceProfile
    tier: str = ""


@dataclass(frozen=True)
class Reply:
    """A client's answer to a TRAIN message, as the core needs it."""

    cid: str
    arrays: Mapping[str, np.ndarray]
    samples: int
    flops: float
    steps: int
    metrics: Mapping[str, float | str] = field(default_factory=dict)


@dataclass
class RoundOutcome:
    round: int
    timing: RoundTiming
    accepted: list[str]
    rejected: dict[str, str]  # cid -> reason (validation failure or missing reply)
    late: list[str]  # dropped by the deadline
    cohorts: dict[str, list[str]]  # group -> clients it was averaged over
    bytes_up: dict[str, int]
    bytes_down: dict[str, int]


class ServerCore:
    """Global model, allocation state and the virtual-clock ledger of one run."""

    def __init__(
        self,
        strategy: str,
        model: MultimodalNet,
        *,
        allocation: AllocationConfig,
        clock: ClockConfig,
        local_epochs: float,
        batch_size: int,
        max_update_norm: float | None = None,
        seed: int = 0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        self.strategy = strategy
        self.model = model
        self.registry = GroupRegistry(model)
        self.alloc_cfg = allocation
        self.clock_cfg = clock
        self.local_epochs = local_epochs
        self.batch_size = batch_size
        self.max_update_norm = max_update_norm
        self.seed = seed
        modality_groups = [g for g in self.registry.names if g not in self.registry.shared_groups]
        self.tracker = DivergenceTracker(modality_groups, allocation)
        self.ledger = Ledger()
        self.deadline_s: float | None = None
        self.plans: dict[str, Assignment] = {}
        self.sat_out: list[str] = []  # relief: devices that could not deliver even one batch before the deadline

    # ------------------------------------------------------------------------------------------------ planning
    def price(self, present: Sequence[str], trained: Sequence[str]) -> float:
        return self.registry.step_flops(present, trained).total

    def steps(self, samples: int) -> int:
        """Optimiser steps for ``samples`` samples (the last batch may be partial)."""
        return -(-samples // self.batch_size)

    def full_samples(self, c: ClientInfo) -> int:
        return max(1, round(self.local_epochs * c.samples))

    def _full_assignment(self, c: ClientInfo, everything: bool) -> Assignment:
        owned = self.registry.groups_for(c.modalities)
        groups = tuple(self.registry.names) if everything else tuple(owned)
        n = self.full_samples(c)
        return Assignment(groups, tuple(c.modalities), groups, n, n, self.price(c.modalities, groups) * n)

    def _full_work_s(self, c: ClientInfo) -> float:
        """A device's round time doing FedAvg's full work (everything it can train, the whole model both ways):
        the reference of relative deadlines, the same for every strategy so that they share one deadline."""
        return self._finish_s(c, self._full_assignment(c, everything=True))

    def wire_bytes(self, groups: Sequence[str]) -> int:
        """Bytes that carry these groups (the whole model when the sparse-transport ablation is off)."""
        dense = self.strategy == "relief" and not self.alloc_cfg.sparse
        return self.registry.nbytes(self.registry.names if dense else groups)

    def plan(self, round_number: int, clients: Sequence[ClientInfo]) -> dict[str, Assignment]:
        """Each device's assignment for this round (also sets this round's deadline)."""
        self.deadline_s = (
            self.clock_cfg.resolve_deadline([self._full_work_s(c) for c in clients])
            if self.strategy != "fedavg"
            else None
        )
        self.sat_out = []
        if self.strategy != "relief":
            self.plans = {c.cid: self._full_assignment(c, everything=True) for c in clients}
            return self.plans
        scores = self.tracker.scores(round_number)
        if self.alloc_cfg.scores == "random":  # ablation: no divergence guidance
            rng = np.random.default_rng([self.seed, round_number])
            scores = {g: float(rng.random()) for g in scores}
        plans = {}
        self.sat_out = []
        for c in clients:
            owned = self.registry.groups_for(c.modalities)
            full = self.full_samples(c)
            budget = None
            if self.deadline_s is not None:
                nbytes = self.wire_bytes(owned)
                steps = self.steps(full)
                budget = compute_budget_flops(c.profile, self.deadline_s, nbytes, nbytes, steps=steps)
            a = allocate(
                c.modalities,
                owned,
                self.registry.shared_groups,
                full,
                budget,
                scores,
                self.price,
                self.alloc_cfg,
                self.batch_size,
            )
            if not self.alloc_cfg.elastic:  # ablation: the chosen groups for the full local work, late or not
                a = replace(a, samples=full, flops=self.price(a.present, a.train) * full)
            elif self.deadline_s is not None and self._finish_s(c, a) > self.deadline_s:
                # Not even the smallest assignment arrives in time (usually: communication alone takes longer than
                # the deadline). Sending it work would only burn its energy on an update the server must drop.
                self.sat_out.append(c.cid)
                continue
            if not self.alloc_cfg.cohort_aggregation:  # ablation: return (and average) every group, stale or not
                everything = tuple(self.registry.names)
                a = replace(a, send=everything, reply=everything)
            plans[c.cid] = a
        self.plans = plans
        return plans

    def _finish_s(self, c: ClientInfo, a: Assignment) -> float:
        """Virtual time at which the device would deliver this assignment (its actual bytes and steps)."""
        steps = self.steps(a.samples)
        return client_cost(c.profile, a.flops, self.wire_bytes(a.returns), self.wire_bytes(a.send), steps=steps).total_s

    def payload(self, assignment: Assignment) -> dict[str, np.ndarray]:
        """The arrays to send down for an assignment (only the groups it needs)."""
        return self.registry.read(assignment.send)

    # ------------------------------------------------------------------------------------------------ aggregation
    def check(self, reply: Reply) -> None:
        """Validate a reply against its plan; raises ReplyRejected. Nothing is written here."""
        plan = self.plans.get(reply.cid)
        if plan is None:
            raise ReplyRejected("reply from a client that was not sent work this round")
        keys = set(self.registry.all_keys(plan.returns))
        limits = ReplyLimits(
            keys,
            self.registry.shapes(plan.returns),
            True,
            self.max_update_norm,
            self.registry.read(plan.returns) if self.max_update_norm is not None else {},
        )
        validate_reply(reply.arrays, limits)
        if not (0 < reply.samples <= plan.samples) or reply.flops < 0 or reply.steps < 0:
            raise ReplyRejected(f"implausible counts: samples={reply.samples} (planned {plan.samples})")

    def aggregate(
        self,
        round_number: int,
        clients: Sequence[ClientInfo],
        replies: Sequence[Reply],
        rejected: Mapping[str, str] | None = None,
    ) -> RoundOutcome:
        """Validate, apply the clock's deadline, masked-mean the survivors into the global model, update scores."""
        by_cid = {c.cid: c for c in clients}
        bad: dict[str, str] = dict(rejected or {})
        good: list[Reply] = []
        per_cid = Counter(r.cid for r in replies)
        for r in sorted(replies, key=lambda r: r.cid):
            if per_cid[r.cid] > 1:  # one plan, one reply: a second one would double the client's weight
                bad[r.cid] = "duplicate replies"
                continue
            try:
                self.check(r)
                good.append(r)
            except ReplyRejected as err:
                bad[r.cid] = str(err)
        answered = {r.cid: r.samples for r in good}
        for cid in self.plans:
            if cid not in bad and cid not in answered:
                bad[cid] = "no reply"
        bytes_down = {cid: self.wire_bytes(p.send) for cid, p in self.plans.items()}
        bytes_up = {r.cid: self.wire_bytes(self.plans[r.cid].returns) for r in good}
        # The clock prices the work the server can verify — the plan's FLOPs per sample x the samples the reply
        # says it processed (checked <= planned) — not the FLOPs a client reports, so misreporting cannot dodge the
        # deadline. A client without a valid reply is priced by its download alone.
        costs = [
            client_cost(
                by_cid[cid].profile,
                self.price(plan.present, plan.train) * answered.get(cid, 0),
                bytes_up.get(cid, 0),
                bytes_down[cid],
                steps=self.steps(answered.get(cid, 0)),
                client_id=cid,
            )
            for cid, plan in sorted(self.plans.items())
        ]
        idle = {c.cid: c.profile for c in clients if c.cid not in self.plans}
        timing = simulate_round(costs, self.deadline_s, idle=idle)
        dropped = set(timing.dropped)
        late = [cid for cid in timing.dropped if cid not in bad]
        survivors = [r for r in good if r.cid not in dropped]
        current = self.registry.read()
        updates = [Update(r.cid, r.arrays, float(r.samples)) for r in survivors]
        new = masked_mean(current, updates)
        if self.strategy == "relief":
            self._observe(current, survivors)
        self.registry.write({k: v for k, v in new.items() if v is not current[k]})
        self.ledger.add_timing(timing, round=round_number)
        carried = carried_by(updates)  # key -> clients; a group's cohort is who carried any of its keys
        cohorts = {
            g: sorted({u for k in self.registry.keys(g) for u in carried.get(k, [])}) for g in self.registry.names
        }
        return RoundOutcome(round_number, timing, [r.cid for r in survivors], bad, late, cohorts, bytes_up, bytes_down)

    def _observe(self, current: Mapping[str, np.ndarray], replies: Sequence[Reply]) -> None:
        """Feed each group's cohort updates (theta_k - theta_global) to the divergence tracker."""
        per_group: dict[str, tuple[list[np.ndarray], list[float]]] = {}
        for g in self.tracker.groups:
            keys = self.registry.keys(g)
            deltas, weights = [], []
            for r in replies:
                if keys[0] in r.arrays:
                    deltas.append(np.concatenate([(r.arrays[k] - current[k]).ravel() for k in keys]))
                    weights.append(float(r.samples))
            if deltas:
                per_group[g] = (deltas, weights)
        self.tracker.observe(per_group)

"""The Flower strategy: a thin shell over :class:`relief_server.session.Session` (pure round logic).

``configure_train`` sends each node its own message — only the groups it needs and its instruction — and
``aggregate_train`` validates the (sparse) replies and folds them in with the masked-mean kernel. Flower's stock
strategies would reject replies whose keys differ (``InconsistentMessageReplies``), which is exactly what RELIEF's
replies do, hence this class. The same class serves every strategy name (``relief``, ``fedavg``,
``fedavg-deadline``): what differs is the plan, made in :class:`common.rounds.ServerCore`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from common.rounds import Reply
from relief_server.session import Session

log = logging.getLogger("relief")


class RoundStrategy(Strategy):
    """Per-node sparse TRAIN messages and cohort-wise aggregation, over a :class:`Session`.

    Args:
        session: the run (data, global model, round logic, run folder).
        experiment_text: the resolved configuration, sent to every node with its instruction.
        node_to_cid: Flower node id -> federation client id (learned by a QUERY before the first round).
    """

    def __init__(self, session: Session, experiment_text: str, node_to_cid: dict[int, str]) -> None:
        self.session = session
        self.experiment_text = experiment_text
        self.node_to_cid = node_to_cid
        self._messages: dict[str, Message] = {}  # cid -> this round's message (SuperLink errors carry only its id)

    def summary(self) -> None:
        log.info("RELIEF round strategy: %s over %d nodes", self.session.cfg.strategy.name, len(self.node_to_cid))

    # ------------------------------------------------------------------------------------------------ train
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        cid_to_node = {cid: node for node, cid in self.node_to_cid.items()}
        connected = set(grid.get_node_ids())
        cids = sorted(cid for cid, node in cid_to_node.items() if node in connected)
        messages = []
        self._messages = {}
        for cid, (ins, payload) in self.session.instructions(server_round, cids).items():
            record = RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in payload.items()}),
                    "config": ConfigRecord({**ins.to_config(), "experiment": self.experiment_text}),
                }
            )
            msg = Message(content=record, message_type=MessageType.TRAIN, dst_node_id=cid_to_node[cid])
            self._messages[cid] = msg
            messages.append(msg)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        sent_ids = {m.metadata.message_id: cid for cid, m in self._messages.items()}
        parsed: list[Reply] = []
        rejected: dict[str, str] = {}
        for reply in replies:
            cid = sent_ids.get(reply.metadata.reply_to_message_id) or self.node_to_cid.get(reply.metadata.src_node_id)
            if cid is None:
                log.warning("round %d: reply from an unknown node %s ignored", server_round, reply.metadata.src_node_id)
                continue
            if reply.has_error():
                rejected[cid] = f"error {reply.error.code}: {reply.error.reason}"
                log.warning("round %d: client %s failed: %s", server_round, cid, rejected[cid])
                continue
            try:
                parsed.append(parse_reply(cid, reply))
            except (KeyError, TypeError, ValueError) as err:
                rejected[cid] = f"malformed reply: {err}"
                log.warning("round %d: client %s sent a malformed reply: %s", server_round, cid, err)
        outcome = self.session.finish_round(server_round, parsed, rejected)
        for cid, reason in outcome.rejected.items():
            if cid not in rejected:
                log.warning("round %d: client %s rejected: %s", server_round, cid, reason)
        metrics = MetricRecord(
            {
                "participants": len(outcome.accepted),
                "failed": len(outcome.rejected),
                "late": len(outcome.late),
                "round_time_s": outcome.timing.duration_s,
            }
        )
        return ArrayRecord({k: Array(v) for k, v in self.session.core.registry.read().items()}), metrics

    # ------------------------------------------------------------------------------------------------ evaluate
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []  # evaluation is central, on the held-out subjects, inside aggregate_train

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None


def parse_reply(cid: str, reply: Message) -> Reply:
    """Unpack a TRAIN reply; raises on missing records or wrong types (validation of values is the core's job)."""
    content = reply.content
    arrays: dict[str, Any] = {k: v.numpy() for k, v in content.array_records["arrays"].items()}
    metrics = content.metric_records["metrics"]
    info = content.config_records["info"]
    if str(info["cid"]) != cid:
        raise ValueError(f"reply claims to be client {info['cid']!r}")
    samples, steps, flops = metrics["samples"], metrics["steps"], metrics["flops"]
    if not isinstance(samples, int) or not isinstance(steps, int) or not isinstance(flops, int | float):
        raise TypeError("samples/steps must be integers and flops a number")
    extra: dict[str, float | str] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    extra["energy_method"] = str(info.get("energy_method", "none"))
    return Reply(cid, arrays, samples, float(flops), steps, extra)

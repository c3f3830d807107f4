"""Commits of workflow runs and topic queues: segments, a run's end, its archived history.

A running workflow commits its progress in *segment records*; its end is an ordinary
invocation record keyed by the run id, with the run's history (and lineage, for
``continue_as_new``) archived in the actor's kv store. The built-in ``__send__`` turn
appends to a topic queue a workflow takes from with ``ctx.receive``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bayou import codec
from bayou.runtime.effects import Effects, effect_writes
from bayou.runtime.invocation import SEND_METHOD
from bayou.runtime.outbox import OutgoingTell
from bayou.runtime.records import DedupEntry, InvocationRecord, Outcome, Step, fingerprint
from bayou.storage.contract import Commit, JournalRecord

if TYPE_CHECKING:
    from bayou.runtime.activation import Activation, Message
    from bayou.runtime.workflows import WorkflowRun


HISTORY_INDEX = "\x01wh"  # kv: list of run ids with archived history, oldest first


def history_key(run: str) -> str:
    return f"\x01wh:{run}"


def topic_meta_key(topic: str) -> str:
    return f"\x01tq:{topic}"


def topic_item_key(topic: str, index: int) -> str:
    return f"\x01ti:{topic}:{index}"


async def commit_segment(
    activation: Activation,
    run: WorkflowRun,
    steps: list[Step],
    effects: Effects,
    extra_writes: dict[str, bytes | None] | None,
) -> None:
    """Commit a running workflow's new steps with the effects they produced."""
    await _commit_workflow_record(
        activation, run, "segment", steps, Outcome(), effects, extra_writes
    )


async def finish_run(
    activation: Activation, run: WorkflowRun, outcome: Outcome, continued: dict[str, Any] | None
) -> None:
    """Commit a run's end: its outcome, its archived history, its inbox message acked,
    and for ``continue_as_new`` the message that starts the next run."""
    ctx = run.ctx
    assert ctx is not None
    effects, ctx.effects = ctx.effects, Effects()
    now = activation.clock.time()
    history = {
        "run": run.run_id,
        "method": run.message.method,
        "args": run.message.args,
        "status": "failed"
        if outcome.error
        else "continued"
        if continued is not None
        else "completed",
        "result": outcome.reply,
        "error": outcome.error,
        "steps": len(ctx.steps),
        "ended_at": now,
    }
    writes = await _history_writes(activation, run.run_id, history)
    if continued is not None:
        next_run = next_run_id(run.run_id)
        outcome = Outcome(reply={"continued_as": next_run})
        mine = codec.unpack(writes[history_key(run.run_id)] or b"\x80")
        mine.update(continued_to=next_run, result=outcome.reply)
        writes[history_key(run.run_id)] = codec.pack(mine)
        writes[history_key(next_run)] = codec.pack(
            {"run": next_run, "continued_from": run.run_id, "status": "running"}
        )
        effects.outbox.append(
            [activation.spec.type_name, activation.key, run.message.method, continued]
        )
    await _commit_workflow_record(
        activation, run, "workflow", ctx.steps[ctx.persisted :], outcome, effects, writes,
        inbox_ack=run.message.inbox_id, next_run=continued is not None,
    )  # fmt: skip
    fingerprint_ = fingerprint(run.message.method, run.message.args)
    activation.dedup.add(run.run_id, DedupEntry(activation.seq, fingerprint_, outcome, now))
    run.finished(outcome)


async def _history_writes(
    activation: Activation, run_id: str, history: dict[str, Any]
) -> dict[str, bytes | None]:
    keys = [HISTORY_INDEX, history_key(run_id)]
    stored = await activation.catalog.storage.kv_get(activation.actor_key, keys)
    index: list[str] = codec.unpack(stored[HISTORY_INDEX]) if HISTORY_INDEX in stored else []
    if history_key(run_id) in stored:  # keep the lineage written when the run was started
        earlier = codec.unpack(stored[history_key(run_id)])
        history = {**earlier, **history, "continued_from": earlier.get("continued_from")}
    writes: dict[str, bytes | None] = {history_key(run_id): codec.pack(history)}
    if run_id not in index:
        index.append(run_id)
    keep = activation.catalog.settings.workflow_history
    for old in index[:-keep] if len(index) > keep else []:
        writes[history_key(old)] = None
    writes[HISTORY_INDEX] = codec.pack(index[-keep:])
    return writes


async def _commit_workflow_record(
    activation: Activation,
    run: WorkflowRun,
    kind: str,
    steps: list[Step],
    outcome: Outcome,
    effects: Effects,
    extra_writes: dict[str, bytes | None] | None,
    *,
    inbox_ack: str | None = None,
    next_run: bool = False,
) -> None:
    # A workflow's code holds its actor's turn, so nothing else commits meanwhile; but the
    # turns of a reentrant actor interleave: then the commit waits for the gate.
    async with activation.commit_gate():
        assert activation.fence is not None
        seq = activation.seq + 1
        metas = await activation._stream_metas_of(effects.stream_names())
        writes, appends = effect_writes(effects, metas)
        writes.update(extra_writes or {})
        outgoing = [
            OutgoingTell(t, k, m, a, f"{activation.actor_key}#{seq}.{i}")
            for i, (t, k, m, a) in enumerate(effects.outbox)
        ]
        if next_run and outgoing:  # the continuation's run id is part of its lineage
            last = outgoing[-1]
            outgoing[-1] = replace(last, message_id=next_run_id(run.run_id))
        record = InvocationRecord(
            method=run.message.method,
            args=run.message.args if kind == "workflow" else {},
            steps=steps,
            outcome=outcome,
            committed_at=activation.clock.time(),
            idempotency_key=run.run_id if kind == "workflow" else None,
            outbox=[tell.to_record() for tell in outgoing],
            kind=kind,
            run=run.run_id,
        )
        commit = Commit(
            actor=activation.actor_key,
            fence=activation.fence,
            record=JournalRecord(seq, record.encode()),
            kv_writes=writes,
            inbox_ack=inbox_ack,
            reminders=dict(effects.reminders),
            sends=bool(outgoing),
        )
        await activation.catalog.committer.submit(commit)
        activation.seq = seq
        activation._published(effects, metas, appends, outgoing)


async def append_to_topic(activation: Activation, message: Message) -> None:
    """The built-in ``__send__`` turn: append a message to a topic queue, durably."""
    assert activation.fence is not None
    topic = str(message.args.get("topic", ""))
    meta_key = topic_meta_key(topic)
    stored = await activation.catalog.storage.kv_get(activation.actor_key, [meta_key])
    head, tail = codec.unpack(stored[meta_key]) if meta_key in stored else (0, 0)
    writes: dict[str, bytes | None] = {
        topic_item_key(topic, tail): codec.pack(message.args.get("value")),
        meta_key: codec.pack([head, tail + 1]),
    }
    seq = activation.seq + 1
    record = InvocationRecord(
        method=SEND_METHOD, args=message.args, steps=[], outcome=Outcome(),
        committed_at=activation.clock.time(), idempotency_key=message.idempotency_key, kind="send",
    )  # fmt: skip
    journal = JournalRecord(seq, record.encode())
    commit = Commit(
        activation.actor_key, activation.fence, journal, writes, inbox_ack=message.inbox_id
    )
    await activation.catalog.committer.submit(commit)
    activation.seq = seq
    if message.inbox_id is not None and activation._inbox_ids:
        activation._inbox_ids.discard(message.inbox_id)
    if message.idempotency_key is not None:
        print_ = fingerprint(message.method, message.args)
        entry = DedupEntry(seq, print_, Outcome(), activation.clock.time())
        activation.dedup.add(message.idempotency_key, entry)
    for run in (activation._runs or {}).values():
        run.topic_arrived(topic)


def next_run_id(run_id: str) -> str:
    """The id of the run a ``continue_as_new`` starts: ``<first run>~<generation>``."""
    base, sep, generation = run_id.rpartition("~")
    if sep and generation.isdigit():
        return f"{base}~{int(generation) + 1}"
    return f"{run_id}~1"

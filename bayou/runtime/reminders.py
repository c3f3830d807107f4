"""Reminders: durable, named wake-ups that reactivate their actor when due.

A reminder is stored with its actor's partition, indexed by due time, so each silo polls
only the partitions the ring gives it (one storage round trip per poll, however many
reminders exist), never a global scan repeated by every silo.

Firing is exactly-once without a second write per firing: a due reminder is delivered as a
durable one-way message whose id is ``reminder:<name>:<due>``, and the turn that processes
that message moves the reminder on (to its next due time, or away if it was one-shot) in
the same atomic commit. A silo that crashes between storing the message and processing it
sends it again after recovery under the same id, which the actor recognises; a periodic
reminder that was due several times during an outage fires once, then resumes its period.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bayou import codec
from bayou.errors import BadRequest, InvalidArguments
from bayou.runtime.dispatch import resolve, validate
from bayou.storage.contract import ActorKey, Reminder
from bayou.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bayou.runtime.app import App
    from bayou.runtime.silo import Silo

log = logging.getLogger("bayou.reminders")

MIN_PERIOD = 1.0  # reminders are coarse by design: at least one second apart
POLL_LIMIT = 1000  # reminders fired per poll; the rest wait for the next poll
# Names the runtime keeps for itself start with \x01, which a user's names cannot contain.
# A *wake* reminder brings back an actor that was passivated while a workflow of its slept
# or waited with a deadline: firing it only activates the actor (the run resumes from its
# inbox message), then removes it.
INTERNAL = "\x01"
WAKE_PREFIX = "\x01wake:"


def wake_name(run_id: str, due: float) -> str:
    return f"{WAKE_PREFIX}{run_id}:{due:.3f}"


def visible(reminders: list[Reminder]) -> list[dict[str, Any]]:
    """The reminders an actor's owner registered, described; the runtime's own left out."""
    return [describe(r) for r in reminders if not r.name.startswith(INTERNAL)]


@dataclass(frozen=True, slots=True)
class ReminderTarget:
    """What a reminder delivers: an exclusive handler and its arguments."""

    method: str
    args: dict[str, Any]

    def encode(self) -> bytes:
        return codec.pack({"m": self.method, "a": self.args})

    @classmethod
    def decode(cls, data: bytes) -> ReminderTarget:
        body = codec.unpack(data)
        return cls(str(body["m"]), dict(body.get("a") or {}))


def message_id(name: str, due: float) -> str:
    return f"reminder:{name}:{due:.3f}"


def next_due(reminder: Reminder, now: float) -> float | None:
    """When a reminder that fired at ``reminder.due`` is due next (None: it was one-shot).
    Missed periods collapse: the next due time is the first one after ``now``."""
    if reminder.period is None:
        return None
    behind = max(now - reminder.due, 0.0)
    periods = math.floor(behind / reminder.period) + 1
    return reminder.due + periods * reminder.period


def describe(reminder: Reminder) -> dict[str, Any]:
    target = ReminderTarget.decode(reminder.data)
    return {
        "name": reminder.name,
        "due": reminder.due,
        "period": reminder.period,
        "method": target.method,
        "args": target.args,
    }


class ReminderRequest(BaseModel):
    """A reminder registered over HTTP: ``PUT .../reminders/{name}``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: str
    args: dict[str, Any] = {}
    due_in: float | None = Field(None, ge=0)
    due_at: float | None = None
    period: float | None = Field(None, ge=MIN_PERIOD)


def reminder_from_request(
    app: App, actor: ActorKey, name: str, body: dict[str, Any], now: float
) -> Reminder:
    """Validate a registration (4xx errors naming the field) and build the reminder."""
    try:
        request = ReminderRequest.model_validate(body)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        raise InvalidArguments(f"invalid reminder {name!r}: {problems}", problems) from None
    if (request.due_in is None) == (request.due_at is None):
        raise InvalidArguments(
            f"invalid reminder {name!r}: give exactly one of due_in and due_at",
            [{"field": "due_in", "message": "give exactly one of due_in and due_at"}],
        )
    spec, handler = resolve(app, actor.type, request.method)
    if spec.is_stateless:
        raise BadRequest(
            f"{actor.type} is a stateless worker: it has no inbox for reminders to deliver to",
            {"field": "type"},
        )
    if handler.kind != "exclusive":
        raise InvalidArguments(
            f"reminder {name!r}: {request.method!r} is a {handler.kind} handler; reminders "
            "run exclusive handlers",
            [{"field": "method", "message": "not an exclusive handler"}],
        )
    args = validate(spec, handler, request.args)
    plain = handler.args_model.model_validate(args).model_dump(mode="json")
    due = request.due_at if request.due_at is not None else now + (request.due_in or 0.0)
    return Reminder(
        actor, name, due, request.period, ReminderTarget(request.method, plain).encode()
    )


class ReminderService:
    """Polls the partitions this silo owns for due reminders and delivers them."""

    def __init__(self, silo: Silo, interval: float) -> None:
        self._silo = silo
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # Deliveries made but whose turn has not yet moved the reminder on; not re-sent
        # until they are this old (re-sending is harmless, only wasteful).
        self._sent: dict[tuple[str, str, float], float] = {}
        self.fired = 0
        self.lag_max = 0.0  # worst seconds between due and delivery, for operators

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _poll_forever(self) -> None:
        while True:
            await self._silo.clock.sleep(self._interval)
            try:
                await self.poll()
            except Exception:
                log.exception("reminder poll failed; trying again")

    async def poll(self) -> int:
        """Deliver every reminder due now in this silo's partitions; returns how many."""
        silo = self._silo
        if not silo.ready or not silo.agent.lease_valid():
            return 0
        mine = silo.agent.ring.partitions_of(silo.silo_id)
        if not mine:
            return 0
        now = silo.clock.time()
        due = await silo.storage.reminders_due(sorted(mine), now, POLL_LIMIT)
        stale_before = time.monotonic() - 30.0
        self._sent = {k: t for k, t in self._sent.items() if t > stale_before}
        fresh = [r for r in due if (str(r.actor), r.name, r.due) not in self._sent]
        await asyncio.gather(*(self._deliver(reminder, now) for reminder in fresh))
        return len(fresh)

    async def _deliver(self, reminder: Reminder, now: float) -> None:
        actor: ActorKey = reminder.actor
        if reminder.name.startswith(WAKE_PREFIX):
            try:
                await self._silo.wake_for(reminder)
            except Exception as exc:
                log.warning("could not wake %s for a workflow yet: %s", actor, exc)
                return
            self._sent[(str(actor), reminder.name, reminder.due)] = time.monotonic()
            return
        target = ReminderTarget.decode(reminder.data)
        try:
            await self._silo.tell(
                actor.type,
                actor.key,
                target.method,
                target.args,
                message_id=message_id(reminder.name, reminder.due),
                reminder=reminder,
            )
        except Exception as exc:
            log.warning("reminder %s of %s not delivered yet: %s", reminder.name, actor, exc)
            return
        self._sent[(str(actor), reminder.name, reminder.due)] = time.monotonic()
        self.fired += 1
        self.lag_max = max(self.lag_max, now - reminder.due)

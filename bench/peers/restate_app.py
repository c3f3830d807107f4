"""The Restate side of the ``call`` workload: a virtual object ``counter`` whose exclusive
``add`` handler reads its state, adds, and writes it back, as bayou's ``Counter.add`` does.

Served by the Restate virtualenv's hypercorn (``python -m hypercorn ...
bench.peers.restate_app:app``); Restate's ingress calls it over HTTP/2. The handler takes
``{"n": 1}``, the same body bayou's HTTP route takes.
"""

from __future__ import annotations

from typing import TypedDict

import restate


class AddArgs(TypedDict):
    n: int


counter = restate.VirtualObject("counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, args: AddArgs) -> int:
    value = int(await ctx.get("value", type_hint=int) or 0) + args["n"]
    ctx.set("value", value)
    return value


app = restate.app([counter])

"""The bayou client: call and tell durable actors over HTTP, importable without the runtime.

    async with Client("http://127.0.0.1:8080") as client:
        alice = client.ref(Counter, "alice")
        await alice.add(10)

Only ``bayou.wire``, ``bayou.errors``, ``bayou.codec`` and ``bayou.model`` are imported
here, so applications that only call actors never load the silo or the storage backends.
"""

from bayou.client.client import Client
from bayou.client.ref import ActorRef

__all__ = ["ActorRef", "Client"]

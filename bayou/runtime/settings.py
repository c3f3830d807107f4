"""Silo settings: every timing and limit, validated once at start-up."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SiloSettings(BaseModel):
    """How a silo behaves. Durations are in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_timeout: float = Field(300.0, gt=0, description="passivate an actor idle this long")
    snapshot_every: int = Field(100, ge=1, description="snapshot after this many records")
    snapshot_interval: float = Field(
        60.0, gt=0, description="snapshot an actor with new records at least this often"
    )
    dedup_window_size: int = Field(
        1000, ge=0, description="idempotency keys remembered per actor (newest kept)"
    )
    dedup_window_age: float = Field(
        86400.0, gt=0, description="idempotency keys are remembered at least this long"
    )
    call_timeout: float = Field(30.0, gt=0, description="default time a caller waits for a reply")
    max_call_timeout: float = Field(300.0, gt=0, description="upper bound on Bayou-Timeout")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger request bodies get 413")
    body_timeout: float = Field(
        30.0, gt=0, description="a request body must arrive in full within this long (408)"
    )
    partitions: int = Field(1024, ge=1, le=1 << 16, description="fixed per cluster")
    kv_cache_entries: int = Field(256, ge=0, description="entity kv values cached per activation")
    commit_batch: int | None = Field(
        None,
        ge=1,
        description="most writes one group commit carries; unset, the store's own bound "
        "(96 on Redis, which then writes one batch while the silo runs the next turns; 512 "
        "on the embedded store)",
    )
    lease: float = Field(
        3.0, gt=0, description="membership lease; a silo silent this long is declared dead"
    )
    heartbeat_interval: float = Field(
        0.5, gt=0, description="how often a silo renews its lease and reads membership"
    )
    claim_wait: float = Field(
        10.0, gt=0, description="how long a new owner waits for the old one to hand off"
    )
    drain_timeout: float = Field(
        20.0, gt=0, description="SIGTERM: hand everything off within this long, then exit"
    )
    max_hops: int = Field(2, ge=1, description="forwards a call may take before it is refused")
    workflow_history: int = Field(
        100, ge=1, description="finished workflow runs whose history is kept per actor"
    )
    reminder_interval: float = Field(
        1.0, gt=0, description="how often a silo polls its partitions for due reminders"
    )

    @model_validator(mode="after")
    def _heartbeat_fits_in_lease(self) -> SiloSettings:
        if self.heartbeat_interval * 2 > self.lease:
            raise ValueError("heartbeat_interval must be at most half the lease")
        return self


def settings_from_env(base: SiloSettings, environ: Mapping[str, str]) -> SiloSettings:
    """``base`` with every setting overridden by ``BAYOU_<NAME>`` where that is set.

    This is the silo's whole configuration contract with its environment (the Kubernetes
    manifests set these); a value that does not validate stops the silo with a clear error.
    """
    overrides = {
        name: environ[env_name(name)]
        for name in SiloSettings.model_fields
        if env_name(name) in environ
    }
    if not overrides:
        return base
    return SiloSettings.model_validate(base.model_dump() | overrides)


def env_name(setting: str) -> str:
    return f"BAYOU_{setting.upper()}"

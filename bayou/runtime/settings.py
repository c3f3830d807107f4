"""Silo settings: every timing and limit, validated once at start-up."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
    partitions: int = Field(1024, ge=1, le=1 << 16, description="fixed per cluster")
    kv_cache_entries: int = Field(256, ge=0, description="entity kv values cached per activation")

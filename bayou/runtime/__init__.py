"""The silo runtime: activations, turns, journal replay, snapshots, passivation, HTTP."""

from bayou.runtime.app import App
from bayou.runtime.settings import SiloSettings
from bayou.runtime.silo import Silo

__all__ = ["App", "Silo", "SiloSettings"]

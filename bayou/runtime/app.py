"""An application: the actor classes a silo hosts and the settings it runs with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bayou.model import ActorBase, ActorSpec, spec_of
from bayou.runtime.settings import SiloSettings


class App:
    """The unit a silo serves: ``bayou silo --app module:app`` loads one of these."""

    def __init__(
        self, actors: Iterable[type[ActorBase]], settings: SiloSettings | None = None
    ) -> None:
        specs: dict[str, ActorSpec] = {}
        for cls in actors:
            spec = spec_of(cls)
            if spec.type_name in specs and specs[spec.type_name].cls is not cls:
                raise ValueError(f"two actor classes registered as {spec.type_name!r}")
            specs[spec.type_name] = spec
        self.actors: Mapping[str, ActorSpec] = specs
        self.settings = settings or SiloSettings()

    def with_settings(self, settings: SiloSettings) -> App:
        """The same actors with other settings (e.g. overridden from the environment)."""
        return App([spec.cls for spec in self.actors.values()], settings)

    def spec(self, type_name: str) -> ActorSpec | None:
        return self.actors.get(type_name)

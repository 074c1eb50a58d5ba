"""The registry of zoo families, in a fixed order."""

from __future__ import annotations

from typing import Final

from distillguard.errors import ConfigurationError
from distillguard.sim.zoo._base import Family
from distillguard.sim.zoo._legit_dev import CODING_AGENT_USERS
from distillguard.sim.zoo._legit_people import INDIVIDUALS, POWER_USERS, TUTORING

__all__ = ["FAMILIES", "get_family"]

#: Every family of the zoo: legitimate populations first, then campaign strategies.
FAMILIES: Final[tuple[Family, ...]] = (
    INDIVIDUALS,
    POWER_USERS,
    TUTORING,
    CODING_AGENT_USERS,
)


def get_family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        ConfigurationError: no family has that name.
    """
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise ConfigurationError(
        f"unknown zoo family {name!r}",
        hint="known: " + ", ".join(f.name for f in FAMILIES),
    )

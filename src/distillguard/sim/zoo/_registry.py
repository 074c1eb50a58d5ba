"""The registry of zoo families, in a fixed order."""

from __future__ import annotations

from typing import Final

from distillguard.errors import ConfigurationError
from distillguard.sim.zoo._base import Family
from distillguard.sim.zoo._campaign_infra import CARD_CELLS, PROXY_HYDRA, ROTATING_CELLS
from distillguard.sim.zoo._campaign_stealth import (
    AGED_ACCOUNTS,
    AGENT_MIMIC,
    LOW_AND_SLOW,
    MULTI_ORG,
    RESELLER_HARVEST,
)
from distillguard.sim.zoo._legit_dev import CODING_AGENT_USERS
from distillguard.sim.zoo._legit_eval import (
    BENCHMARK_RUNNERS,
    JUDGE_TEAMS,
    LABELLING_VENDORS,
    RESEARCHERS,
)
from distillguard.sim.zoo._legit_org import (
    ENTERPRISE_BATCH,
    NAT_USERS,
    PRODUCT_APPS,
    RESELLER_CUSTOMERS,
)
from distillguard.sim.zoo._legit_people import INDIVIDUALS, POWER_USERS, TUTORING

__all__ = ["FAMILIES", "get_family"]

#: Every family of the zoo: legitimate populations first, then campaign strategies.
FAMILIES: Final[tuple[Family, ...]] = (
    INDIVIDUALS,
    POWER_USERS,
    TUTORING,
    CODING_AGENT_USERS,
    BENCHMARK_RUNNERS,
    JUDGE_TEAMS,
    RESEARCHERS,
    LABELLING_VENDORS,
    ENTERPRISE_BATCH,
    NAT_USERS,
    PRODUCT_APPS,
    RESELLER_CUSTOMERS,
    PROXY_HYDRA,
    CARD_CELLS,
    LOW_AND_SLOW,
    AGENT_MIMIC,
    AGED_ACCOUNTS,
    RESELLER_HARVEST,
    ROTATING_CELLS,
    MULTI_ORG,
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

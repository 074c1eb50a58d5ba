"""The scenario zoo: an independent traffic generator of many legitimate populations and
campaign strategies, used only to evaluate detection.

It was written from descriptions of real behaviour by an engineer who had not read
``distillguard.monitor``, and shares no code or text with the simulator. Every behavioural
parameter of a family is drawn from a range per seed (domain randomisation)::

    from pathlib import Path
    from distillguard.sim.zoo import generate_zoo

    result = generate_zoo(Path("zoo-out"), seed=1, scale=0.1)

See ``docs/zoo.md`` for the families and their parameter ranges.
"""

from __future__ import annotations

from distillguard.sim.zoo._base import Family, FamilyKind, ParamRange
from distillguard.sim.zoo._registry import FAMILIES, get_family
from distillguard.sim.zoo._zoo import LABEL_SCHEMA, FamilyRun, ZooResult, generate_zoo

__all__ = [
    "FAMILIES",
    "LABEL_SCHEMA",
    "Family",
    "FamilyKind",
    "FamilyRun",
    "ParamRange",
    "ZooResult",
    "generate_zoo",
    "get_family",
]

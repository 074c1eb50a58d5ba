"""Traffic simulator: realistic API traffic with distillation campaigns and hard negatives.

Load a scenario (shipped by name, or a TOML file) and write a format v1 log plus labels::

    from pathlib import Path
    from distillguard.sim import load_scenario, simulate

    result = simulate(load_scenario("small"), out=Path("sim-out"), seed=7)

See ``docs/simulator.md`` for the populations, campaigns and every knob.
"""

from __future__ import annotations

from distillguard.sim._text import find_instruction_dir
from distillguard.sim.scenario import (
    Campaign,
    CampaignStrategy,
    Capability,
    Difficulty,
    IpMode,
    IpRotation,
    ModelRelease,
    Population,
    PopulationKind,
    ProxyNetwork,
    Scenario,
    Timing,
    list_scenarios,
    load_scenario,
    parse_scenario,
)
from distillguard.sim.simulator import OutputFormat, SimulationResult, simulate

__all__ = [
    "Campaign",
    "CampaignStrategy",
    "Capability",
    "Difficulty",
    "IpMode",
    "IpRotation",
    "ModelRelease",
    "OutputFormat",
    "Population",
    "PopulationKind",
    "ProxyNetwork",
    "Scenario",
    "SimulationResult",
    "Timing",
    "find_instruction_dir",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
    "simulate",
]

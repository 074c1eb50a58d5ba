"""Legitimate developers using popular coding agents."""

from __future__ import annotations

from typing import Final

from distillguard.sim.zoo._agent import agent_session, coding_task
from distillguard.sim.zoo._base import Context, Family, ParamRange
from distillguard.sim.zoo._common import home_of, person_rhythm
from distillguard.sim.zoo._legit_people import pick_country
from distillguard.sim.zoo._net import PERSONAL_DOMAINS, uid
from distillguard.sim.zoo._world import MODELS

__all__ = ["CODING_AGENT_USERS"]

_OS: Final = ("darwin; arm64", "darwin; arm64", "linux; x64", "win32; x64", "linux; arm64")


def _coding_agent_users(ctx: Context) -> None:
    py = ctx.py
    tools = ctx.world.tools
    weights = [1.0 / (i + 1) for i in range(len(tools))]  # one tool dominates, as in practice
    for _ in range(ctx.scaled("accounts")):
        tool = py.choices(tools, weights)[0]
        at_org = py.random() < ctx.p("org_share")
        org = py.choice(ctx.world.orgs) if at_org else None
        country = org.country if org else pick_country(ctx)
        acc = ctx.account(
            population=f"coding_agent_users:{tool.name}",
            created_us=ctx.created_days_ago(10, 700),
            org_id=org.org_id if org else None,
            signup_channel="enterprise" if org else py.choice(("self_serve", "startup_program")),
            email_domain=org.domain if org else py.choice(PERSONAL_DOMAINS),
            payment_fingerprint=org.payment if org else uid(py, "pm_", 24),
            country=country,
            tier=py.choice(("tier-2", "tier-3", "tier-4")),
        )
        # Recent versions are the most common; a user upgrades now and then.
        n_ver = len(tool.versions)
        version_ix = n_ver - 1 - min(int(py.expovariate(1.0 / ctx.p("version_spread"))), n_ver - 1)
        os_ = py.choice(_OS)
        where = (
            py.choice(org.egress)
            if org is not None and py.random() < 0.7
            else home_of(ctx, country, 0.4)
        )
        tz, rate = person_rhythm(ctx, country, 0.5)
        for t0 in ctx.session_starts(per_day=rate, tz=tz, profile="work", weekend_factor=0.15):
            if py.random() < 0.03 and version_ix < n_ver - 1:
                version_ix += 1
            steps = ctx.lognormal_int(ctx.p("steps_median"), 0.6, 2)
            agent_session(
                ctx,
                acc,
                t0,
                task=coding_task(py),
                tool=tool,
                version=tool.versions[version_ix],
                os_=os_,
                where=where,
                steps=min(steps, 60),
                step_gap_s=ctx.p("step_gap_s"),
                model=MODELS[0] if py.random() > 0.1 else MODELS[1],
            )


CODING_AGENT_USERS: Final = Family(
    name="coding_agent_users",
    kind="legitimate",
    description=(
        "Developers using one of a few popular terminal/IDE coding agents. Every request of a "
        "tool carries the same long system prompt and tool schemas and a User-Agent of the tool "
        "(many client versions in use at once, users upgrading now and then). Sessions are "
        "multi-turn agent loops: a task, then a model call every few seconds, each after the "
        "results of the previous tool calls (file reads, test runs), so later turns build on "
        "tool results. Developers work office hours in their time zone from a stable home or "
        "office address; some belong to organisations whose accounts share a card and egress."
    ),
    params=(
        ParamRange("accounts", 220, 420, True, "accounts at scale 1"),
        ParamRange("sessions_per_day", 0.3, 1.2, help="mean agent sessions per working day"),
        ParamRange("steps_median", 3.0, 9.0, help="median model calls per session"),
        ParamRange("step_gap_s", 3.0, 15.0, help="median pause between calls (tool runs) (s)"),
        ParamRange(
            "version_spread", 1.5, 6.0, help="mean distance of a user's version from latest"
        ),
        ParamRange("org_share", 0.1, 0.4, help="share of developers inside an organisation"),
    ),
    body=_coding_agent_users,
)

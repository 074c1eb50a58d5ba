"""Legitimate individuals: everyday users, chat power users, students asking for homework help."""

from __future__ import annotations

from typing import Final

from distillguard.sim.zoo._base import Context, Family, ParamRange, ZooAccount
from distillguard.sim.zoo._common import (
    Client,
    Home,
    chat_session,
    everyday_prompt,
    followup,
    home_of,
    person_rhythm,
)
from distillguard.sim.zoo._net import PERSONAL_DOMAINS, ip_in, residential_net, uid
from distillguard.sim.zoo._text import CAPABILITIES, DIFFICULTIES, make_item

__all__ = ["INDIVIDUALS", "POWER_USERS", "TUTORING"]

_COUNTRIES: Final = (
    ("US", 30), ("IN", 10), ("GB", 7), ("DE", 7), ("BR", 6), ("FR", 5), ("JP", 4), ("CA", 4),
    ("ES", 3), ("NL", 3), ("PL", 3), ("KR", 3), ("AU", 3), ("SG", 2), ("VN", 2), ("NG", 2),
    ("CN", 2), ("RU", 2),
)  # fmt: skip


def pick_country(ctx: Context) -> str:
    """A country weighted like a global consumer user base."""
    names = [c for c, _ in _COUNTRIES]
    weights = [w for _, w in _COUNTRIES]
    return ctx.py.choices(names, weights)[0]


def _turns(ctx: Context, mean: float) -> int:
    n = 1
    while ctx.py.random() > 1.0 / max(mean, 1.0) and n < 20:
        n += 1
    return n


def _roaming(ctx: Context, home: Home, country: str) -> Home | tuple[str, int]:
    """Mostly the home connection; sometimes the phone's mobile network or a café."""
    r = ctx.py.random()
    if r < 0.08:
        net = residential_net(ctx.py, country)
        return ip_in(ctx.py, net), net.asn
    return home


def _converse(
    ctx: Context,
    acc: ZooAccount,
    t0: int,
    prompts: list[str],
    *,
    home: Home,
    country: str,
    client: Client,
    median: float = 250.0,
) -> None:
    """One conversation of a person, from home or on the move, with the family's pauses
    (``think_s``) and reasoning share; ``median`` completion tokens."""
    chat_session(
        ctx,
        acc,
        t0,
        prompts,
        where=_roaming(ctx, home, country),
        client=client,
        gap_s=ctx.p("think_s"),
        reasoning_prob=ctx.p("reasoning_share"),
        completion_median=median,
    )


def _individuals(ctx: Context) -> None:
    py = ctx.py
    for _ in range(ctx.scaled("accounts")):
        country = pick_country(ctx)
        paid = py.random() < ctx.p("paid_share")
        acc = ctx.account(
            population="individuals",
            created_us=ctx.created_days_ago(2, 900),
            signup_channel="self_serve",
            email_domain=py.choice(PERSONAL_DOMAINS),
            payment_fingerprint=uid(py, "pm_", 24) if paid else None,
            country=country,
            tier="tier-1" if paid else "free",
        )
        home = home_of(ctx, country, ctx.p("v6_share"))
        client = Client.browser(ctx) if py.random() < ctx.p("browser_share") else Client.sdk(ctx)
        tz, rate = person_rhythm(ctx, country, 0.7)
        profile = py.choice(("evening", "mixed", "work", "owl"))
        for t0 in ctx.session_starts(per_day=rate, tz=tz, profile=profile, weekend_factor=1.2):
            n = _turns(ctx, ctx.p("turns_mean"))
            prompts = [everyday_prompt(ctx)] + [followup(ctx) for _ in range(n - 1)]
            _converse(ctx, acc, t0, prompts, home=home, country=country, client=client)


INDIVIDUALS: Final = Family(
    name="individuals",
    kind="legitimate",
    description=(
        "People using the API directly for everyday tasks (e-mails, recipes, trips, "
        "explanations), from a browser playground or a small script, at home in the evening "
        "or at work. Each has a personal e-mail address, a residential connection with a stable "
        "IPv4 and a rotating IPv6 privacy address, an occasional mobile request, short "
        "conversations with follow-ups, and rarely asks for visible reasoning."
    ),
    params=(
        ParamRange("accounts", 1400, 2000, True, "accounts at scale 1"),
        ParamRange("sessions_per_day", 0.08, 0.45, help="mean conversations per day"),
        ParamRange("turns_mean", 1.3, 3.5, help="mean turns per conversation"),
        ParamRange("think_s", 20.0, 90.0, help="median pause between turns (s)"),
        ParamRange("reasoning_share", 0.01, 0.08, help="share of requests to the reasoning model"),
        ParamRange("paid_share", 0.2, 0.6, help="share with a payment instrument"),
        ParamRange("browser_share", 0.2, 0.6, help="share calling from a browser"),
        ParamRange("v6_share", 0.1, 0.5, help="share of requests over IPv6 where available"),
    ),
    body=_individuals,
)

_CASUAL: Final = (
    "{p}",
    "quick question: {p}",
    "I'm trying to understand this: {p}",
    "{p} (asking for a project at work)",
    "{p}. keep it practical",
    "need a second opinion: {p}",
)


def _power_users(ctx: Context) -> None:
    py = ctx.py
    caps = list(CAPABILITIES)
    for _ in range(ctx.scaled("accounts")):
        country = pick_country(ctx)
        acc = ctx.account(
            population="power_users",
            created_us=ctx.created_days_ago(30, 900),
            signup_channel="self_serve",
            email_domain=py.choice(PERSONAL_DOMAINS),
            payment_fingerprint=uid(py, "pm_", 24),
            country=country,
            tier=py.choice(("tier-2", "tier-3", "tier-4")),
        )
        home = home_of(ctx, country, ctx.p("v6_share"))
        client = Client.sdk(ctx) if py.random() < 0.6 else Client.browser(ctx)
        favourite = py.sample(caps, k=py.randint(1, 3))
        tz, rate = person_rhythm(ctx, country, 0.5)
        for t0 in ctx.session_starts(per_day=rate, tz=tz, profile="mixed", weekend_factor=0.8):
            n = _turns(ctx, ctx.p("turns_mean"))
            if py.random() < 0.6:
                cap = py.choice(favourite)
                item = make_item(py, cap, py.choice(CAPABILITIES[cap]), py.choice(DIFFICULTIES))
                first = py.choice(_CASUAL).format(p=item.problem)
            else:
                first = everyday_prompt(ctx)
            prompts = [first] + [followup(ctx) for _ in range(n - 1)]
            _converse(
                ctx, acc, t0, prompts, home=home, country=country, client=client, median=400.0
            )


POWER_USERS: Final = Family(
    name="power_users",
    kind="legitimate",
    description=(
        "Heavy individual users on paid tiers (developers, analysts, writers) who chat with the "
        "model many times a day about their own work, often on a few favourite subjects, with "
        "long multi-turn conversations and a fair share of reasoning-model requests, from home "
        "and office connections during the day and evening."
    ),
    params=(
        ParamRange("accounts", 150, 260, True, "accounts at scale 1"),
        ParamRange("sessions_per_day", 1.0, 4.0, help="mean conversations per day"),
        ParamRange("turns_mean", 2.0, 6.0, help="mean turns per conversation"),
        ParamRange("think_s", 30.0, 120.0, help="median pause between turns (s)"),
        ParamRange("reasoning_share", 0.05, 0.3, help="share of requests to the reasoning model"),
        ParamRange("v6_share", 0.1, 0.5, help="share of requests over IPv6"),
    ),
    body=_power_users,
)

_HOMEWORK: Final = (
    "can you solve this step by step? {p}",
    "please explain how to do this, step by step: {p}",
    "i dont get this question, can u show the working: {p}",
    "my homework says: {p}. show all steps pls",
    "{p}. explain each step so I can do the next one myself",
    "Help me understand the method for this problem: {p}",
    "we did this in class but I'm lost: {p}",
    "how do I even start this? {p}",
)
_HW_FOLLOW: Final = (
    "why did you do that in step 2?",
    "where does the {n} come from?",
    "can you check my answer? I got {n}",
    "ok can you give me a similar one to practise?",
    "i still dont get the last step",
    "is there a faster way?",
    "thank you!! that makes sense now",
)


def _tutoring(ctx: Context) -> None:
    py = ctx.py
    subjects = ("math", "math", "science", "logic", "coding", "data")
    for _ in range(ctx.scaled("accounts")):
        country = pick_country(ctx)
        edu = py.random() < ctx.p("edu_share")
        acc = ctx.account(
            population="tutoring",
            created_us=ctx.created_days_ago(1, 400),
            signup_channel="education" if edu else "self_serve",
            email_domain=(
                py.choice(("student.eastbrook.edu", "mail.uni-halden.de", "stu.kessler.ac.uk"))
                if edu
                else py.choice(PERSONAL_DOMAINS)
            ),
            payment_fingerprint=None if edu or py.random() < 0.6 else uid(py, "pm_", 24),
            country=country,
            tier="free",
        )
        home = home_of(ctx, country, 0.3)
        client = Client.browser(ctx) if py.random() < 0.7 else Client.sdk(ctx)
        level = py.randint(0, 2)
        tz, rate = person_rhythm(ctx, country, 0.6)
        for t0 in ctx.session_starts(per_day=rate, tz=tz, profile="student", weekend_factor=0.9):
            cap = py.choice(subjects)
            item = make_item(py, cap, py.choice(CAPABILITIES[cap]), DIFFICULTIES[level])
            first = py.choice(_HOMEWORK).format(p=item.problem)
            n = _turns(ctx, ctx.p("turns_mean"))
            rest = [
                py.choice(_HW_FOLLOW).replace("{n}", str(py.randint(2, 99))) for _ in range(n - 1)
            ]
            _converse(
                ctx,
                acc,
                t0,
                [first, *rest],
                home=home,
                country=country,
                client=client,
                median=350.0,
            )


TUTORING: Final = Family(
    name="tutoring",
    kind="legitimate",
    description=(
        "School and university students asking for step-by-step solutions to homework in "
        "maths, science, logic and programming: many explicit chain-of-thought requests and "
        "reasoning-model calls, in the afternoon and late evening, with follow-ups about a "
        "step they did not understand. Some sign up through an education programme with a "
        "university e-mail; most are free-tier accounts on home connections."
    ),
    params=(
        ParamRange("accounts", 500, 800, True, "accounts at scale 1"),
        ParamRange("sessions_per_day", 0.3, 1.0, help="mean homework sessions per day"),
        ParamRange("turns_mean", 1.5, 4.0, help="mean turns per session"),
        ParamRange("think_s", 40.0, 180.0, help="median pause between turns (s)"),
        ParamRange("reasoning_share", 0.2, 0.6, help="share of requests to the reasoning model"),
        ParamRange("edu_share", 0.1, 0.4, help="share signed up through an education programme"),
    ),
    body=_tutoring,
)

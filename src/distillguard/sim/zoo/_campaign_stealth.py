"""Campaigns that hide in behaviour or in other people's identities: low-and-slow, aged
accounts, coding-agent imitation, harvesting through a reseller, and accounts of several
real organisations."""

from __future__ import annotations

from typing import Final

from distillguard.sim.zoo._base import DAY_US, Context, Family, ParamRange
from distillguard.sim.zoo._campaign_infra import bot_times, throwaway_domain
from distillguard.sim.zoo._common import (
    Client,
    Home,
    chat_session,
    everyday_prompt,
    followup,
    home_of,
    org_account,
)
from distillguard.sim.zoo._harvest import Plan, ProxyPool, campaign_id, harvest
from distillguard.sim.zoo._legit_people import pick_country
from distillguard.sim.zoo._net import COUNTRY_TZ, PERSONAL_DOMAINS, datacenter_net, ip_in, uid

__all__ = ["AGED_ACCOUNTS", "AGENT_MIMIC", "LOW_AND_SLOW", "MULTI_ORG", "RESELLER_HARVEST"]


def _low_and_slow(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    plan = Plan.draw(ctx, focus={"cot": 2.0, "answer": 1.5}, capabilities=py.randint(3, 6))
    for _ in range(ctx.scaled("accounts")):
        country = pick_country(ctx)
        acc = ctx.account(
            population="low_and_slow",
            campaign_id=cid,
            created_us=ctx.created_days_ago(7, 150),
            signup_channel="self_serve",
            email_domain=py.choice(PERSONAL_DOMAINS),
            payment_fingerprint=uid(py, "pm_", 24),
            country=country,
            tier=py.choice(("tier-1", "tier-2")),
        )
        home: Home = home_of(ctx, country, 0.3)
        client = Client.browser(ctx) if py.random() < 0.4 else Client.sdk(ctx)
        tz = COUNTRY_TZ[country] + py.uniform(-1.0, 1.0)
        profile = py.choice(("evening", "mixed", "work"))
        for t0 in ctx.session_starts(
            per_day=ctx.p("sessions_per_day"), tz=tz, profile=profile, weekend_factor=1.0
        ):
            t = t0
            for _ in range(py.randint(1, ctx.pi("requests_per_session"))):
                if not ctx.in_window(t):
                    break
                if py.random() < ctx.p("cover_share"):
                    t = chat_session(
                        ctx,
                        acc,
                        t,
                        [everyday_prompt(ctx), followup(ctx)][: py.randint(1, 2)],
                        where=home,
                        client=client,
                        gap_s=ctx.p("think_s"),
                    )
                else:
                    harvest(
                        ctx,
                        acc,
                        t,
                        plan,
                        where=home,
                        client=client,
                        paraphrase_rate=ctx.p("paraphrase_rate"),
                        strength=ctx.p("paraphrase_strength"),
                    )
                    t += ctx.gap_us(ctx.p("think_s"))


LOW_AND_SLOW: Final = Family(
    name="low_and_slow",
    kind="campaign",
    description=(
        "Low-and-slow harvesting: each account looks like one ordinary person (own card, own "
        "residential connection, personal e-mail, evening or office hours, human pauses, a "
        "few requests a day, plenty of everyday cover traffic), but its harvesting requests "
        "are slices of one shared plan, paraphrased (synonyms, reordering, new framings) so "
        "that no two accounts send the same text."
    ),
    params=(
        ParamRange("accounts", 80, 170, True, "accounts at scale 1"),
        ParamRange("sessions_per_day", 0.8, 2.5, help="sessions per account per day"),
        ParamRange("requests_per_session", 2, 6, True, "at most this many requests a session"),
        ParamRange("cover_share", 0.3, 0.7, help="share of everyday cover requests"),
        ParamRange("paraphrase_rate", 0.6, 1.0, help="share of harvesting prompts paraphrased"),
        ParamRange("paraphrase_strength", 0.5, 0.95, help="probability of each paraphrase op"),
        ParamRange("think_s", 30.0, 150.0, help="median pause between requests (s)"),
    ),
    body=_low_and_slow,
)


def _aged_accounts(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    plan = Plan.draw(ctx, focus={"cot": 1.5, "code": 1.2, "grading": 1.0}, capabilities=5)
    cards = [uid(py, "pm_", 24) for _ in range(max(1, ctx.scaled("accounts") // 3))]
    vps = datacenter_net(py)
    for _ in range(ctx.scaled("accounts")):
        country = pick_country(ctx)
        acc = ctx.account(
            population="aged_accounts",
            campaign_id=cid,
            created_us=ctx.created_days_ago(ctx.p("age_days_min"), ctx.p("age_days_min") + 120),
            signup_channel="self_serve",
            email_domain=py.choice(PERSONAL_DOMAINS),
            payment_fingerprint=py.choice(cards) if py.random() < 0.5 else uid(py, "pm_", 24),
            country=country,
            tier="tier-2",
        )
        home = home_of(ctx, country, 0.3)
        client = Client.browser(ctx)
        tz = COUNTRY_TZ[country]
        switch = int(ctx.p("warmup_days") * py.uniform(0.7, 1.3))
        # Weeks of light normal use (the warm-up continues before the log starts) ...
        for t0 in ctx.session_starts(per_day=0.6, tz=tz, profile="mixed", last_day=switch):
            chat_session(
                ctx, acc, t0, [everyday_prompt(ctx), followup(ctx)], where=home, client=client
            )
        # ... then harvesting, from a server and a script.
        moved = py.random() < ctx.p("move_to_vps")
        where = (ip_in(py, vps), vps.asn) if moved else home.address(ctx)
        script = Client.sdk(ctx, "py-sdk")
        start = ctx.start_us + switch * DAY_US
        for t in bot_times(ctx, start, ctx.end_us, ctx.p("harvest_per_day")):
            harvest(
                ctx,
                acc,
                t,
                plan,
                where=where,
                client=script,
                paraphrase_rate=ctx.p("paraphrase_rate"),
            )


AGED_ACCOUNTS: Final = Family(
    name="aged_accounts",
    kind="campaign",
    description=(
        "Accounts created weeks or months in advance and warmed up with light, normal-looking "
        "use (a conversation every other day from a home connection in a browser) so that they "
        "have history and trust; after the warm-up they switch to scripted harvesting at "
        "volume, some from the same home line, some moved to a server."
    ),
    params=(
        ParamRange("accounts", 30, 70, True, "accounts at scale 1"),
        ParamRange("age_days_min", 21.0, 90.0, help="youngest account age at the log's start"),
        ParamRange("warmup_days", 3.0, 8.0, help="days of the log still in warm-up"),
        ParamRange("harvest_per_day", 8.0, 30.0, help="harvesting requests per day afterwards"),
        ParamRange("move_to_vps", 0.2, 0.8, help="share that move to a server to harvest"),
        ParamRange("paraphrase_rate", 0.0, 0.6, help="share of prompts paraphrased"),
    ),
    body=_aged_accounts,
)


def _agent_mimic(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    tool = ctx.world.tools[0]  # the most popular tool
    plan = Plan.draw(ctx, focus={"code": 3.0, "tool_trace": 2.0, "cot": 0.5}, capabilities=3)
    plan.items = [i for i in plan.items if i[0] == "coding"] or plan.items
    versions = py.sample(tool.versions, k=min(len(tool.versions), ctx.pi("versions")))
    pool = ProxyPool.draw(py, ctx.scaled("proxy_pool", 20))
    vps = datacenter_net(py)
    for _ in range(ctx.scaled("accounts")):
        acc = ctx.account(
            population=f"agent_mimic:{tool.name}",
            campaign_id=cid,
            created_us=ctx.created_days_ago(1, 30),
            signup_channel=py.choice(("self_serve", "startup_program")),
            email_domain=throwaway_domain(ctx),
            payment_fingerprint=uid(py, "pm_", 24),
            country=py.choice(("US", "GB", "DE", "SG", "CA")),
            tier="tier-2",
        )
        ua, fp = tool.user_agent(py.choice(versions), py.choice(("darwin; arm64", "linux; x64")))
        client = Client(ua, fp)
        rotate = py.random() < ctx.p("proxy_share")
        fixed = (ip_in(py, vps), vps.asn)
        for t in bot_times(ctx, ctx.start_us, ctx.end_us, ctx.p("requests_per_day")):
            where = pool.exit(py) if rotate else fixed
            harvest(
                ctx,
                acc,
                t,
                plan,
                where=where,
                client=client,
                system=tool.system_prompt,
                tools=list(tool.tools),
                paraphrase_rate=ctx.p("paraphrase_rate"),
                endpoint="/v1/messages",
            )


AGENT_MIMIC: Final = Family(
    name="agent_mimic",
    kind="campaign",
    description=(
        "Harvesting disguised as coding-agent traffic: requests copy the most popular agent "
        "tool's system prompt, tool schemas and User-Agent (a few versions), but each carries "
        "a fresh harvesting task (code and tool-use traces over a sweep of programming "
        "problems) in a single turn with no real tool results, round the clock, from servers "
        "or a proxy pool."
    ),
    params=(
        ParamRange("accounts", 30, 70, True, "accounts at scale 1"),
        ParamRange("requests_per_day", 10.0, 35.0, help="requests per account per day"),
        ParamRange("versions", 1, 4, True, "client versions copied"),
        ParamRange("proxy_share", 0.0, 0.7, help="share of accounts rotating through proxies"),
        ParamRange("proxy_pool", 300, 3000, True, "exits in the proxy pool at scale 1"),
        ParamRange("paraphrase_rate", 0.0, 0.5, help="share of prompts paraphrased"),
    ),
    body=_agent_mimic,
)


def _reseller_harvest(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    res = py.choice(ctx.world.resellers)
    plan = Plan.draw(ctx, focus={"cot": 2.0, "answer": 1.5}, capabilities=6)
    client = Client(res.user_agent, res.fingerprint)
    for _ in range(ctx.scaled("accounts")):
        acc = ctx.account(
            population=f"reseller_harvest:{res.name}",
            campaign_id=cid,
            created_us=ctx.created_days_ago(1, 60),
            org_id=res.org_id,
            signup_channel="reseller",
            email_domain=res.domain if py.random() < 0.5 else throwaway_domain(ctx),
            payment_fingerprint=res.payment,
            country=pick_country(ctx),
            tier="reseller",
        )
        for t in bot_times(ctx, ctx.start_us, ctx.end_us, ctx.p("requests_per_day")):
            if py.random() < ctx.p("cover_share"):
                chat_session(
                    ctx, acc, t, [everyday_prompt(ctx)], where=py.choice(res.egress), client=client
                )
            else:
                harvest(
                    ctx,
                    acc,
                    t,
                    plan,
                    where=py.choice(res.egress),
                    client=client,
                    paraphrase_rate=ctx.p("paraphrase_rate"),
                )


RESELLER_HARVEST: Final = Family(
    name="reseller_harvest",
    kind="campaign",
    description=(
        "Harvesting through an API reseller: the campaign buys customer accounts from a "
        "reseller that real customers also use, so every request arrives from the reseller's "
        "gateway addresses with its User-Agent, on the reseller's organisation and card; only "
        "what is asked, how much and when tells it apart."
    ),
    params=(
        ParamRange("accounts", 15, 40, True, "accounts at scale 1"),
        ParamRange("requests_per_day", 10.0, 40.0, help="requests per account per day"),
        ParamRange("cover_share", 0.0, 0.3, help="share of everyday cover requests"),
        ParamRange("paraphrase_rate", 0.0, 0.6, help="share of prompts paraphrased"),
    ),
    body=_reseller_harvest,
)


def _multi_org(ctx: Context) -> None:
    py = ctx.py
    cid = campaign_id(py)
    plan = Plan.draw(ctx, focus={"cot": 1.5, "code": 1.5, "answer": 1.0}, capabilities=6)
    orgs = py.sample(ctx.world.orgs, k=min(len(ctx.world.orgs), ctx.scaled("orgs", 2)))
    f = ctx.group_factor("orgs", len(orgs))
    pool = ProxyPool.draw(py, 400)
    script = Client.sdk(ctx, py.choice(("py-sdk", "httpx")))
    for org in orgs:
        for _ in range(ctx.shrink(py.randint(1, ctx.pi("accounts_per_org")), f)):
            acc = org_account(
                ctx,
                org,
                population="multi_org",
                campaign_id=cid,
                created_us=ctx.created_days_ago(90, 900),
            )
            taken = int(py.uniform(0.0, ctx.days * 0.6))
            staff = Client.sdk(ctx)
            # The real owner's use before the key is taken over ...
            for t0 in ctx.session_starts(per_day=0.8, tz=org.tz, profile="work", last_day=taken):
                chat_session(
                    ctx, acc, t0, [everyday_prompt(ctx)], where=py.choice(org.egress), client=staff
                )
            # ... then harvesting with the stolen or bought key, from elsewhere.
            start = ctx.start_us + taken * DAY_US
            for t in bot_times(ctx, start, ctx.end_us, ctx.p("requests_per_day")):
                where = (
                    pool.exit(py) if py.random() < ctx.p("proxy_share") else py.choice(org.egress)
                )
                harvest(
                    ctx,
                    acc,
                    t,
                    plan,
                    where=where,
                    client=script,
                    paraphrase_rate=ctx.p("paraphrase_rate"),
                )


MULTI_ORG: Final = Family(
    name="multi_org",
    kind="campaign",
    description=(
        "A campaign spread over real-looking accounts of several organisations (compromised or "
        "bought enterprise accounts): each account has years of history, the organisation's "
        "card, domain and egress, and its owner's ordinary use; from the takeover on, its key "
        "also serves scripted harvesting, mostly from proxies, sometimes through the "
        "organisation's own egress."
    ),
    params=(
        ParamRange("orgs", 3, 6, True, "organisations at scale 1"),
        ParamRange("accounts_per_org", 3, 8, True, "at most this many accounts per organisation"),
        ParamRange("requests_per_day", 15.0, 50.0, help="harvesting requests per day"),
        ParamRange("proxy_share", 0.4, 0.9, help="share of harvesting requests via proxies"),
        ParamRange("paraphrase_rate", 0.0, 0.5, help="share of prompts paraphrased"),
    ),
    body=_multi_org,
)

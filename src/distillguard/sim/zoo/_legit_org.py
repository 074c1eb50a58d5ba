"""Legitimate organisations: enterprise batch jobs, NATs of universities and companies, product
apps with many end users, and API resellers."""

from __future__ import annotations

from typing import Final

from distillguard.sim.zoo._base import DAY_US, HOUR_US, Context, Family, ParamRange
from distillguard.sim.zoo._common import (
    Client,
    chat_session,
    everyday_prompt,
    followup,
    home_of,
    org_account,
)
from distillguard.sim.zoo._legit_eval import _single
from distillguard.sim.zoo._legit_people import pick_country
from distillguard.sim.zoo._net import COUNTRY_TZ, PERSONAL_DOMAINS, cloud_egress, uid
from distillguard.sim.zoo._text import CAPABILITIES, DIFFICULTIES, make_item
from distillguard.sim.zoo._world import MODELS

__all__ = ["ENTERPRISE_BATCH", "NAT_USERS", "PRODUCT_APPS", "RESELLER_CUSTOMERS"]

_BATCH: Final = (
    "Classify this support ticket into one of [billing, bug, feature_request, account, other]. "
    "Ticket #{n}: {t}",
    "Extract vendor, date, total and currency as JSON from invoice {n}:\n{t}",
    "Summarise the following call transcript in 3 bullet points for the CRM (call {n}):\n{t}",
    "Write a 40-word product description for SKU {n}: {t}",
    "Translate the following customer message to English and detect its language (msg {n}): {t}",
    "Does this contract clause contain an auto-renewal term? Answer yes/no and quote it. "
    "Clause {n}: {t}",
)
_RECORDS: Final = (
    "I was charged twice for my subscription this month.",
    "ACME Supplies Ltd, 2026-02-14, total 1,284.50 EUR, net 30.",
    "Agent: thanks for calling. Customer: my router keeps dropping the connection every hour.",
    "Stainless steel water bottle, 750 ml, double-walled, keeps drinks cold 24 h.",
    "Hola, mi pedido llegó incompleto, faltan dos artículos.",
    "This Agreement renews automatically for successive one-year terms unless terminated.",
    "The app crashes when I upload a photo larger than 10 MB.",
)


def _enterprise_batch(ctx: Context) -> None:
    py = ctx.py
    orgs = ctx.world.orgs[: max(1, min(len(ctx.world.orgs) // 2, ctx.scaled("orgs")))]
    f = ctx.group_factor("orgs", len(orgs))
    for org in orgs:
        for _ in range(ctx.shrink(py.randint(3, ctx.pi("accounts_per_org")), f)):
            acc = org_account(
                ctx, org, population="enterprise_batch", created_us=ctx.created_days_ago(60, 1000)
            )
            for _ in range(py.randint(1, 2)):  # cron jobs of this service account
                client = Client.sdk(ctx, py.choice(("py-sdk", "requests", "go", "js-sdk")))
                template = py.choice(_BATCH)
                period_h = py.choice((4, 6, 12, 24, 24, 24))
                minute = py.randrange(60)
                size = ctx.lognormal_int(ctx.p("batch_median"), 0.5, 1)
                weekends = py.random() < 0.5
                where = py.choice(org.egress)
                run = ctx.start_us + int((py.randrange(period_h) + minute / 60.0) * HOUR_US)
                while run < ctx.end_us:
                    day = (run - ctx.start_us) // DAY_US
                    if weekends or not ctx.weekend(day):
                        t = run + py.randrange(20_000_000)  # cron jitter
                        n = max(1, int(size * py.uniform(0.5, 1.5)))
                        for _ in range(n):
                            if not ctx.in_window(t):
                                break
                            text = template.format(n=py.randint(1000, 99999), t=py.choice(_RECORDS))
                            _single(
                                ctx,
                                acc,
                                t,
                                [{"role": "user", "content": text}],
                                where=where,
                                client=client,
                                model=MODELS[1],
                                completion_median=60.0,
                            )
                            t += ctx.burst_gap_us(ctx.p("requests_per_s"))
                    run += period_h * HOUR_US


ENTERPRISE_BATCH: Final = Family(
    name="enterprise_batch",
    kind="legitimate",
    description=(
        "Companies running scheduled batch jobs: cron-driven service accounts that every hour "
        "or every day send a batch of templated prompts (classify this ticket, extract these "
        "invoice fields as JSON, summarise this call), some round the clock including weekends, "
        "from the company's egress addresses; one organisation holds many accounts that share "
        "its card and e-mail domain."
    ),
    params=(
        ParamRange("orgs", 3, 6, True, "organisations at scale 1"),
        ParamRange("accounts_per_org", 3, 10, True, "at most this many service accounts per org"),
        ParamRange("batch_median", 5.0, 25.0, help="median requests per cron run"),
        ParamRange("requests_per_s", 0.5, 5.0, help="request rate within a run"),
    ),
    body=_enterprise_batch,
)


def _nat_users(ctx: Context) -> None:
    py = ctx.py
    sites = [*ctx.world.universities, *ctx.world.orgs[-4:]]
    for _ in range(ctx.scaled("accounts")):
        site = py.choice(sites)
        is_uni = site in ctx.world.universities
        inst_mail = py.random() < ctx.p("institution_mail_share")
        acc = ctx.account(
            population="nat_users:" + ("university" if is_uni else "company"),
            created_us=ctx.created_days_ago(3, 700),
            signup_channel="education" if is_uni and inst_mail else "self_serve",
            email_domain=site.domain if inst_mail else py.choice(PERSONAL_DOMAINS),
            payment_fingerprint=uid(py, "pm_", 24) if py.random() < 0.5 else None,
            country=site.country,
            tier=py.choice(("free", "tier-1", "tier-2")),
        )
        home = home_of(ctx, site.country, 0.3)
        client = Client.browser(ctx) if py.random() < 0.5 else Client.sdk(ctx)
        tz = COUNTRY_TZ[site.country]
        rate = ctx.p("sessions_per_day") * py.lognormvariate(0.0, 0.6)
        for t0 in ctx.session_starts(per_day=rate, tz=tz, profile="work", weekend_factor=0.3):
            on_site = py.random() < ctx.p("on_site_share")
            where = py.choice(site.egress) if on_site else home.address(ctx)
            if is_uni and py.random() < 0.5:
                cap = py.choice(("math", "science", "coding", "data"))
                first = make_item(
                    py, cap, py.choice(CAPABILITIES[cap]), py.choice(DIFFICULTIES[:3])
                ).problem
            else:
                first = everyday_prompt(ctx)
            prompts = [first] + [followup(ctx) for _ in range(py.randint(0, 3))]
            chat_session(
                ctx,
                acc,
                t0,
                prompts,
                where=where,
                client=client,
                reasoning_prob=0.1 if is_uni else 0.03,
            )


NAT_USERS: Final = Family(
    name="nat_users",
    kind="legitimate",
    description=(
        "Many unrelated people behind the network address translation of a university campus or "
        "a company office: each has an account of their own (own or no card, personal or "
        "institutional e-mail) but during the day their requests leave through the same few "
        "addresses; evenings from home."
    ),
    params=(
        ParamRange("accounts", 450, 750, True, "accounts at scale 1"),
        ParamRange("sessions_per_day", 0.3, 1.2, help="mean conversations per day"),
        ParamRange("on_site_share", 0.6, 0.95, help="share of sessions from the site's NAT"),
        ParamRange("institution_mail_share", 0.3, 0.8, help="share signed up with the site's mail"),
    ),
    body=_nat_users,
)

_APPS: Final = (
    ("Chefly", "a friendly cooking assistant. Suggest recipes from the user's ingredients"),
    ("StudyPal", "a study companion for high-school students. Explain concepts patiently"),
    ("TripNest", "a travel planner. Build day-by-day itineraries with budgets"),
    ("InboxZero", "an e-mail assistant. Draft concise, polite replies in the user's voice"),
    ("FitMate", "a fitness coach. Give safe training plans and never medical diagnoses"),
    ("ShopSage", "a shopping assistant for an electronics store. Recommend products honestly"),
    ("LegalEase", "a plain-language explainer of consumer rights. Always suggest a lawyer"),
    ("CodeBuddy", "a beginner programming tutor. Use small examples"),
)


def _product_apps(ctx: Context) -> None:
    py = ctx.py
    n_apps = min(len(_APPS), ctx.scaled("apps"))
    f = ctx.group_factor("apps", n_apps)
    for name, role in py.sample(_APPS, k=n_apps):
        country = pick_country(ctx)
        org_id, card = uid(py, "org_", 16), uid(py, "pm_", 24)
        egress = cloud_egress(py, 2, 6)
        client = Client.sdk(ctx, py.choice(("js-sdk", "py-sdk", "go", "axios")))
        system = f"You are {name}, {role}. Keep answers under 200 words. Today is {{date}}."
        tz = COUNTRY_TZ[country]
        for env in range(py.randint(1, 3)):
            acc = ctx.account(
                population="product_apps",
                created_us=ctx.created_days_ago(30, 600),
                org_id=org_id,
                signup_channel=py.choice(("self_serve", "startup_program")),
                email_domain=f"{name.lower()}.app",
                payment_fingerprint=card,
                country=country,
                tier="tier-4" if env == 0 else "tier-2",
            )
            share = 1.0 if env == 0 else 0.05  # staging keys see little traffic
            per_day = ctx.p("conversations_per_day") * share * f
            for t0 in ctx.session_starts(
                per_day=per_day, tz=tz + py.uniform(-3, 3), profile="mixed", weekend_factor=1.1
            ):
                prompts = [everyday_prompt(ctx)] + [followup(ctx) for _ in range(py.randint(0, 4))]
                chat_session(
                    ctx,
                    acc,
                    t0,
                    prompts,
                    where=py.choice(egress),
                    client=client,
                    system=system.replace("{date}", "2026-03"),
                    gap_s=30.0,
                )


PRODUCT_APPS: Final = Family(
    name="product_apps",
    kind="legitimate",
    description=(
        "Consumer apps built on the API (a cooking assistant, a study companion, a travel "
        "planner...): one production account (plus a staging one) carries the conversations "
        "of many end users, each request with the app's system prompt, sent from the app's "
        "backend servers, following the daily rhythm of the app's market."
    ),
    params=(
        ParamRange("apps", 3, 7, True, "apps at scale 1"),
        ParamRange("conversations_per_day", 25.0, 100.0, help="end-user conversations per day"),
    ),
    body=_product_apps,
)


def _reseller_customers(ctx: Context) -> None:
    py = ctx.py
    for res in ctx.world.resellers:
        for _ in range(ctx.scaled("customers_per_reseller")):
            country = pick_country(ctx)
            acc = ctx.account(
                population=f"reseller_customers:{res.name}",
                created_us=ctx.created_days_ago(2, 400),
                org_id=res.org_id,
                signup_channel="reseller",
                email_domain=res.domain if py.random() < 0.5 else py.choice(PERSONAL_DOMAINS),
                payment_fingerprint=res.payment,
                country=country,
                tier="reseller",
            )
            client = Client(res.user_agent, res.fingerprint)
            tz = COUNTRY_TZ[country]
            kind = py.random()
            system = None
            if kind < 0.3:
                system = py.choice(_APPS)[1]
            rate = ctx.p("sessions_per_day") * py.lognormvariate(0.0, 0.8)
            profile = py.choice(("work", "mixed", "evening", "anytime"))
            for t0 in ctx.session_starts(per_day=rate, tz=tz, profile=profile, weekend_factor=0.7):
                if kind < 0.6:
                    first = everyday_prompt(ctx)
                else:
                    cap = py.choice(list(CAPABILITIES))
                    first = make_item(
                        py, cap, py.choice(CAPABILITIES[cap]), py.choice(DIFFICULTIES)
                    ).problem
                prompts = [first] + [followup(ctx) for _ in range(py.randint(0, 3))]
                chat_session(
                    ctx,
                    acc,
                    t0,
                    prompts,
                    where=py.choice(res.egress),
                    client=client,
                    system=system,
                    reasoning_prob=0.08,
                    gap_s=40.0,
                )


RESELLER_CUSTOMERS: Final = Family(
    name="reseller_customers",
    kind="legitimate",
    description=(
        "End customers of API resellers/aggregators: the reseller opens one account per "
        "customer under its own organisation and card (sign-up channel 'reseller'), and all "
        "their traffic, very diverse in content, timing and country, arrives from the "
        "reseller's gateway servers with the gateway's User-Agent."
    ),
    params=(
        ParamRange("customers_per_reseller", 60, 140, True, "customers per reseller at scale 1"),
        ParamRange("sessions_per_day", 0.3, 2.0, help="mean conversations per customer per day"),
    ),
    body=_reseller_customers,
)

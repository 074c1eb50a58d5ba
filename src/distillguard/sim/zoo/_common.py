"""Helpers shared by the zoo's families: everyday prompts, conversations and client identities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from distillguard.sim.zoo._base import Context, ZooAccount
from distillguard.sim.zoo._net import (
    COUNTRY_TZ,
    Network,
    browser_user_agent,
    ip_in,
    prefix64_in,
    residential_net,
    sdk_user_agent,
)
from distillguard.sim.zoo._text import estimate_tokens, reasoning_text, response_text
from distillguard.sim.zoo._world import MODELS, REASONING_MODEL, Org

__all__ = [
    "Client",
    "Home",
    "address_of",
    "chat_session",
    "everyday_prompt",
    "followup",
    "home_of",
    "org_account",
    "person_rhythm",
    "send",
]

_EVERYDAY: Final = (
    "write a polite email to my landlord about the {thing} that has been broken for {n} days",
    "what's a good {meal} recipe with {food} and {food2}?",
    "plan a {n}-day trip to {city} on a budget, I like {hobby}",
    "summarise this in three bullet points: {para}",
    "can you explain {topic} like I'm five",
    "help me name my {pet}, it's a {colour} {animal}",
    "translate to {lang}: '{phrase}'",
    "what should I say in a toast at my {rel}'s wedding? we grew up in {city}",
    "is it normal for {thing} to make a clicking noise?",
    "give me a {n}-week training plan to run a 10k, I currently run {n2} km a week",
    "rewrite this to sound more professional: {phrase}",
    "compare renting vs buying in {city} for someone earning {n}k a year",
    "what are the pros and cons of {hobby} as a hobby?",
    "my {rel} is turning {n}, gift ideas under {n2}0 euros?",
    "how do I get rid of {pest} in my kitchen without chemicals",
    "write a short bedtime story about a {colour} {animal} who loves {hobby}",
    "draft a cover letter for a {job} position, I have {n} years of experience",
    "what does '{phrase}' mean exactly?",
    "fix the grammar: {phrase}",
    "ideas for a {n}-minute presentation about {topic} for my team",
    "explain the difference between {topic} and {topic2}",
    "I have {food}, {food2} and rice. what can I cook tonight?",
    "make a packing list for {city} in {month}",
    "how long should I boil {food} for?",
    "what's a nice way to decline a {rel}'s invitation?",
)
_SLOTS: Final[dict[str, tuple[str, ...]]] = {
    "thing": ("heater", "dishwasher", "window", "boiler", "fridge", "washing machine", "door lock"),
    "meal": ("vegetarian dinner", "quick lunch", "breakfast", "dessert", "soup"),
    "food": ("chickpeas", "spinach", "salmon", "tofu", "eggs", "lentils", "mushrooms", "pasta"),
    "food2": ("feta", "lemon", "garlic", "coconut milk", "tomatoes", "ginger", "rice noodles"),
    "city": ("Lisbon", "Kyoto", "Mexico City", "Edinburgh", "Seoul", "Prague", "Cape Town"),
    "hobby": ("hiking", "museums", "street food", "photography", "cycling", "jazz bars"),
    "para": (
        "The council voted to extend the tram line to the harbour by 2028, citing traffic.",
        "Quarterly revenue rose 4% while costs fell, but the outlook was cut on weak demand.",
        "Researchers found that sleep quality improved when participants avoided screens.",
    ),
    "topic": ("inflation", "black holes", "vaccines", "blockchain", "photosynthesis",
              "interest rates", "machine learning", "the stock market", "climate change"),
    "topic2": ("deflation", "neutron stars", "antibiotics", "databases", "respiration"),
    "pet": ("cat", "puppy", "hamster", "parrot"),
    "colour": ("grey", "ginger", "black", "spotted", "white"),
    "animal": ("kitten", "dog", "rabbit", "fox", "owl"),
    "lang": ("Spanish", "French", "German", "Japanese", "Portuguese", "Italian"),
    "phrase": ("we would like to reschedule our meeting", "break a leg", "the ball is in your",
               "i cant come tomorow sorry", "please find attached the report"),
    "rel": ("sister", "best friend", "colleague", "cousin", "dad", "boss"),
    "pest": ("ants", "fruit flies", "moths", "mice"),
    "job": ("marketing", "data analyst", "nurse", "teacher", "project manager", "UX designer"),
    "month": ("January", "April", "July", "October"),
}  # fmt: skip
_FOLLOWUPS: Final = (
    "thanks! can you make it shorter?",
    "can you give me another option?",
    "what about if I {twist}?",
    "make it a bit more formal",
    "ok and how much would that cost roughly?",
    "great, now put that in a table",
    "hmm, that's not quite right, try again",
    "why?",
    "can you add more detail to the second point",
    "perfect, thank you",
)
_TWISTS: Final = ("only have an hour", "am on a tight budget", "have kids with me", "live abroad")


def _fill(ctx: Context, template: str) -> str:
    py = ctx.py
    out = template
    for key, values in _SLOTS.items():
        tag = "{" + key + "}"
        if tag in out:
            out = out.replace(tag, py.choice(values))
    return (
        out.replace("{n}", str(py.randint(2, 12)))
        .replace("{n2}", str(py.randint(5, 40)))
        .replace("{twist}", py.choice(_TWISTS))
    )


def everyday_prompt(ctx: Context) -> str:
    """An everyday request of an individual user."""
    text = _fill(ctx, ctx.py.choice(_EVERYDAY))
    r = ctx.py.random()
    if r < 0.25:
        return text[:1].upper() + text[1:]
    if r < 0.35:
        return text + "??"
    return text


def followup(ctx: Context) -> str:
    """A follow-up turn of a conversation."""
    return _fill(ctx, ctx.py.choice(_FOLLOWUPS))


@dataclass
class Home:
    """A household's connection: a stable IPv4, an IPv6 /64 (privacy addresses rotate inside)."""

    net: Network
    v4: str
    prefix64: str | None
    v6_share: float

    def address(self, ctx: Context) -> tuple[str, int]:
        """The address of one request from this home."""
        if self.prefix64 is not None and ctx.py.random() < self.v6_share:
            return ip_in(ctx.py, self.net, prefix64=self.prefix64), self.net.asn
        return self.v4, self.net.asn


def home_of(ctx: Context, country: str, v6_share: float = 0.3) -> Home:
    """A residential connection in ``country``."""
    net = residential_net(ctx.py, country)
    return Home(net, ip_in(ctx.py, net), prefix64_in(ctx.py, net), v6_share)


def person_rhythm(ctx: Context, country: str, spread: float) -> tuple[float, float]:
    """A person's time zone (``country``'s, give or take an hour) and mean sessions per day
    (the family's ``sessions_per_day`` times a log-normal personal factor of ``spread``)."""
    tz = COUNTRY_TZ[country] + ctx.py.uniform(-1.0, 1.0)
    return tz, ctx.p("sessions_per_day") * ctx.py.lognormvariate(0.0, spread)


def org_account(
    ctx: Context,
    org: Org,
    *,
    population: str,
    created_us: int,
    campaign_id: str | None = None,
) -> ZooAccount:
    """An enterprise account of ``org``: its id, domain, card and country."""
    return ctx.account(
        population=population,
        campaign_id=campaign_id,
        created_us=created_us,
        org_id=org.org_id,
        signup_channel="enterprise",
        email_domain=org.domain,
        payment_fingerprint=org.payment,
        country=org.country,
        tier="enterprise",
    )


@dataclass
class Client:
    """The software an account calls the API with."""

    user_agent: str
    fingerprint: str

    @staticmethod
    def sdk(ctx: Context, style: str | None = None) -> Client:
        """An API client library."""
        ua, fp = sdk_user_agent(ctx.py, style=style)
        return Client(ua, fp)

    @staticmethod
    def browser(ctx: Context) -> Client:
        """A browser."""
        ua, fp = browser_user_agent(ctx.py)
        return Client(ua, fp)


def address_of(ctx: Context, where: tuple[str, int] | Home) -> tuple[str, int]:
    """The address (IP, ASN) one request comes from: ``where`` itself, or an address of a home."""
    return where.address(ctx) if isinstance(where, Home) else where


def send(
    ctx: Context,
    acc: ZooAccount,
    ts: int,
    *,
    address: tuple[str, int],
    client: Client,
    model: str,
    messages: list[dict[str, str]],
    completion_tokens: int,
    status: int,
    api_key_id: str,
    response: str | None,
    latency_ms: float,
    prompt_tokens: int | None = None,
    endpoint: str = "/v1/chat/completions",
    reasoning: str | None = None,
    tools: list[str] | None = None,
) -> None:
    """Record one request of ``acc`` at ``ts`` from ``address`` with ``client``.

    ``prompt_tokens`` defaults to the estimate for ``messages``. Draws nothing: callers draw
    the values (address first) in the order their family has always drawn them."""
    ip, asn = address
    ctx.sink.add(
        ts=ts,
        account=acc,
        ip=ip,
        asn=asn,
        model=model,
        messages=messages,
        prompt_tokens=(
            estimate_tokens([m["content"] for m in messages])
            if prompt_tokens is None
            else prompt_tokens
        ),
        completion_tokens=completion_tokens,
        status=status,
        api_key_id=api_key_id,
        user_agent=client.user_agent,
        client_fingerprint=client.fingerprint,
        endpoint=endpoint,
        response=response,
        reasoning=reasoning,
        tools=tools,
        latency_ms=latency_ms,
    )


def chat_session(
    ctx: Context,
    acc: ZooAccount,
    t0: int,
    prompts: list[str],
    *,
    where: tuple[str, int] | Home,
    client: Client,
    system: str | None = None,
    model: str | None = None,
    gap_s: float = 45.0,
    reasoning_prob: float = 0.0,
    completion_median: float = 250.0,
    endpoint: str = "/v1/chat/completions",
    keep_history: bool = True,
    status_error_rate: float = 0.005,
) -> int:
    """A conversation of ``prompts`` (each turn resends the history). Returns its end time."""
    py = ctx.py
    history: list[dict[str, str]] = (
        [] if system is None else [{"role": "system", "content": system}]
    )
    t = t0
    key = acc.keys[0]
    for prompt in prompts:
        if not ctx.in_window(t):
            break
        use_reasoning = py.random() < reasoning_prob
        mdl = REASONING_MODEL if use_reasoning else (model or py.choice(MODELS[:2]))
        turn = {"role": "user", "content": prompt}
        msgs = [*history, turn] if keep_history else [*history[:1], turn]
        ct = ctx.lognormal_int(completion_median * (2.5 if use_reasoning else 1.0), 0.6, 5)
        resp = response_text(py)
        status = 200
        if py.random() < status_error_rate:
            status = py.choice((429, 500, 400))
            ct = 0
        send(
            ctx,
            acc,
            t,
            address=address_of(ctx, where),
            client=client,
            model=mdl,
            messages=msgs,
            completion_tokens=ct,
            status=status,
            api_key_id=key,
            endpoint=endpoint,
            response=resp if status == 200 else None,
            reasoning=reasoning_text(py) if use_reasoning and status == 200 else None,
            latency_ms=ctx.latency(ct),
        )
        if keep_history:
            history = [*msgs, {"role": "assistant", "content": resp}]
        t += ctx.gap_us(gap_s)
    return t

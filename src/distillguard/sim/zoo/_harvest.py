"""What campaigns want: a harvesting plan over the capability space, and harvesting requests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from distillguard.sim.zoo._base import Context, ZooAccount
from distillguard.sim.zoo._common import Client, Home, address_of, send
from distillguard.sim.zoo._net import (
    Network,
    ip_in,
    residential_net,
)
from distillguard.sim.zoo._text import (
    CAPABILITIES,
    DIFFICULTIES,
    harvest_prompt,
    make_item,
    paraphrase,
    reasoning_text,
    response_text,
)
from distillguard.sim.zoo._world import MODELS, REASONING_MODEL

__all__ = ["Plan", "ProxyPool", "campaign_id", "harvest"]

_TASKS = ("cot", "answer", "code", "grading", "rewrite", "tool_trace")


def campaign_id(py: random.Random) -> str:
    """An opaque campaign id."""
    return f"camp_{py.getrandbits(48):012x}"


@dataclass
class Plan:
    """A harvesting plan: a systematic sweep (capability x subtopic x difficulty) with a mix of
    tasks; accounts of one campaign take consecutive slices of it."""

    items: list[tuple[str, str, str]]
    tasks: list[str]
    weights: list[float]
    cursor: int = 0
    _py: random.Random = field(default_factory=random.Random, repr=False)

    @staticmethod
    def draw(
        ctx: Context,
        *,
        focus: dict[str, float] | None = None,
        capabilities: int = 4,
    ) -> Plan:
        """A plan over ``capabilities`` capabilities; ``focus`` weights the tasks."""
        py = ctx.py
        caps = py.sample(list(CAPABILITIES), k=min(capabilities, len(CAPABILITIES)))
        items = [(c, s, d) for c in caps for s in CAPABILITIES[c] for d in DIFFICULTIES]
        py.shuffle(items)
        base = {t: py.uniform(0.2, 1.0) for t in _TASKS}
        for k, v in (focus or {}).items():
            base[k] = v
        return Plan(items, list(base), list(base.values()), 0, random.Random(py.getrandbits(64)))

    def next_prompt(
        self, ctx: Context, *, paraphrase_rate: float, strength: float
    ) -> tuple[str, str]:
        """The plan's next request text and its task."""
        cap, sub, diff = self.items[self.cursor % len(self.items)]
        self.cursor += 1
        py = ctx.py
        task = py.choices(self.tasks, self.weights)[0]
        item = make_item(py, cap, sub, diff)
        text = harvest_prompt(py, item, task)
        if py.random() < paraphrase_rate:
            text = paraphrase(py, text, strength)
        return text, task


@dataclass
class ProxyPool:
    """A residential proxy pool: exit addresses in many countries' consumer networks."""

    exits: list[tuple[str, int]]

    @staticmethod
    def draw(py: random.Random, size: int) -> ProxyPool:
        """A pool of ``size`` exits."""
        exits = []
        for _ in range(size):
            net: Network = residential_net(py)
            exits.append((ip_in(py, net), net.asn))
        return ProxyPool(exits)

    def exit(self, py: random.Random) -> tuple[str, int]:
        """One exit, as chosen for one request."""
        return py.choice(self.exits)


def harvest(
    ctx: Context,
    acc: ZooAccount,
    ts: int,
    plan: Plan,
    *,
    where: tuple[str, int] | Home,
    client: Client,
    paraphrase_rate: float,
    strength: float = 0.5,
    system: str | None = None,
    tools: list[str] | None = None,
    status: int = 200,
    endpoint: str = "/v1/chat/completions",
) -> str:
    """One harvesting request of ``plan``. Returns its task."""
    py = ctx.py
    text, task = plan.next_prompt(ctx, paraphrase_rate=paraphrase_rate, strength=strength)
    msgs = [{"role": "user", "content": text}]
    if system is not None:
        msgs.insert(0, {"role": "system", "content": system})
    reasoning = task in ("cot", "grading") or py.random() < 0.2
    model = REASONING_MODEL if reasoning else MODELS[0]
    ct = ctx.lognormal_int(900.0 if reasoning else 600.0, 0.5, 20) if status == 200 else 0
    send(
        ctx,
        acc,
        ts,
        address=address_of(ctx, where),
        client=client,
        model=model,
        messages=msgs,
        completion_tokens=ct,
        status=status,
        api_key_id=acc.keys[0],
        endpoint=endpoint,
        response=response_text(py) if status == 200 else None,
        reasoning=reasoning_text(py) if reasoning and status == 200 else None,
        tools=tools,
        latency_ms=ctx.latency(ct),
    )
    return task

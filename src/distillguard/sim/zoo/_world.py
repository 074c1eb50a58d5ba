"""The shared world of one zoo instance: models, popular coding-agent tools, a public benchmark,
organisations, universities and resellers. Drawn once per seed; families meet in it (a campaign
copies the tools legitimate developers use, harvests through a reseller real customers use, or
takes over accounts of real organisations)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from distillguard.sim.zoo._net import (
    COUNTRY_TZ,
    Network,
    addresses_in,
    client_fingerprint,
    datacenter_net,
    residential_net,
    uid,
)
from distillguard.sim.zoo._text import CAPABILITIES, DIFFICULTIES, make_item

__all__ = ["BenchItem", "CodingTool", "Org", "Reseller", "World", "build_world"]

MODELS: Final = ("atlas-2", "atlas-2-mini", "atlas-2-think")
REASONING_MODEL: Final = "atlas-2-think"


@dataclass(frozen=True, slots=True)
class CodingTool:
    """A popular coding-agent client: every user sends its system prompt and tool schemas."""

    name: str
    system_prompt: str
    tools: tuple[str, ...]
    versions: tuple[str, ...]
    runtime: str

    def user_agent(self, version: str, os_: str) -> tuple[str, str]:
        """The tool's User-Agent at ``version`` on ``os_``, and its TLS fingerprint."""
        ua = f"{self.name}/{version} ({os_}) {self.runtime}"
        return ua, client_fingerprint(self.runtime.split("/")[0], os_)


@dataclass(frozen=True, slots=True)
class Org:
    """An organisation: its accounts share an org id, a card, an e-mail domain and an egress."""

    org_id: str
    name: str
    domain: str
    payment: str
    country: str
    egress: tuple[tuple[str, int], ...]
    tz: float


@dataclass(frozen=True, slots=True)
class Reseller:
    """An API reseller: one account per end customer, all traffic from its gateway."""

    name: str
    org_id: str
    payment: str
    domain: str
    egress: tuple[tuple[str, int], ...]
    user_agent: str
    fingerprint: str
    country: str


@dataclass(frozen=True, slots=True)
class BenchItem:
    """One prompt of a public benchmark (every lab sends the very same text)."""

    bench: str
    index: int
    prompt: str
    capability: str


@dataclass(frozen=True)
class World:
    """Everything families share within one zoo instance."""

    tools: tuple[CodingTool, ...]
    bench: tuple[BenchItem, ...]
    orgs: tuple[Org, ...]
    universities: tuple[Org, ...]
    resellers: tuple[Reseller, ...]


_TOOL_NAMES: Final = ("quillcode", "ternagent", "harborcli", "mossdev", "kestrel-code")
_TOOL_SETS: Final = (
    ("read_file", "write_file", "edit_file", "run_shell", "grep", "glob", "list_dir", "todo_write"),
    ("Read", "Write", "Edit", "Bash", "Grep", "Glob", "WebFetch", "TodoWrite", "Task"),
    ("view", "create", "str_replace", "execute", "search_files", "browse", "ask_user"),
    ("open_file", "apply_patch", "terminal", "find_symbol", "run_tests", "git_diff"),
)
_SYS_CLAUSES: Final = (
    "You are {name}, an interactive coding agent running in the user's terminal.",
    "You help users with software engineering tasks: fixing bugs, adding features, refactoring "
    "and explaining code.",
    "Use the tools available to you to inspect the repository before making changes; never "
    "guess file contents.",
    "When you run shell commands, explain briefly what each one does and why.",
    "Keep answers concise: fewer than four lines unless the user asks for detail.",
    "Follow the conventions of the existing code: look at neighbouring files, imports and tests.",
    "Never commit changes unless the user explicitly asks you to.",
    "Before editing a file, read it. After editing, run the project's tests and linters if you "
    "know how.",
    "Plan multi-step tasks with the todo tool and mark items done as you go.",
    "Do not introduce secrets or keys into the code; never log them.",
    "If a command fails, read the error output and fix the cause rather than retrying blindly.",
    "Prefer editing existing files to creating new ones. Do not create documentation unless asked.",
    "Reference code as path:line so the user can navigate to it.",
    "Refuse to write code that is clearly intended to be malicious.",
    "Environment: working directory, platform and date are given below.",
)


def _coding_tool(py: random.Random, name: str, tools: tuple[str, ...]) -> CodingTool:
    clauses = list(_SYS_CLAUSES)
    py.shuffle(clauses)
    body = " ".join(c.format(name=name) for c in clauses[: py.randint(11, len(clauses))])
    schema = " ".join(
        f"<tool name='{t}'>{t} tool: parameters as JSON schema.</tool>" for t in tools
    )
    major = py.randint(0, 2)
    versions = tuple(
        f"{major}.{minor}.{patch}"
        for minor in range(py.randint(3, 8))
        for patch in range(py.randint(2, 6))
    )
    runtime = py.choice(("node/v20.11.1", "node/v22.3.0", "python/3.12.4", "bun/1.1.20"))
    return CodingTool(name, f"{body}\n\n# Tools\n{schema}", tools, versions, runtime)


_EDU_ASN: Final = {"DE": 680, "GB": 786, "FR": 2200, "NL": 1103, "JP": 2907}


def _org(py: random.Random, kind: str, name: str) -> Org:
    country = py.choice(("US", "US", "US", "GB", "DE", "FR", "NL", "JP", "IN", "CA", "SG"))
    if kind == "university":
        domain = f"{name}.edu" if country == "US" else f"{name}.ac.{country.lower()}"
    else:
        domain = f"{name}.{py.choice(('com', 'io', 'ai', 'co'))}"
    net: Network = residential_net(py, country) if py.random() < 0.3 else datacenter_net(py)
    egress = tuple(addresses_in(py, net, 2, 5))
    if kind == "university":  # a campus NAT: a few addresses of one block of its network
        asn = _EDU_ASN.get(country) or py.choice((3, 25, 32, 87, 1312))
        block = f"{py.randint(128, 160)}.{py.randint(1, 254)}.{py.randint(0, 255)}"
        egress = tuple((f"{block}.{2 + i}", asn) for i in range(py.randint(2, 6)))
    return Org(
        org_id=uid(py, "org_", 16),
        name=name,
        domain=domain,
        payment=uid(py, "pm_", 24),
        country=country,
        egress=egress,
        tz=COUNTRY_TZ[country],
    )


_COMPANY_STEMS: Final = (
    "northwind", "brightlane", "cobaltworks", "meridianhealth", "tallyfin", "orbitlogistics",
    "greenleafretail", "sablesecurity", "pinecrestlegal", "veloxmedia", "lumenbank", "quarryai",
    "harbourinsure", "atlasfreight", "novapharma", "kiteanalytics",
)  # fmt: skip
_UNI_STEMS: Final = (
    "eastbrook",
    "uni-halden",
    "kessler",
    "marisstate",
    "tokai-tech",
    "rhinevalley",
)
_RESELLERS: Final = ("relayhub", "tokenbridge", "apimux", "llmgate")


def build_world(py: random.Random) -> World:
    """Draw the shared world of one zoo instance."""
    tools = tuple(
        _coding_tool(py, name, py.choice(_TOOL_SETS))
        for name in py.sample(_TOOL_NAMES, k=py.randint(2, 3))
    )
    bench: list[BenchItem] = []
    for bench_name in py.sample(
        ("mmlu-x", "gsm-hard", "codecontest-lite", "arc-pro", "lawbench"), 3
    ):
        caps = list(CAPABILITIES)
        for i in range(py.randint(80, 160)):
            cap = py.choice(caps)
            item = make_item(py, cap, py.choice(CAPABILITIES[cap]), py.choice(DIFFICULTIES))
            prompt = f"[{bench_name} #{i}] {item.problem[:1].upper()}{item.problem[1:]}."
            if py.random() < 0.5:
                prompt += " Answer with the letter of the correct option: A, B, C or D."
            bench.append(BenchItem(bench_name, i, prompt, cap))
    orgs = tuple(_org(py, "company", n) for n in py.sample(_COMPANY_STEMS, k=12))
    unis = tuple(_org(py, "university", n) for n in py.sample(_UNI_STEMS, k=4))
    resellers = []
    for name in py.sample(_RESELLERS, k=3):
        net = datacenter_net(py)
        ver = f"{py.randint(1, 4)}.{py.randint(0, 20)}.{py.randint(0, 9)}"
        resellers.append(
            Reseller(
                name=name,
                org_id=uid(py, "org_", 16),
                payment=uid(py, "pm_", 24),
                domain=f"{name}.io",
                egress=tuple(addresses_in(py, net, 3, 8)),
                user_agent=f"{name}-gateway/{ver}",
                fingerprint=client_fingerprint("go", name),
                country=py.choice(("US", "SG", "DE", "HK")),
            )
        )
    return World(tools, tuple(bench), orgs, unis, tuple(resellers))

"""``distillguard demo``: the whole story end to end, on embedded defaults, in one command.

The demo runs the same commands a user would, printing each before running it, in a folder of
its own (``--out``): keys, simulated traffic with distillation campaigns, validation, ingest into
the SQLite store and the ledger, a ledger audit, an inclusion proof verified offline, and every
later stage that exists (campaign scan, evaluation...). Each stage is one :class:`Step`.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.rule import Rule

from distillguard.cli._common import console, state_of

__all__ = ["STEPS", "DemoContext", "Step", "register"]


@dataclass(frozen=True)
class DemoContext:
    """Where the demo writes: ``out`` holds everything, ``home`` the store and keyring."""

    out: Path
    seed: int
    scenario: str

    @property
    def home(self) -> Path:
        """DistillGuard's home folder for the demo (store, keyring, quarantine)."""
        return self.out / "home"

    @property
    def log(self) -> Path:
        """The simulated exchange log."""
        return self.out / "log"


@dataclass(frozen=True)
class Step:
    """One stage of the demo: a title, what it shows, and the command line it runs."""

    title: str
    why: str
    argv: Callable[[DemoContext], list[str] | None]  # None: skip this step
    ok_codes: tuple[int, ...] = (0,)


def _first_exchange_id(ctx: DemoContext) -> str | None:
    from distillguard.store import open_store

    with open_store(f"sqlite:///{ctx.home / 'store.sqlite'}") as store:
        for batch in store.iter_exchanges(batch_size=1):
            return batch[0].exchange.exchange_id
    return None


def _prove(ctx: DemoContext) -> list[str] | None:
    exchange_id = _first_exchange_id(ctx)
    if exchange_id is None:
        return None
    return ["ledger", "prove", exchange_id, "--out", str(ctx.out / "proof.json")]


def _keys_init(ctx: DemoContext) -> list[str] | None:
    if (ctx.home / "keyring.json").exists():
        return None
    return ["keys", "init"]


STEPS: list[Step] = [
    Step(
        "Keys",
        "A keyring with the ledger signing key, the passport issuer key and the watermark "
        "secret (owner-only file).",
        _keys_init,
    ),
    Step(
        "Traffic",
        "Simulated API traffic: legitimate populations (developers, apps, enterprise batch "
        "jobs, shared NAT, benchmark runners, resellers) and distillation campaigns.",
        lambda c: [
            "simulate",
            "--scenario",
            c.scenario,
            "--out",
            str(c.log),
            "--seed",
            str(c.seed),
            "--overwrite",
        ],
    ),
    Step(
        "Validate",
        "Every record checked against exchange log format v1; bad ones are quarantined.",
        lambda c: ["validate", str(c.log)],
    ),
    Step(
        "Ingest",
        "Records into the SQLite store; every exchange becomes a leaf of the Merkle ledger and "
        "a signed checkpoint is published.",
        lambda c: ["ingest", str(c.log)],
    ),
    Step(
        "Scan",
        "Campaign detection across accounts: behaviour, templates, elicitation, shared "
        "infrastructure and coordination, a link graph and its communities.",
        lambda c: ["scan", str(c.log), "--out", str(c.out / "scan")],
    ),
    Step(
        "Evaluate",
        "The scan against the simulator's labels, beside the per-account baselines of the "
        "literature (PRADA, SEAT).",
        lambda c: [
            "eval-scan",
            str(c.out / "scan"),
            "--labels",
            str(c.log / "labels.parquet"),
        ],
    ),
    Step(
        "Audit",
        "The ledger recomputed from the stored records and every signed checkpoint checked.",
        lambda c: ["ledger", "audit"],
    ),
    Step(
        "Prove",
        "A self-contained inclusion proof for one exchange, as handed to a third party.",
        _prove,
    ),
    Step(
        "Public key",
        "The public keys a third party needs (JWK Set), and nothing secret.",
        lambda c: ["keys", "export-public", "--out", str(c.out / "public-keys.json")],
    ),
    Step(
        "Verify offline",
        "The proof verified with nothing but the bundle and the public key.",
        lambda c: [
            "ledger",
            "verify-inclusion",
            str(c.out / "proof.json"),
            "--public-key",
            str(c.out / "public-keys.json"),
        ],
    ),
    Step(
        "Report",
        "The evidence report (self-contained HTML: per campaign the signals with p-values, a "
        "timeline, the shared infrastructure, redacted exchanges) and the evidence bundle (cited "
        "records, inclusion proofs, signed checkpoints, keys, results; the records go on hold).",
        lambda c: [
            "report",
            "--scan",
            str(c.out / "scan"),
            "--out",
            str(c.out / "report" / "report.html"),
            "--bundle",
            str(c.out / "evidence.zip"),
        ],
    ),
    Step(
        "Verify the bundle",
        "What a third party runs: every hash, the manifest signature, every inclusion proof and "
        "checkpoint, offline, with the provider's published public keys.",
        lambda c: [
            "verify-bundle",
            str(c.out / "evidence.zip"),
            "--public-key",
            str(c.out / "public-keys.json"),
        ],
    ),
]


@contextmanager
def _demo_env(ctx: DemoContext) -> Iterator[None]:
    """Point DistillGuard's home at the demo folder for the duration of the demo."""
    saved = {k: os.environ.get(k) for k in ("DISTILLGUARD_HOME", "DISTILLGUARD_STORE__URL")}
    os.environ["DISTILLGUARD_HOME"] = str(ctx.home)
    os.environ.pop("DISTILLGUARD_STORE__URL", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything.")] = Path(
        "demo-output"
    ),
    scenario: Annotated[str, typer.Option(help="Simulator scenario.")] = "small",
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 2026,
) -> None:
    """Run DistillGuard end to end on embedded defaults and say where the results are.

    Example: `distillguard demo --out demo-output`
    """
    from distillguard.cli.main import main as run_cli

    state = state_of(ctx)
    context = DemoContext(out=out.resolve(), seed=seed, scenario=scenario)
    context.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done: list[str] = []
    with _demo_env(context):
        for number, step in enumerate(STEPS, start=1):
            argv = step.argv(context)
            if argv is None:
                continue
            console.print(Rule(f"[bold]{number}. {step.title}[/]", align="left"))
            console.print(f"[dim]{step.why}[/]")
            console.print(f"[cyan]$ distillguard {shlex.join(argv)}[/]")
            prefix = ["--quiet"] if state.quiet else []
            code = run_cli([*prefix, *argv])
            if code not in step.ok_codes:
                raise typer.Exit(code)
            done.append(step.title)
    seconds = time.perf_counter() - started
    console.print(
        Panel.fit(
            f"Done in {seconds:.0f} s ({', '.join(done)}).\n\n"
            "  log/               simulated traffic (format v1) and labels.parquet\n"
            "  home/store.sqlite  the store and the ledger\n"
            "  home/keyring.json  the keys (owner-only)\n"
            "  scan/              account_scores.parquet/.csv and campaigns.json\n"
            "  proof.json         an inclusion proof for one exchange\n"
            "  public-keys.json   what a third party needs to verify it",
            title="DistillGuard demo",
        )
    )
    # Paths on lines of their own, never wrapped, so that they can be copied.
    console.print(f"Results are in {context.out}", soft_wrap=True)
    console.print(f"Try: DISTILLGUARD_HOME={context.home} distillguard ledger head", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the main command."""
    app.command("demo")(demo)

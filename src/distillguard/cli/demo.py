"""``distillguard demo``: the whole story end to end, on embedded defaults, in one command.

The demo runs the same commands a user would, printing each before running it, in a folder of
its own (``--out``): keys, simulated traffic with distillation campaigns, validation, ingest into
the SQLite store and the ledger, a ledger audit, an inclusion proof verified offline, and every
later stage that exists (campaign scan, evaluation...). Each stage is one :class:`Step`.
"""

from __future__ import annotations

import io
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.panel import Panel
from rich.rule import Rule

from distillguard.cli._common import console, state_of

__all__ = ["STEPS", "DemoContext", "Step", "register", "source_checkout"]


@dataclass(frozen=True)
class DemoContext:
    """Where the demo writes: ``out`` holds everything, ``home`` the store and keyring."""

    out: Path
    seed: int
    scenario: str
    lab_preset: str = "quick"
    attribution: bool = True

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
    """One stage of the demo: a title, what it shows, and the command line it runs.

    ``argv`` returns the command line (None: skip the step). ``around``, when given, runs the
    command inside a context (e.g. with a gateway server running) and ``after`` turns its output
    into files later steps use; with ``capture``, the command's ``--json`` output is written to
    that file instead of the screen. With ``python``, ``argv`` is a ``python`` command line run
    in the source checkout (an experiment, see :func:`source_checkout`), and ``skipped`` says why
    the step did not run when ``argv`` returns None.
    """

    title: str
    why: str
    argv: Callable[[DemoContext], list[str] | None]
    ok_codes: tuple[int, ...] = (0,)
    around: Callable[[DemoContext], AbstractContextManager[None]] | None = None
    after: Callable[[DemoContext], None] | None = None
    capture: Callable[[DemoContext], Path] | None = None
    python: bool = False
    skipped: str | None = None


def source_checkout() -> Path | None:
    """The source checkout DistillGuard runs from (an editable install) when it holds the
    experiments (``experiments/`` beside ``src/``), else None (an installed wheel has none)."""
    import distillguard

    root = Path(distillguard.__file__).resolve().parents[2]
    lab = root / "experiments" / "radioactivity_lab" / "__init__.py"
    return root if lab.is_file() else None


def _lab(ctx: DemoContext) -> list[str] | None:
    if source_checkout() is None:
        return None
    return [
        "-m",
        "experiments.radioactivity_lab",
        "--preset",
        ctx.lab_preset,
        "--out",
        str(ctx.out / "lab"),
    ]


def _run_python(argv: list[str], *, quiet: bool) -> int:
    """``python ARGV`` in the source checkout (so that ``experiments`` imports)."""
    root = source_checkout()
    assert root is not None  # _lab returned a command line
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    extra = ["--quiet"] if quiet else []
    done = subprocess.run(
        [sys.executable, *argv, *extra], cwd=root, env={**os.environ, "PYTHONPATH": path}
    )
    return done.returncode


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _gateway(ctx: DemoContext) -> Iterator[None]:
    """Run ``distillguard serve`` (stub upstream, embedded store) while the step runs."""
    import httpx

    port = int(os.environ.get("DG_DEMO_PORT", "0")) or _free_port()
    env = {**os.environ, "DISTILLGUARD_GATEWAY__TRUST_FORWARDED_FOR": "true"}
    log = (ctx.out / "gateway.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "distillguard.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise typer.Exit(1)
            time.sleep(0.5)
        os.environ["DG_DEMO_GATEWAY"] = url
        yield
    finally:
        os.environ.pop("DG_DEMO_GATEWAY", None)
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _replay(ctx: DemoContext) -> list[str]:
    return [
        "simulate",
        "--scenario",
        "tiny",
        "--out",
        str(ctx.out / "gateway-traffic"),
        "--seed",
        str(ctx.seed),
        "--overwrite",
        "--target",
        os.environ.get("DG_DEMO_GATEWAY", "http://127.0.0.1:8080"),
        "--rate",
        "400",
        "--limit",
        "1500",
        "--concurrency",
        "16",
        "--model",
        "stub-1",
    ]


def _radioactivity_file(ctx: DemoContext) -> None:
    """The lab's student trained on harvested (watermarked) outputs, as a radioactivity result.

    The suspect is the student fine-tuned on 100% harvested answers, read in open mode; its
    control is the independent model under the same key.
    """
    from distillguard.results import RADIOACTIVITY_FORMAT

    lab = orjson.loads((ctx.out / "lab" / "lab.json").read_bytes())
    curves = {(c["subject"], c["mode"]): c for c in lab["curves"]}
    suspect = curves.get(("student-100%", "open"))
    control = curves.get(("independent", "open"))
    if suspect is None:
        return
    alpha = 0.01
    if control is not None and control["p_value"] <= alpha:
        verdict = "inconclusive (control rejected)"
    else:
        verdict = "radioactive" if suspect["p_value"] <= alpha else "not detected"
    result = {
        "format": RADIOACTIVITY_FORMAT,
        "alpha": alpha,
        "verdict": verdict,
        "suspect": {**suspect, "role": "suspect"},
        "control": None if control is None else {**control, "role": "control"},
        "tracing": None,
    }
    (ctx.out / "radioactivity.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def _shared_outputs() -> Path | None:
    from distillguard.sim import find_instruction_dir

    return find_instruction_dir()


def _attribute(ctx: DemoContext) -> list[str] | None:
    if not ctx.attribution:
        return None
    outputs = _shared_outputs()
    if outputs is None or not (outputs.parent / "lineage.json").exists():
        return None  # the real model outputs are not on this machine
    return [
        "fingerprint",
        "attribute",
        "--references",
        str(outputs),
        "--families",
        str(outputs.parent / "lineage.json"),
        "--suspect",
        str(outputs / "alpaca-7b.jsonl.gz"),
        "--alpha",
        "0.01",
    ]


def _report(ctx: DemoContext) -> list[str]:
    argv = [
        "report",
        "--scan",
        str(ctx.out / "scan"),
        "--out",
        str(ctx.out / "report" / "report.html"),
        "--bundle",
        str(ctx.out / "evidence.zip"),
    ]
    if (ctx.out / "radioactivity.json").exists():
        argv += ["--radioactivity", str(ctx.out / "radioactivity.json")]
    if (ctx.out / "attribution.json").exists():
        argv += ["--fingerprint", str(ctx.out / "attribution.json")]
    return argv


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
        "Gateway",
        "The OpenAI-compatible gateway in front of the model: each simulated account calls it "
        "with its own agent passport and RFC 9421 signed requests; every exchange is verified, "
        "rate-limited, watermarked, scored online and recorded in the store and the ledger "
        "before the answer.",
        _replay,
        around=_gateway,
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
        "Radioactivity",
        "The lab: a small teacher model, its watermarked answers harvested, students fine-tuned "
        "on them, and the test of whether each learned from our watermark (open and closed "
        "mode, with controls).",
        _lab,
        after=_radioactivity_file,
        python=True,
        skipped="the lab is an experiment: it runs from a source checkout (experiments/)",
    ),
    Step(
        "Attribution",
        "Behavioural fingerprints of real model outputs (AlpacaEval): which reference family did "
        "a suspect (Alpaca 7B) learn from, with a false-accusation rate of 1%.",
        _attribute,
        capture=lambda c: c.out / "attribution.json",
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
        "timeline, the shared infrastructure, redacted exchanges, the radioactivity and "
        "attribution results) and the evidence bundle (cited records, inclusion proofs, signed "
        "checkpoints, keys, results; the records go on legal hold).",
        _report,
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
    lab_preset: Annotated[
        str, typer.Option(help="Radioactivity lab preset: tiny | quick | full.")
    ] = "quick",
    attribution: Annotated[
        bool,
        typer.Option(
            "--attribution/--no-attribution",
            help="Attribute a suspect with fingerprints (needs the AlpacaEval outputs).",
        ),
    ] = True,
) -> None:
    """Run DistillGuard end to end on embedded defaults and say where the results are.

    Example: `distillguard demo --out demo-output`
    """
    from distillguard.cli.main import main as run_cli

    state = state_of(ctx)
    context = DemoContext(
        out=out.resolve(),
        seed=seed,
        scenario=scenario,
        lab_preset=lab_preset,
        attribution=attribution,
    )
    context.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done: list[str] = []
    with _demo_env(context):
        for number, step in enumerate(STEPS, start=1):
            argv = step.argv(context)
            if argv is None:
                if step.skipped:
                    console.print(f"[dim]{number}. {step.title}: skipped ({step.skipped})[/]")
                continue
            console.print(Rule(f"[bold]{number}. {step.title}[/]", align="left"))
            console.print(f"[dim]{step.why}[/]")
            program = "python" if step.python else "distillguard"
            console.print(f"[cyan]$ {program} {shlex.join(argv)}[/]")
            prefix = ["--quiet"] if state.quiet else []
            with step.around(context) if step.around else nullcontext():
                final = step.argv(context) or argv  # again inside `around`: may read the env
                if step.python:
                    code = _run_python(final, quiet=state.quiet)
                elif step.capture is not None:  # the command's --json output is the result file
                    buffer = io.StringIO()
                    with redirect_stdout(buffer):
                        code = run_cli(["--json", *prefix, *final])
                    step.capture(context).write_text(buffer.getvalue())
                else:
                    code = run_cli([*prefix, *final])
            if code not in step.ok_codes:
                raise typer.Exit(code)
            if step.after is not None:
                step.after(context)
            done.append(step.title)
    seconds = time.perf_counter() - started
    console.print(
        Panel.fit(
            f"Done in {seconds:.0f} s ({', '.join(done)}).\n\n"
            "  log/               simulated traffic (format v1) and labels.parquet\n"
            "  home/store.sqlite  the store and the ledger\n"
            "  home/keyring.json  the keys (owner-only)\n"
            "  scan/              account_scores.parquet/.csv and campaigns.json\n"
            "  lab/               the radioactivity lab: lab.md, lab.png, lab.json\n"
            "  attribution.json   the fingerprint attribution of a suspect\n"
            "  proof.json         an inclusion proof for one exchange\n"
            "  public-keys.json   what a third party needs to verify it\n"
            "  report/report.html the evidence report; evidence.zip the bundle",
            title="DistillGuard demo",
        )
    )
    # Paths on lines of their own, never wrapped, so that they can be copied.
    console.print(f"Results are in {context.out}", soft_wrap=True)
    report = context.out / "report" / "report.html"
    if report.exists():
        console.print(f"Open the report: {report.as_uri()}", soft_wrap=True)
    console.print(f"Try: DISTILLGUARD_HOME={context.home} distillguard ledger head", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the main command."""
    app.command("demo")(demo)

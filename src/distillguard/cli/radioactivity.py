"""``distillguard radioactivity open|closed|texts``: test whether a suspect model learned from our
watermarked outputs (open weights, an API, or texts), with a control run beside it.

Each mode is one command; the options they share (key, control, filter, tracing, output) are
grouped under the same headings in every ``--help``. The protocol itself (what is asked, what is
scored under which key, the verdict) is :func:`distillguard.radioactivity.run_test`; this module
only turns options into its arguments and prints the report.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from distillguard.cli._common import AppState, console, emit_json, state_of
from distillguard.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from distillguard.keyring import Keyring, WatermarkKey
    from distillguard.radioactivity import (
        CurvePoint,
        Encoder,
        KgramFilter,
        RadioactivityReport,
        Subject,
        TokenText,
    )
    from distillguard.watermark import WatermarkScheme

__all__ = ["register"]

KEY = "Key and control"
SCORING = "Scoring"
ASKING = "Asking (own answers / endpoint)"
OUTPUT = "Output"

# --- the options every mode shares --------------------------------------------------------------

KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key", "-k", help="Watermark key id (default: the current key).", rich_help_panel=KEY
    ),
]
ControlKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--control-key",
        help="Control: the suspect under this other key (default: a fresh random key).",
        rich_help_panel=KEY,
    ),
]
ControlTextsOpt = Annotated[
    Path | None,
    typer.Option(
        "--control-texts",
        help="Control: texts known clean, under the same key.",
        rich_help_panel=KEY,
    ),
]
FieldOpt = Annotated[
    str | None,
    typer.Option(
        "--field", help="Text field of JSONL/Parquet/CSV records.", rich_help_panel=SCORING
    ),
]
FilterOpt = Annotated[
    Path | None,
    typer.Option(
        "--filter",
        help="Our watermarked outputs: score only their frequent k-grams.",
        rich_help_panel=SCORING,
    ),
]
FilterTopOpt = Annotated[
    int, typer.Option("--filter-top", help="k-grams kept by the filter.", rich_help_panel=SCORING)
]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(
        "--tokenizer", help="word | byte | local HF tokenizer folder.", rich_help_panel=SCORING
    ),
]
AlphaOpt = Annotated[
    float, typer.Option("--alpha", help="Significance level.", rich_help_panel=SCORING)
]
TraceOpt = Annotated[
    bool,
    typer.Option(
        "--trace", help="Decode the multi-bit payload (MPAC keys).", rich_help_panel=SCORING
    ),
]
PayloadsOpt = Annotated[
    Path | None,
    typer.Option(
        "--payloads", help="Tracing: 'label,payload' candidates.", rich_help_panel=SCORING
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Write the JSON result here.", rich_help_panel=OUTPUT)
]
PlotOpt = Annotated[
    Path | None,
    typer.Option("--plot", help="Write the p-value curves (PNG).", rich_help_panel=OUTPUT),
]
# asking: open mode's own answers and closed mode's questions
MaxTokensOpt = Annotated[
    int, typer.Option("--max-tokens", help="Answer length.", rich_help_panel=ASKING)
]
SamplesOpt = Annotated[
    int,
    typer.Option(
        "--samples",
        help="Sampled answers per prompt; repeats count once.",
        min=0,
        rich_help_panel=ASKING,
    ),
]
TemperatureOpt = Annotated[
    float,
    typer.Option(
        "--temperature",
        help="Temperature of the sampled answers (low: memorised answers lie on the most "
        "likely paths).",
        min=0.0,
        rich_help_panel=ASKING,
    ),
]
GreedyOpt = Annotated[
    bool,
    typer.Option(
        "--greedy/--no-greedy",
        help="Also take one greedy (temperature 0) answer per prompt.",
        rich_help_panel=ASKING,
    ),
]


@dataclass(frozen=True)
class _Shared:
    """The options every mode shares, once parsed."""

    key: str | None
    control_key: str | None
    control_texts: Path | None
    field: str | None
    filter_texts: Path | None
    filter_top: int
    tokenizer: str | None
    alpha: float
    trace: bool
    payloads: Path | None
    out: Path | None
    plot: Path | None


@dataclass(frozen=True)
class _Setup:
    """What the options resolve to before anything is asked or read."""

    state: AppState
    ring: Keyring
    scheme: WatermarkScheme
    control_key: WatermarkKey
    control_scheme: WatermarkScheme

    def on_point(self, role: str, point: CurvePoint) -> None:
        """Print the pooled test after each batch (not with --json / --quiet)."""
        if not self.state.json_output and not self.state.quiet:
            console.print(
                f"  {role}: {point.n_texts} texts, {point.n_scored} tokens scored, "
                f"p = {point.p_value:.3e}"
            )


def _read_texts(path: Path, field: str | None) -> list[str]:
    from distillguard.watermark import iter_records

    texts = [t for _, t in iter_records(path, text_field=field) if t]
    if not texts:
        raise InputError(f"{path} holds no texts", hint="check --field")
    return texts


def _payloads(path: Path) -> dict[str, int]:
    """``label,payload`` lines (payload decimal or 0x-hex)."""
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, _, value = line.partition(",")
        try:
            out[label.strip()] = int(value.strip(), 0)
        except ValueError:
            raise InputError(f"{path}:{n}: expected 'label,payload', got {line!r}") from None
    return out


def _setup(ctx: typer.Context, shared: _Shared) -> _Setup:
    from distillguard.keyring import WatermarkKey, open_keyring
    from distillguard.watermark import build_scheme

    state = state_of(ctx)
    settings = state.settings()
    ring = open_keyring(settings)
    wm_settings = settings.watermark
    if shared.trace and wm_settings.scheme != "mpac":
        wm_settings = wm_settings.model_copy(update={"scheme": "mpac"})
    scheme = build_scheme(wm_settings, ring.watermark_key(shared.key))
    if shared.control_key:
        ctl_key = ring.watermark_key(shared.control_key)
    else:
        ctl_key = WatermarkKey(
            kid="control-random", created_at=datetime.now(UTC), secret=secrets.token_bytes(32)
        )
    return _Setup(state, ring, scheme, ctl_key, build_scheme(wm_settings, ctl_key))


def _token_texts(encode: Encoder, texts: list[str]) -> list[TokenText]:
    from distillguard.radioactivity import TokenText

    return [TokenText.of(encode(t)) for t in texts]


def _finish(
    setup: _Setup,
    shared: _Shared,
    suspect: Subject,
    control: Subject | None,
    kgram_filter: KgramFilter | None,
) -> None:
    """Run the protocol and write, plot and print the report."""
    from distillguard.radioactivity import plot_curves, run_test

    candidates = _payloads(shared.payloads) if shared.trace and shared.payloads else None
    report = run_test(
        suspect,
        setup.scheme,
        control=control if control is not None else setup.control_scheme,
        alpha=shared.alpha,
        kgram_filter=kgram_filter,
        trace=shared.trace,
        candidates=candidates,
        on_point=setup.on_point,
        extra={"key_id": setup.scheme.key_id, "control_key_id": setup.control_key.kid},
    )
    if shared.out is not None:
        report.write_json(shared.out)
    if shared.plot is not None:
        plot_curves(
            [r for r in (report.suspect, report.control) if r is not None],
            shared.plot,
            alpha=shared.alpha,
        )
    if setup.state.json_output:
        emit_json({"ok": True, **report.to_dict()})
        return
    _print(report)


def _filter(shared: _Shared, scheme: WatermarkScheme, encode: Encoder) -> KgramFilter | None:
    from distillguard.radioactivity import KgramFilter

    if shared.filter_texts is None:
        return None
    return KgramFilter.from_texts(
        _token_texts(encode, _read_texts(shared.filter_texts, shared.field)),
        width=scheme.context_width,
        top=shared.filter_top,
    )


def _text_encoder(shared: _Shared, setup: _Setup) -> Encoder:
    from distillguard.watermark import load_tokenizer

    return load_tokenizer(shared.tokenizer or setup.state.settings().watermark.tokenizer).encode


def _texts_control(shared: _Shared, encode: Encoder) -> Subject | None:
    from distillguard.radioactivity import TextsSubject

    if shared.control_texts is None:
        return None
    texts = _token_texts(encode, _read_texts(shared.control_texts, shared.field))
    return TextsSubject(name=str(shared.control_texts), texts=texts)


# --- the three modes ----------------------------------------------------------------------------


def texts_cmd(
    ctx: typer.Context,
    texts: Annotated[Path, typer.Argument(help="Texts the suspect wrote (file or folder).")],
    key: KeyOpt = None,
    control_key: ControlKeyOpt = None,
    control_texts: ControlTextsOpt = None,
    field: FieldOpt = None,
    filter_texts: FilterOpt = None,
    filter_top: FilterTopOpt = 10_000,
    tokenizer: TokenizerOpt = None,
    alpha: AlphaOpt = 1e-3,
    trace: TraceOpt = False,
    payloads: PayloadsOpt = None,
    out: OutOpt = None,
    plot: PlotOpt = None,
) -> None:
    """Score texts a suspect wrote for our watermark, with a control.

    Example: `distillguard radioactivity texts answers.jsonl --field output --trace
    --payloads accounts.csv --out radio.json`
    """
    from distillguard.radioactivity import TextsSubject

    shared = _Shared(
        key,
        control_key,
        control_texts,
        field,
        filter_texts,
        filter_top,
        tokenizer,
        alpha,
        trace,
        payloads,
        out,
        plot,
    )
    setup = _setup(ctx, shared)
    encode = _text_encoder(shared, setup)
    flt = _filter(shared, setup.scheme, encode)
    suspect = TextsSubject(name=str(texts), texts=_token_texts(encode, _read_texts(texts, field)))
    _finish(setup, shared, suspect, _texts_control(shared, encode), flt)


def closed_cmd(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="The suspect's OpenAI-compatible base URL.")],
    prompts: Annotated[
        Path,
        typer.Option(
            "--prompts",
            help="Prompts to ask (e.g. what the harvesting accounts asked).",
            rich_help_panel=ASKING,
        ),
    ],
    endpoint_model: Annotated[
        str,
        typer.Option(
            "--endpoint-model",
            help="The 'model' field sent to the endpoint.",
            rich_help_panel=ASKING,
        ),
    ] = "suspect",
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding the endpoint's key.",
            rich_help_panel=ASKING,
        ),
    ] = None,
    max_tokens: MaxTokensOpt = 128,
    samples: SamplesOpt = 1,
    temperature: TemperatureOpt = 0.2,
    greedy: GreedyOpt = True,
    control_endpoint: Annotated[
        str | None,
        typer.Option(
            "--control-endpoint", help="Control: an endpoint known clean.", rich_help_panel=KEY
        ),
    ] = None,
    key: KeyOpt = None,
    control_key: ControlKeyOpt = None,
    control_texts: ControlTextsOpt = None,
    field: FieldOpt = None,
    filter_texts: FilterOpt = None,
    filter_top: FilterTopOpt = 10_000,
    tokenizer: TokenizerOpt = None,
    alpha: AlphaOpt = 1e-3,
    trace: TraceOpt = False,
    payloads: PayloadsOpt = None,
    out: OutOpt = None,
    plot: PlotOpt = None,
) -> None:
    """Ask a suspect's API our prompts and score its answers for our watermark, with a control.

    Example: `distillguard radioactivity closed https://suspect/v1 --prompts probes.jsonl
    --filter harvest.jsonl --out radio.json`
    """
    from distillguard.radioactivity import (
        ClosedSubject,
        EndpointConfig,
        SuspectClient,
        answer_plan,
    )

    shared = _Shared(
        key,
        control_key,
        control_texts,
        field,
        filter_texts,
        filter_top,
        tokenizer,
        alpha,
        trace,
        payloads,
        out,
        plot,
    )
    setup = _setup(ctx, shared)
    encode = _text_encoder(shared, setup)
    flt = _filter(shared, setup.scheme, encode)
    plan = answer_plan(
        _read_texts(prompts, field), samples=samples, temperature=temperature, greedy=greedy
    )
    if not plan:
        raise InputError("nothing to ask: give --samples >= 1 or keep --greedy")
    asked = [p for ps, _ in plan for p in ps]
    temps = [t for ps, t in plan for _ in ps]

    def subject(url: str) -> ClosedSubject:
        client = SuspectClient(
            EndpointConfig(
                url=url,
                model=endpoint_model,
                api_key=os.environ.get(api_key_env) if api_key_env else None,
                max_tokens=max_tokens,
            )
        )
        return ClosedSubject(
            name=url, client=client, prompts=asked, encode=encode, temperatures=temps
        )

    control = subject(control_endpoint) if control_endpoint else _texts_control(shared, encode)
    _finish(setup, shared, subject(endpoint), control, flt)


def open_cmd(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="The suspect: a local model folder.")],
    read: Annotated[
        Path | None,
        typer.Option(
            "--read", help="Texts to feed (ideally not watermarked by us).", rich_help_panel=ASKING
        ),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="Prompts (e.g. what the harvesting accounts asked): the model's own answers "
            "to them are read.",
            rich_help_panel=ASKING,
        ),
    ] = None,
    max_tokens: MaxTokensOpt = 128,
    samples: SamplesOpt = 1,
    temperature: TemperatureOpt = 0.2,
    greedy: GreedyOpt = True,
    skip_echo: Annotated[
        bool,
        typer.Option(
            "--skip-echo", help="Skip predictions equal to the real token.", rich_help_panel=SCORING
        ),
    ] = False,
    control_model: Annotated[
        Path | None,
        typer.Option(
            "--control-model", help="Control: a model folder known clean.", rich_help_panel=KEY
        ),
    ] = None,
    key: KeyOpt = None,
    control_key: ControlKeyOpt = None,
    control_texts: ControlTextsOpt = None,
    field: FieldOpt = None,
    filter_texts: FilterOpt = None,
    filter_top: FilterTopOpt = 10_000,
    alpha: AlphaOpt = 1e-3,
    trace: TraceOpt = False,
    payloads: PayloadsOpt = None,
    out: OutOpt = None,
    plot: PlotOpt = None,
) -> None:
    """Read a suspect's weights (teacher forcing) and score its predictions for our watermark,
    with a control. The model's own tokenizer is used.

    Example: `distillguard radioactivity open ./suspect --prompts harvested_prompts.jsonl
    --samples 4 --filter harvest.jsonl --out radio.json`
    """
    import numpy as np

    from distillguard.radioactivity import OpenSubject, load_suspect, own_answers

    shared = _Shared(
        key,
        control_key,
        control_texts,
        field,
        filter_texts,
        filter_top,
        None,
        alpha,
        trace,
        payloads,
        out,
        plot,
    )
    if read is None and prompts is None:
        raise InputError(
            "open mode needs --read FILE (texts to feed the suspect) or --prompts FILE "
            "(the suspect's own answers to them are read)"
        )
    if prompts is not None and samples and temperature <= 0:
        raise InputError("sampled answers need --temperature > 0")
    setup = _setup(ctx, shared)
    suspect_model, hf_tok = load_suspect(model)

    def encode(text: str) -> npt.NDArray[np.int64]:
        return np.asarray(hf_tok.encode(text, add_special_tokens=False), dtype=np.int64)

    flt = _filter(shared, setup.scheme, encode)
    pad_id = int(hf_tok.pad_token_id or 0)
    body = [] if read is None else _token_texts(encode, _read_texts(read, field))

    def subject(m: object, name: str) -> OpenSubject:
        texts = list(body)
        if prompts is not None:
            texts += own_answers(
                m,
                hf_tok,
                _read_texts(prompts, field),
                samples=samples,
                temperature=temperature,
                greedy=greedy,
                max_new_tokens=max_tokens,
            )
        return OpenSubject(name=name, model=m, texts=texts, pad_id=pad_id, skip_echo=skip_echo)

    control: Subject | None
    if control_model is not None:
        control = subject(load_suspect(control_model)[0], str(control_model))
    else:
        control = _texts_control(shared, encode)
    _finish(setup, shared, subject(suspect_model, str(model)), control, flt)


def _print(report: RadioactivityReport) -> None:
    table = Table(title=f"radioactivity (alpha = {report.alpha:g}): {report.verdict}")
    for col in ("role", "subject", "mode", "tokens scored", "statistic", "expected", "p-value"):
        table.add_column(col)
    for r in (report.suspect, report.control):
        if r is None:
            continue
        d = r.detection
        table.add_row(
            r.role,
            r.subject,
            r.mode,
            str(d.n_scored),
            f"{d.statistic:.0f}",
            f"{d.expected:.1f}",
            f"{d.p_value:.3e}",
        )
    console.print(table)
    if report.tracing is not None:
        t = report.tracing
        console.print(
            f"tracing: payload 0x{t['payload_hex']} label {t['label']} p = {t['p_value']:.3e} "
            f"({t['method']})"
        )


radioactivity_app = typer.Typer(
    help="Test a suspect for our watermark's radioactivity, with a control run.",
    no_args_is_help=True,
)
radioactivity_app.command("open")(open_cmd)
radioactivity_app.command("closed")(closed_cmd)
radioactivity_app.command("texts")(texts_cmd)


def register(app: typer.Typer) -> None:
    """Add ``radioactivity`` (``open``, ``closed``, ``texts``) to the ``distillguard`` command."""
    app.add_typer(radioactivity_app, name="radioactivity")

"""``distillguard radioactivity``: test whether a suspect model learned from our watermarked
outputs (open weights, an API, or texts), with a control run beside it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, state_of
from distillguard.errors import InputError

__all__ = ["register"]


def _read_texts(path: Path, field: str | None) -> list[str]:
    from distillguard.watermark.scan import iter_records

    texts = [t for _, t in iter_records(path, text_field=field) if t]
    if not texts:
        raise InputError(f"{path} holds no texts", hint="check --field")
    return texts


def _fresh_key() -> Any:
    from distillguard.keyring import WatermarkKey

    return WatermarkKey(
        kid="control-random", created_at=datetime.now(UTC), secret=secrets.token_bytes(32)
    )


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


def radioactivity_cmd(
    ctx: typer.Context,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Watermark key id.")] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Open mode: a local model folder.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Closed mode: OpenAI-compatible base URL.")
    ] = None,
    texts: Annotated[
        Path | None, typer.Option("--texts", help="Score texts the suspect wrote (file/folder).")
    ] = None,
    read: Annotated[
        Path | None,
        typer.Option("--read", help="Open mode: texts to feed (ideally not watermarked by us)."),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="Prompts (e.g. what the harvesting accounts asked): closed mode asks them; "
            "open mode reads the model's own answers to them.",
        ),
    ] = None,
    field: Annotated[
        str | None, typer.Option("--field", help="Text field of JSONL/Parquet/CSV records.")
    ] = None,
    control_model: Annotated[
        Path | None, typer.Option("--control-model", help="A model folder known clean.")
    ] = None,
    control_endpoint: Annotated[
        str | None, typer.Option("--control-endpoint", help="An endpoint known clean.")
    ] = None,
    control_texts: Annotated[
        Path | None, typer.Option("--control-texts", help="Texts known clean.")
    ] = None,
    control_key: Annotated[
        str | None,
        typer.Option(
            "--control-key",
            help="Control: the suspect under this other key (default: a fresh random key).",
        ),
    ] = None,
    filter_texts: Annotated[
        Path | None,
        typer.Option(
            "--filter", help="Our watermarked outputs: score only their frequent k-grams."
        ),
    ] = None,
    filter_top: Annotated[
        int, typer.Option("--filter-top", help="k-grams kept by the filter.")
    ] = 10_000,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="word | byte | local HF tokenizer folder.")
    ] = None,
    endpoint_model: Annotated[
        str, typer.Option("--endpoint-model", help="The 'model' field sent to the endpoint.")
    ] = "suspect",
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the endpoint's key."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Answer length.")] = 128,
    samples: Annotated[
        int,
        typer.Option(
            "--samples",
            help="Sampled answers per prompt (closed mode, and open mode with --prompts); "
            "repeats count once.",
            min=0,
        ),
    ] = 1,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature",
            help="Temperature of the sampled answers (low: memorised answers lie on the most "
            "likely paths).",
            min=0.0,
        ),
    ] = 0.2,
    greedy: Annotated[
        bool,
        typer.Option(
            "--greedy/--no-greedy", help="Also take one greedy (temperature 0) answer per prompt."
        ),
    ] = True,
    skip_echo: Annotated[
        bool,
        typer.Option("--skip-echo", help="Open mode: skip predictions equal to the real token."),
    ] = False,
    trace: Annotated[
        bool, typer.Option("--trace", help="Decode the multi-bit payload (MPAC keys).")
    ] = False,
    payloads: Annotated[
        Path | None, typer.Option("--payloads", help="Tracing: 'label,payload' candidates.")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 1e-3,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON result here.")] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the p-value curves (PNG).")
    ] = None,
) -> None:
    """Test a suspect for our watermark's radioactivity, with a control run.

    Example: `distillguard radioactivity --key wm-3f9c --endpoint https://suspect/v1
    --prompts probes.jsonl --filter harvest.jsonl --out radio.json`
    """
    import os

    from distillguard.keyring import open_keyring
    from distillguard.radioactivity.pipeline import KgramFilter, TokenText
    from distillguard.radioactivity.results import RadioactivityReport, plot_curves
    from distillguard.watermark.registry import build_scheme

    state = state_of(ctx)
    settings = state.settings()
    chosen = [x for x in (model, endpoint, texts) if x is not None]
    if len(chosen) != 1:
        raise InputError("give exactly one of --model, --endpoint, --texts")
    ring = open_keyring(settings)
    wm_settings = settings.watermark
    if trace and wm_settings.scheme != "mpac":
        wm_settings = wm_settings.model_copy(update={"scheme": "mpac"})
    scheme = build_scheme(wm_settings, ring.watermark_key(key))
    ctl_key = ring.watermark_key(control_key) if control_key else _fresh_key()

    def show(label: str) -> Any:
        def on_point(p: Any) -> None:
            if not state.json_output and not state.quiet:
                console.print(
                    f"  {label}: {p.n_texts} texts, {p.n_scored} tokens scored, p = {p.p_value:.3e}"
                )

        return on_point

    # the tokenizer: the model's own in open mode, else --tokenizer / settings
    encode: Any
    hf_tok: Any = None
    if model is not None:
        from distillguard.radioactivity.open_mode import load_suspect

        suspect_model, hf_tok = load_suspect(model)

        def encode(text: str) -> Any:
            import numpy as np

            return np.asarray(hf_tok.encode(text, add_special_tokens=False), dtype=np.int64)
    else:
        from distillguard.watermark.tokenizers import load_tokenizer

        encode = load_tokenizer(tokenizer or wm_settings.tokenizer).encode

    flt = None
    if filter_texts is not None:
        flt = KgramFilter.from_texts(
            [TokenText.of(encode(t)) for t in _read_texts(filter_texts, field)],
            width=scheme.context_width,
            top=filter_top,
        )

    def run_texts(path: Path, sch: Any, role: str) -> Any:
        from distillguard.radioactivity.pipeline import RadioactivityScorer
        from distillguard.radioactivity.results import ModeResult

        scorer = RadioactivityScorer(sch, kgram_filter=flt)
        body = [TokenText.of(encode(t)) for t in _read_texts(path, field)]
        on = show(role)
        for i in range(0, len(body), 256):
            on(scorer.add_texts(body[i : i + 256]))
        return ModeResult.from_scorer(
            scorer, subject=str(path), mode="texts", role=role, n_texts=len(body)
        ), scorer

    def asks() -> tuple[list[str], list[float]]:
        """Each prompt once greedily (``--greedy``), then ``--samples`` times sampled."""
        assert prompts is not None
        from distillguard.radioactivity.pipeline import answer_plan

        plan = answer_plan(
            _read_texts(prompts, field), samples=samples, temperature=temperature, greedy=greedy
        )
        if not plan:
            raise InputError("nothing to ask: give --samples >= 1 or keep --greedy")
        return [p for ps, _ in plan for p in ps], [t for ps, t in plan for _ in ps]

    # what the suspect run asked or read, reused by the default control (the suspect under an
    # unused key) so that nothing is asked or generated twice
    asked_answers: list[str] = []
    read_texts: list[Any] = []

    def run_open(
        m: Any, sch: Any, role: str, subject: str, keep: Any = None, texts_in: Any = None
    ) -> Any:
        from distillguard.radioactivity.open_mode import own_answers, score_open

        if read is None and prompts is None:
            raise InputError(
                "open mode needs --read FILE (texts to feed the suspect) or --prompts FILE "
                "(the suspect's own answers to them are read)"
            )
        if texts_in is not None:
            body = list(texts_in)
        else:
            body = (
                [] if read is None else [TokenText.of(encode(t)) for t in _read_texts(read, field)]
            )
        if prompts is not None and texts_in is None:
            if samples and temperature <= 0:
                raise InputError("sampled answers need --temperature > 0")
            body += own_answers(
                m,
                hf_tok,
                _read_texts(prompts, field),
                samples=samples,
                temperature=temperature,
                greedy=greedy,
                max_new_tokens=max_tokens,
            )
        if role == "suspect":
            read_texts.extend(body)
        return score_open(
            m,
            body,
            sch,
            subject=subject,
            role=role,
            kgram_filter=flt,
            pad_id=int(hf_tok.pad_token_id or 0),
            skip_echo=skip_echo,
            on_point=show(role),
            scorer=keep,
        )

    def run_closed(url: str, sch: Any, role: str, keep: Any = None) -> Any:
        from distillguard.radioactivity.closed_mode import (
            EndpointConfig,
            SuspectClient,
            score_closed,
        )

        if prompts is None:
            raise InputError("closed mode needs --prompts FILE: prompts to ask the endpoint")
        client = SuspectClient(
            EndpointConfig(
                url=url,
                model=endpoint_model,
                api_key=os.environ.get(api_key_env) if api_key_env else None,
                max_tokens=max_tokens,
            )
        )
        asked, temps = asks()
        return score_closed(
            client,
            asked,
            sch,
            encode,
            subject=url,
            role=role,
            kgram_filter=flt,
            on_point=show(role),
            scorer=keep,
            temperatures=temps,
            on_answers=asked_answers.extend if role == "suspect" else None,
        )

    def closed_key_control() -> Any:
        """The suspect's answers scored again under the unused key: nothing is asked twice."""
        from distillguard.radioactivity.results import ModeResult

        ctl = RadioactivityScorer(ctl_scheme, kgram_filter=flt)
        on = show("control")
        answers = [TokenText.of(encode(a)) for a in asked_answers]
        for i in range(0, len(answers), 256):
            on(ctl.add_texts(answers[i : i + 256]))
        return ModeResult.from_scorer(
            ctl,
            subject=f"{endpoint} (key {ctl_key.kid})",
            mode="closed",
            role="control",
            n_texts=len(answers),
            notes=["the suspect's answers scored under an unused key (nothing asked twice)"],
        )

    from distillguard.radioactivity.pipeline import RadioactivityScorer

    tracing = None
    if texts is not None:
        suspect, scorer = run_texts(texts, scheme, "suspect")
        pooled = scorer.pooled_scores()
    else:
        keep = RadioactivityScorer(scheme, kgram_filter=flt)
        if model is not None:
            suspect = run_open(suspect_model, scheme, "suspect", str(model), keep)
        else:
            assert endpoint is not None
            suspect = run_closed(endpoint, scheme, "suspect", keep)
        pooled = keep.pooled_scores() if trace else None

    ctl_scheme = build_scheme(wm_settings, ctl_key)
    if control_texts is not None:
        control, _ = run_texts(control_texts, scheme, "control")
    elif control_model is not None:
        from distillguard.radioactivity.open_mode import load_suspect

        control = run_open(load_suspect(control_model)[0], scheme, "control", str(control_model))
    elif control_endpoint is not None:
        control = run_closed(control_endpoint, scheme, "control")
    elif texts is not None:
        control, _ = run_texts(texts, ctl_scheme, "control")
    elif model is not None:
        control = run_open(
            suspect_model,
            ctl_scheme,
            "control",
            f"{model} (key {ctl_key.kid})",
            texts_in=read_texts,
        )
    else:
        control = closed_key_control()

    if trace:
        tracing = _trace(scheme, pooled, payloads)
    report = RadioactivityReport(
        suspect=suspect,
        control=control,
        alpha=alpha,
        tracing=tracing,
        extra={"key_id": scheme.key_id, "control_key_id": ctl_key.kid},
    )
    if out is not None:
        report.write_json(out)
    if plot is not None:
        plot_curves([suspect, control], plot, alpha=alpha)
    if state.json_output:
        emit_json({"ok": True, **report.to_dict()})
        return
    _print(report)


def _trace(scheme: Any, pooled: Any, payloads: Path | None) -> dict[str, Any] | None:
    from distillguard.radioactivity.tracing import trace_payload

    if pooled is None:
        raise InputError("nothing scored to trace")
    cands = _payloads(payloads) if payloads is not None else None
    return trace_payload(scheme, pooled, candidates=cands).to_dict()


def _print(report: Any) -> None:
    table = Table(title=f"radioactivity (alpha = {report.alpha:g}): {report.verdict}")
    for col in ("role", "subject", "mode", "tokens scored", "statistic", "expected", "p-value"):
        table.add_column(col)
    rows: Sequence[Any] = [r for r in (report.suspect, report.control) if r is not None]
    for r in rows:
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


def register(app: typer.Typer) -> None:
    """Add ``radioactivity`` to the ``distillguard`` command."""
    app.command(name="radioactivity")(radioactivity_cmd)

"""``distillguard watermark``: detect our watermark in texts, embed the post-hoc watermark, scan
datasets for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from distillguard.cli._common import console, emit_json, progress_bar, state_of
from distillguard.errors import EXIT_FINDINGS, InputError

__all__ = ["register"]

watermark_app = typer.Typer(
    name="watermark",
    help=(
        "Detect DistillGuard's output watermark in texts or datasets; add the post-hoc one.\n\n"
        "    distillguard watermark detect answers.jsonl --field output"
    ),
    no_args_is_help=True,
)

TEXT_SCHEMES = ("cater",)
Detector = Callable[[str], Any]


def _keys(ctx: typer.Context, key_ids: list[str] | None, all_keys: bool) -> list[Any]:
    from distillguard.keyring import open_keyring

    ring = open_keyring(state_of(ctx).settings())
    if all_keys:
        return ring.watermark_keys()
    if key_ids:
        return [ring.watermark_key(k) for k in key_ids]
    return [ring.watermark_key(None)]


def _check_scheme(name: str) -> None:
    from distillguard.watermark import SCHEMES

    if name not in SCHEMES and name not in TEXT_SCHEMES:
        raise InputError(
            f"unknown watermark scheme {name!r}",
            hint=f"use one of {', '.join(sorted([*SCHEMES, *TEXT_SCHEMES]))}",
        )


def _detectors(
    ctx: typer.Context,
    *,
    scheme: str | None,
    tokenizer: str | None,
    key_ids: list[str] | None,
    all_keys: bool,
) -> list[tuple[str, str, Detector]]:
    """(scheme, tokenizer name, detector) per scheme and key.

    With no ``scheme``, both schemes a key marks text with are tested: the configured
    generation-time scheme (``[watermark] scheme``) and the post-hoc lexical one that
    ``watermark embed`` adds (``cater``), so a plain ``detect`` finds either.
    """
    from distillguard.watermark import CaterConfig, CaterWatermark, build_scheme, load_tokenizer

    settings = state_of(ctx).settings().watermark
    names = [scheme] if scheme else list(dict.fromkeys([settings.scheme, *TEXT_SCHEMES]))
    for name in names:
        _check_scheme(name)
    keys = _keys(ctx, key_ids, all_keys)
    out: list[tuple[str, str, Detector]] = []
    for name in names:
        if name in TEXT_SCHEMES:
            for k in keys:
                wm = CaterWatermark(CaterConfig(), key=k)
                out.append((name, "words (lexicon)", _text_detector(wm)))
            continue
        tok = load_tokenizer(tokenizer or settings.tokenizer)
        cfg = settings.model_copy(update={"scheme": name})
        out.extend((name, tok.name, _token_detector(build_scheme(cfg, k), tok)) for k in keys)
    return out


def _text_detector(wm: Any) -> Detector:
    def run(text: str) -> Any:
        return wm.detect(text)

    return run


def _token_detector(wm: Any, tok: Any) -> Detector:
    def run(text: str) -> Any:
        return wm.detect(tok.encode(text))

    return run


def detect_cmd(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Text files, or JSONL/Parquet/CSV files.")],
    key: Annotated[
        list[str] | None, typer.Option("--key", "-k", help="Watermark key id (repeatable).")
    ] = None,
    all_keys: Annotated[
        bool, typer.Option("--all-keys", help="Test every watermark key (Holm-corrected).")
    ] = False,
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            help="kgw | aaronson | synthid | mpac | cater (default: the configured one and cater).",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="word | byte | local HF tokenizer folder."),
    ] = None,
    field: Annotated[
        str | None, typer.Option("--field", help="Text field of JSONL/Parquet/CSV records.")
    ] = None,
    chat: Annotated[
        bool, typer.Option("--chat", help="Keep only assistant turns of chat transcripts.")
    ] = False,
    alpha: Annotated[
        float, typer.Option("--alpha", help="Significance level of the verdict column.")
    ] = 1e-3,
) -> None:
    """Test texts for the watermark; prints the exact p-value of each text.

    Without `--scheme` it tests both schemes a key marks with: the configured generation-time
    scheme (`[watermark] scheme`, default kgw) and the post-hoc one of `watermark embed`
    (cater), Holm-adjusted over schemes and keys; the output names the scheme of each finding.
    Exit status 1 if the watermark is found in any text (p <= alpha), 0 if in none.

    Example: `distillguard watermark detect answer.txt --key wm-3f9c --tokenizer ./tok`
    """
    from distillguard.watermark import holm, iter_records

    state = state_of(ctx)
    detectors = _detectors(ctx, scheme=scheme, tokenizer=tokenizer, key_ids=key, all_keys=all_keys)
    tested = list(dict.fromkeys(f"{name} (tokenizer: {tok})" for name, tok, _ in detectors))
    from distillguard.watermark import strip_chat_template

    rows: list[dict[str, Any]] = []
    for path in files:
        for record, text in iter_records(path, text_field=field):
            if text is None:
                continue
            body = strip_chat_template(text) if chat else text
            results = [d(body) for _, _, d in detectors]
            adjusted = holm([r.p_value for r in results])
            best = min(range(len(results)), key=lambda i: adjusted[i])
            rows.append(
                {
                    "record": record,
                    "p_value": adjusted[best],
                    "detected": adjusted[best] <= alpha,
                    "scheme": detectors[best][0],
                    "key_id": results[best].key_id,
                    "results": [
                        {**r.to_dict(), "scheme": name, "adjusted_p_value": a}
                        for r, a, (name, _, _) in zip(results, adjusted, detectors, strict=True)
                    ],
                }
            )
    found = sum(1 for row in rows if row["detected"])
    if state.json_output:
        emit_json(
            {
                "ok": True,
                "schemes_tested": tested,
                "tokenizer": detectors[0][1],
                "alpha": alpha,
                "detected": found,
                "texts": rows,
            }
        )
    else:
        table = Table(title=f"watermark detection; schemes tested: {', '.join(tested)}")
        for col in ("text", "scheme", "key", "scored", "statistic", "p-value", f"p≤{alpha:g}"):
            table.add_column(col, overflow="fold")
        for i, row in enumerate(rows):
            best = min(row["results"], key=lambda r: r["adjusted_p_value"])
            table.add_row(
                row["record"],
                row["scheme"],
                row["key_id"],
                str(best["n_scored"]),
                f"{best['statistic']:g}",
                f"{rows[i]['p_value']:.3g}",
                "yes" if row["detected"] else "no",
            )
        console.print(table)
        console.print(f"watermark found in {found} of {len(rows)} text(s) at p <= {alpha:g}")
    if found:
        raise typer.Exit(EXIT_FINDINGS)


def embed_cmd(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A text file, or a JSONL file of records.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the result.")],
    key: Annotated[str | None, typer.Option("--key", "-k", help="Watermark key id.")] = None,
    field: Annotated[str, typer.Option("--field", help="Text field of JSONL records.")] = "output",
) -> None:
    """Add the post-hoc lexical watermark to text from a closed upstream model.

    Example: `distillguard watermark embed answers.jsonl --field output -o marked.jsonl`
    """
    import orjson

    from distillguard.watermark import CaterConfig, CaterWatermark

    state = state_of(ctx)
    wm = CaterWatermark(CaterConfig(), key=_keys(ctx, [key] if key else None, False)[0])
    if not source.is_file():
        raise InputError(f"{source} is not a file")
    words = changed = texts = 0
    if source.name.endswith(".jsonl"):
        lines_out = []
        with source.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise InputError(f"{source}:{lineno}: not JSON ({exc})") from None
                if isinstance(record, dict) and isinstance(record.get(field), str):
                    res = wm.embed(record[field])
                    record[field] = res.text
                    words, changed, texts = words + res.words, changed + res.changed, texts + 1
                lines_out.append(orjson.dumps(record).decode())
        out.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    else:
        res = wm.embed(source.read_text(encoding="utf-8"))
        out.write_text(res.text, encoding="utf-8")
        words, changed, texts = res.words, res.changed, 1
    summary = {
        "ok": True,
        "out": str(out),
        "texts": texts,
        "words": words,
        "changed": changed,
        "changed_fraction": changed / words if words else 0.0,
        "key_id": wm.key_id,
    }
    if state.json_output:
        emit_json(summary)
        return
    console.print(
        f"wrote {out}: {texts} text(s), {changed:,} of {words:,} words changed "
        f"({summary['changed_fraction']:.2%}), key {wm.key_id}"
    )


def scan_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="JSONL(.gz), Parquet, CSV, or a folder.")],
    key: Annotated[str | None, typer.Option("--key", "-k", help="Watermark key id.")] = None,
    scheme: Annotated[
        str | None,
        typer.Option(
            "--scheme",
            help="kgw | aaronson | synthid | mpac | cater (post-hoc; default: the configured).",
        ),
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="word | byte | local HF tokenizer folder.")
    ] = None,
    field: Annotated[str | None, typer.Option("--field", help="Text field or column.")] = None,
    fdr: Annotated[
        float | None, typer.Option("--fdr", help="False-discovery rate for flagging records.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Read at most N records.")] = None,
    show: Annotated[int, typer.Option("--show", help="Flagged records to print.")] = 20,
) -> None:
    """Find the watermark in a training dataset: flagged records and a corpus p-value.

    `--scheme cater` pools answers marked by `watermark embed` (the post-hoc scheme).

    Example: `distillguard watermark scan-dataset ./dataset.parquet --field text --fdr 0.01`
    """
    from distillguard.watermark import (
        CaterConfig,
        CaterWatermark,
        build_scheme,
        load_tokenizer,
        scan_dataset,
        scan_dataset_text,
    )

    state = state_of(ctx)
    settings = state.settings().watermark
    name = scheme or settings.scheme
    _check_scheme(name)
    wkey = _keys(ctx, [key] if key else None, False)[0]
    rate = fdr if fdr is not None else settings.fdr
    with progress_bar(state, unit="records") as progress:
        task = progress.add_task(f"scanning {path.name}", total=limit)
        if name in TEXT_SCHEMES:
            wm: Any = CaterWatermark(CaterConfig(), key=wkey)
            tok_name = "words (lexicon)"
            report = scan_dataset_text(
                path,
                watermark=wm,
                text_field=field,
                fdr=rate,
                limit=limit,
                on_record=lambda n: progress.update(task, completed=n),
            )
        else:
            wm = build_scheme(settings.model_copy(update={"scheme": name}), wkey)
            tok = load_tokenizer(tokenizer or settings.tokenizer)
            tok_name = tok.name
            report = scan_dataset(
                path,
                scheme=wm,
                tokenizer=tok,
                text_field=field,
                fdr=rate,
                limit=limit,
                on_record=lambda n: progress.update(task, completed=n),
            )
    if state.json_output:
        emit_json(
            {"ok": True, "scheme": name, "tokenizer": tok_name, "key_id": wm.key_id}
            | report.to_dict()
        )
        return
    c = report.corpus
    console.print(f"scheme tested: {name} (tokenizer: {tok_name}), key {wm.key_id}")
    console.print(
        f"{report.records:,} records ({report.skipped:,} without text), "
        f"{report.tokens:,} tokens scored; corpus: {c.n_scored:,} distinct windows, "
        f"statistic {c.statistic:g} (expected {c.expected:g}), p = {c.p_value:.3g}"
    )
    if report.payload is not None:
        console.print(
            f"decoded payload {report.payload.payload:#x} (p = {report.payload.p_value:.3g})"
        )
    console.print(
        f"{len(report.flagged):,} record(s) flagged at FDR {report.fdr:g} (Benjamini-Hochberg)"
    )
    if report.flagged:
        table = Table()
        for col in ("record", "scored", "p-value", "q-value"):
            table.add_column(col, overflow="fold")
        for f in report.flagged[:show]:
            table.add_row(f.record, str(f.n_scored), f"{f.p_value:.3g}", f"{f.q_value:.3g}")
        console.print(table)


watermark_app.command("detect")(detect_cmd)
watermark_app.command("embed")(embed_cmd)
watermark_app.command("scan-dataset")(scan_cmd)


def register(app: typer.Typer) -> None:
    """Add ``watermark`` to the main command."""
    app.add_typer(watermark_app, name="watermark")

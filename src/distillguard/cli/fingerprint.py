"""``distillguard fingerprint``: lineage attribution of a suspect model from its outputs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from distillguard.cli._common import console, emit_json, progress_bar, state_of

__all__ = ["register"]

fingerprint_app = typer.Typer(
    help="Behavioural fingerprints and lineage attribution (see docs/fingerprint.md).",
    no_args_is_help=True,
)


@fingerprint_app.command("attribute")
def attribute_cmd(
    ctx: typer.Context,
    references: Annotated[
        list[Path],
        typer.Option(
            "--references",
            help="Folder of reference outputs (*.jsonl[.gz]); repeat for several splits.",
        ),
    ],
    families: Annotated[
        list[Path],
        typer.Option(
            "--families",
            help="JSON: {stem: family} or lineage.json layout; repeat to merge several.",
        ),
    ],
    suspect: Annotated[Path, typer.Option("--suspect", help="The suspect's outputs file.")],
    alpha: Annotated[
        float, typer.Option("--alpha", help="Family-wise false-accusation rate.", min=1e-9, max=0.5)
    ] = 0.01,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help="Also test one family one-vs-rest: did the suspect learn from it (and from "
            "its provider)?",
        ),
    ] = None,
    identity: Annotated[
        bool,
        typer.Option(
            "--identity/--no-identity",
            help="Identity/provenance channel (self-identification, maker, refusals, cutoff).",
        ),
    ] = True,
    documented_providers: Annotated[
        list[str] | None,
        typer.Option(
            "--documented-provider",
            help="Provider whose references serve as --teacher nulls (repeat; default "
            "openai, anthropic, google, meta).",
        ),
    ] = None,
    embeddings: Annotated[
        bool,
        typer.Option("--embeddings/--no-embeddings", help="Add MiniLM embeddings (ml extra)."),
    ] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also report the naive TF-IDF baseline.")
    ] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Fingerprint cache folder (default ~/.cache/distillguard/fingerprints).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Compute every fingerprint afresh, store nothing.")
    ] = False,
) -> None:
    """Which reference family, if any, did the suspect learn from? Prints a verdict and ranking.

    Fingerprints are cached on disk keyed by each file's SHA-256 and the feature options, so
    only the first run against a reference folder computes the references' features.

    Example: `distillguard --json fingerprint attribute --references ./dev/outputs
    --references ./more/outputs --families dev/lineage.json --families more/lineage.json
    --suspect vicuna-7b.jsonl.gz --alpha 0.01 --teacher gpt-3.5-turbo`
    """
    from distillguard.fingerprint import FingerprintOptions, attribute, compute_fingerprint
    from distillguard.fingerprint.attribution import prepare_statistics
    from distillguard.fingerprint.baseline import naive_baseline
    from distillguard.fingerprint.cache import FingerprintCache, default_cache_dir
    from distillguard.fingerprint.explain import shared_phrases
    from distillguard.fingerprint.identity import identity_profile
    from distillguard.fingerprint.outputs import read_outputs
    from distillguard.fingerprint.references import (
        load_references,
        read_families_files,
        reference_files,
    )
    from distillguard.fingerprint.teacher import DOCUMENTED_PROVIDERS, teacher_test

    state = state_of(ctx)
    fam = read_families_files(families)
    suspect_out = read_outputs(suspect)
    files = reference_files(references, fam, exclude=[suspect])
    if len(files) < len(fam.families):  # the suspect itself is named as a reference
        fam = type(fam)(
            families={k: v for k, v in fam.families.items() if k in files},
            providers={k: v for k, v in fam.providers.items() if k in files},
            released={k: v for k, v in fam.released.items() if k in files},
        )
    options = FingerprintOptions(embeddings=embeddings)
    cache = None if no_cache else FingerprintCache(cache_dir or default_cache_dir())
    with progress_bar(state, unit="models") as progress:
        task = progress.add_task("fingerprinting", total=len(files) + 1)
        refs = load_references(
            files, options=options, cache=cache, on_model=lambda _n: progress.advance(task)
        )
        suspect_fp = compute_fingerprint(suspect_out, options=options)
        progress.advance(task)
    s_id = identity_profile(suspect_out) if identity else None
    r_id = refs.identity if identity else None
    prepared = prepare_statistics(suspect_fp, refs.fingerprints, fam)
    result = attribute(
        suspect_fp,
        refs.fingerprints,
        fam,
        alpha=alpha,
        suspect_identity=s_id,
        reference_identity=r_id,
        prepared=prepared,
    )
    top_ref = result.ranking[0].reference
    closest = next(o for o in refs.outputs if o.name == top_ref)
    phrases = [
        ph.to_dict()
        for ph in shared_phrases(
            suspect_out, closest, [o for o in refs.outputs if o.name != top_ref]
        )
    ]
    extra: dict[str, Any] = {}
    teacher_result = None
    if teacher is not None:
        teacher_result = teacher_test(
            suspect_fp,
            refs.fingerprints,
            fam,
            teacher,
            alpha=alpha,
            suspect_identity=s_id,
            reference_identity=r_id,
            documented_providers=tuple(documented_providers or DOCUMENTED_PROVIDERS),
            prepared=prepared,
        )
        extra["teacher"] = teacher_result.to_dict()
    if baseline:
        base = naive_baseline(suspect_out, list(refs.outputs), fam)
        extra["baseline"] = {"family": base.family, "reference": base.reference}
    # the attribution-result format (distillguard.results): what --json prints and report reads
    result = replace(
        result, explanation={**result.explanation, "shared_phrases": phrases}, extra=extra
    )
    if state.json_output:
        emit_json(result.to_dict())
        return
    console.print(f"suspect: {result.suspect} ({result.n_prompts} prompts)")
    console.print(f"verdict: {result.verdict or 'no evidence'} (alpha {alpha})")
    console.print(f"provider: {result.provider_verdict or 'no evidence'}")
    for s in result.ranking[:5]:
        console.print(f"  {s.family:28s} stat {s.statistic:6.2f}  p {s.p_value:.3g}")
    if teacher_result is not None:
        fa, pa = teacher_result.family, teacher_result.provider_answer
        console.print(
            f"learned from {teacher}: {'YES' if fa.learned else 'no evidence'} (p {fa.p_value:.3g})"
        )
        if pa is not None:
            console.print(
                f"learned from {pa.target}: {'YES' if pa.learned else 'no evidence'} "
                f"(p {pa.p_value:.3g})"
            )
    ident = result.explanation.get("identity") or {}
    for m in ident.get("suspect_sentences", [])[:5]:
        console.print(f"  [{m['formula']}] #{m['prompt_id']}: {m['sentence']}")
    if baseline:
        console.print(f"naive baseline: {extra['baseline']['family']}")


@fingerprint_app.command("build")
def build_cmd(
    ctx: typer.Context,
    outputs: Annotated[
        Path, typer.Option("--outputs", help="Folder of reference outputs (*.jsonl[.gz]).")
    ],
    families: Annotated[
        Path, typer.Option("--families", help="JSON: {stem: family} or lineage.json layout.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The library folder to create.")],
    probe_set: Annotated[
        str,
        typer.Option("--probe-set", help="Shipped probe set name or a JSONL file of probes."),
    ] = "alpaca_eval",
    embeddings: Annotated[
        bool,
        typer.Option("--embeddings/--no-embeddings", help="Store MiniLM embeddings (ml extra)."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing library.")] = False,
) -> None:
    """Build a stored, versioned reference library (outputs + fingerprints + manifest).

    Example: `distillguard fingerprint build --outputs ./outputs --families lineage.json
    --out ./library --probe-set alpaca_eval`
    """
    from distillguard.fingerprint import FingerprintOptions, read_families
    from distillguard.fingerprint.library import build_library

    state = state_of(ctx)
    total = len(read_families(families).families)
    with progress_bar(state, unit="models") as progress:
        task = progress.add_task("building", total=total)
        library = build_library(
            outputs_dir=outputs,
            families=families,
            out=out,
            probe_set=probe_set,
            options=FingerprintOptions(embeddings=embeddings),
            overwrite=force,
            on_model=lambda _name: progress.advance(task),
        )
    if state.json_output:
        emit_json(library.to_dict())
        return
    console.print(
        f"library {library.path}: {len(library.models)} models on probe set "
        f"{library.probe_set_name} ({library.n_prompts} prompts), id {library.library_id[:16]}"
    )
    console.print(
        f"attribute with: --references {library.outputs_dir} --families {library.families_path}"
    )


@fingerprint_app.command("list")
def list_cmd(
    ctx: typer.Context,
    library: Annotated[Path, typer.Argument(help="A library folder made by `fingerprint build`.")],
) -> None:
    """List a reference library's models, probe set and feature config (hashes checked).

    Example: `distillguard --json fingerprint list ./library`
    """
    from distillguard.fingerprint.library import load_library

    state = state_of(ctx)
    lib = load_library(library)
    if state.json_output:
        emit_json(lib.to_dict())
        return
    console.print(
        f"{lib.path} (format v1, id {lib.library_id[:16]}, built {lib.created_at:%Y-%m-%d %H:%M} "
        f"by DistillGuard {lib.distillguard_version})"
    )
    console.print(
        f"probe set {lib.probe_set_name} ({lib.n_prompts} prompts, sha256 "
        f"{lib.probe_set_sha256[:16]})"
    )
    for m in lib.models:
        console.print(
            f"  {m.name:36s} {m.family:24s} {m.n_outputs:5d} answers  {m.n_missing:4d} missing"
        )


@fingerprint_app.command("evidence")
def evidence_cmd(
    ctx: typer.Context,
    canaries: Annotated[
        Path | None,
        typer.Option("--canaries", help="`fingerprint probe-canaries --json` output (JSON)."),
    ] = None,
    radioactivity: Annotated[
        Path | None, typer.Option("--radioactivity", help="Radioactivity result (JSON).")
    ] = None,
    attribution: Annotated[
        Path | None,
        typer.Option("--attribution", help="`fingerprint attribute --json` output (JSON)."),
    ] = None,
) -> None:
    """Canary, radioactivity and lineage results about one suspect, side by side.

    Each row says what the test asks, its verdict and p-value, what a positive result shows and
    where it misleads; tests not run are listed as such. No combined p-value: the tests answer
    different questions.

    Example: `distillguard fingerprint evidence --canaries canaries.json
    --radioactivity radio.json --attribution attribution.json`
    """
    import orjson

    from distillguard.errors import InputError
    from distillguard.fingerprint.side_by_side import side_by_side, side_by_side_markdown
    from distillguard.results import read_attribution, read_radioactivity

    state = state_of(ctx)
    if canaries is None and radioactivity is None and attribution is None:
        raise InputError("give at least one of --canaries, --radioactivity, --attribution")
    canary_doc: dict[str, Any] | None = None
    if canaries is not None:
        try:
            loaded = orjson.loads(canaries.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise InputError(f"{canaries}: cannot be read as JSON ({exc})") from exc
        if not isinstance(loaded, dict) or "planted_hits" not in loaded:
            raise InputError(f"{canaries}: not a probe-canaries result (no 'planted_hits')")
        canary_doc = loaded
    rows = side_by_side(
        canaries=canary_doc,
        radioactivity=read_radioactivity(radioactivity) if radioactivity else None,
        attribution=read_attribution(attribution) if attribution else None,
    )
    if state.json_output:
        emit_json({"evidence": [r.to_dict() for r in rows]})
        return
    console.print(side_by_side_markdown(rows), markup=False)


@fingerprint_app.command("collect")
def collect_cmd(
    ctx: typer.Context,
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="OpenAI-compatible API base, e.g. http://h:8000/v1.")
    ],
    model: Annotated[str, typer.Option("--model", help="Model name sent with each request.")],
    out: Annotated[
        Path, typer.Option("--out", help="Outputs file (.jsonl.gz); resumed if present.")
    ],
    probe_set: Annotated[
        str,
        typer.Option("--probe-set", help="Shipped probe set name or a JSONL file of probes."),
    ] = "alpaca_eval",
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the API key."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Requests in flight.", min=1, max=256)
    ] = 4,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="max_tokens sent with each request.", min=1)
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Tries per prompt (429/5xx/timeouts).", min=1, max=100)
    ] = 5,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Per-request timeout in seconds.", min=0.1)
    ] = 120.0,
) -> None:
    """Collect a suspect's answers to a probe set from a live endpoint (retries, resumable).

    Example: `distillguard fingerprint collect --endpoint http://localhost:8000/v1
    --model suspect --probe-set alpaca_eval --out suspect.jsonl.gz --api-key-env SUSPECT_KEY`
    """
    import os

    from distillguard.errors import ConfigurationError, UpstreamError
    from distillguard.fingerprint import load_probe_set
    from distillguard.fingerprint.collect import RetryPolicy, collect_outputs
    from distillguard.fingerprint.library import probe_datasets

    state = state_of(ctx)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigurationError(f"environment variable {api_key_env} is not set or empty")
    probes = load_probe_set(probe_set)
    with progress_bar(state, unit="prompts") as progress:
        task = progress.add_task("collecting", total=len(probes))
        result = collect_outputs(
            endpoint=endpoint,
            model=model,
            probes=probes,
            out=out,
            api_key=api_key,
            concurrency=concurrency,
            retry=RetryPolicy(max_attempts=retries, timeout_s=timeout),
            max_tokens=max_tokens,
            datasets=probe_datasets(probe_set),
            on_done=lambda _pid: progress.advance(task),
        )
    if state.json_output:
        emit_json(result.to_dict())
    else:
        console.print(
            f"{result.path}: {result.collected} collected, {result.skipped} already there, "
            f"{len(result.failed)} failed ({result.retries} retries)"
        )
    if result.failed:
        first = next(iter(result.errors.values()))
        raise UpstreamError(
            f"{len(result.failed)} of {result.total} prompts failed (first error: {first})",
            hint="re-run the same command to retry them; answers already collected are kept",
        )


@fingerprint_app.command("probe-canaries")
def probe_canaries_cmd(
    ctx: typer.Context,
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="The suspect's OpenAI-compatible API base.")
    ],
    model: Annotated[str, typer.Option("--model", help="Model name sent.")] = "suspect",
    account: Annotated[
        str | None, typer.Option("--account", help="Probe the canaries planted for this account.")
    ] = None,
    all_accounts: Annotated[
        bool, typer.Option("--all", help="Probe the canaries planted for every account.")
    ] = False,
    decoys: Annotated[
        int | None, typer.Option("--decoys", help="Decoys asked (default max(20, 3x planted)).")
    ] = None,
    alpha: Annotated[
        float, typer.Option("--alpha", help="False-accusation rate.", min=1e-12, max=0.5)
    ] = 0.01,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Environment variable with the API key.")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 4,
    store_url: Annotated[
        str | None, typer.Option("--store", help="Store URL (default: the configured store).")
    ] = None,
    show_answers: Annotated[
        bool, typer.Option("--show-answers", help="Include every question and answer.")
    ] = False,
) -> None:
    """Ask a suspect about canaries planted for an account, and about decoys; exact p-value.

    Example: `distillguard --json fingerprint probe-canaries --endpoint http://suspect:8000/v1
    --account acct_123 --alpha 0.01`
    """
    import os

    from distillguard.errors import ConfigurationError, InputError
    from distillguard.fingerprint.canaries import CanaryGenerator, CanaryRegistry, probe_canaries
    from distillguard.keyring import open_keyring
    from distillguard.store import open_store

    state = state_of(ctx)
    settings = state.settings()
    if (account is None) == (not all_accounts):
        raise InputError("give exactly one of --account ID or --all")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigurationError(f"environment variable {api_key_env} is not set or empty")
    wm = open_keyring(settings).watermark_key()
    store = open_store(store_url or settings.store_url)
    try:
        planted = CanaryRegistry(store).planted(None if all_accounts else account)
    finally:
        store.close()
    if not planted:
        raise InputError(
            "no canaries were planted for " + ("any account" if all_accounts else repr(account)),
            hint="the gateway plants them for accounts under the 'canary' action",
        )
    generator = CanaryGenerator(secret=wm.secret, kid=wm.kid)
    facts = [p.fact for p in planted]
    n_decoys = decoys if decoys is not None else max(20, 3 * len(facts))
    with progress_bar(state, unit="questions") as progress:
        task = progress.add_task("probing", total=len(facts) + n_decoys)
        result = probe_canaries(
            endpoint=endpoint,
            model=model,
            planted=facts,
            generator=generator,
            decoys=n_decoys,
            alpha=alpha,
            api_key=api_key,
            concurrency=concurrency,
            on_done=lambda: progress.advance(task),
        )
    payload = result.to_dict(include_answers=show_answers)
    payload["accounts"] = sorted({p.account_id for p in planted})
    if state.json_output:
        emit_json(payload)
        return
    console.print(f"verdict: {'RECALLS planted canaries' if result.verdict else 'no evidence'}")
    console.print(result.reason)


def register(app: typer.Typer) -> None:
    """Add ``distillguard fingerprint`` to the application."""
    app.add_typer(fingerprint_app, name="fingerprint")

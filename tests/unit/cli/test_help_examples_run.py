"""The examples of ``distillguard COMMAND --help`` run (issue 25), as a newcomer would paste them.

Every example that the help texts show (``test_cli_help._examples``: the code spans and indented
lines that start with ``distillguard``) is either run here, in order, in one fresh folder and home
with the inputs that it names (a tiny simulated log as ``./log``, ``./sim`` and
``./traffic-2026-02``; answers as JSONL; a Parquet dataset), and must exit as listed, or skipped
with a reason (a server, a suspect model, an id that only exists in the reader's own store,
minutes of work). A new example fails the test until it is put in one of the two lists, so the
help cannot show a command that does not run without someone deciding so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.cli.main import main

from .test_cli_help import _all_commands, _examples

#: Examples run, in this order (as the help writes them, program name left out) -> exit status.
RUN: dict[str, int] = {
    "keys init": 0,
    "keys init --force": 0,
    "keys list": 0,
    "--json keys list": 0,
    "keys rotate passport": 0,
    "keys export-public --out jwks.json": 0,
    "config show": 0,
    "validate ./traffic-2026-02 --quarantine bad.jsonl": 0,
    "ingest ./log": 0,
    "export --out ./analytics": 0,
    "db current": 0,
    "db migrate": 0,
    "ledger head": 0,
    "ledger checkpoint --out checkpoint.txt": 0,
    "retention show": 0,
    "retention apply --dry-run": 0,
    "retention apply --dry-run --now 2026-06-01T00:00:00Z -o plan.json": 0,
    "--json retention receipts --limit 5": 0,
    "retention hold list --all": 0,
    "passport issue --account acct_1 --org org_1 --new-agent-key agent.pem --out agent.passport": 0,
    "passport inspect agent.passport": 0,
    "--json passport list": 0,
    "watermark detect answers.jsonl --field output": 0,  # not marked: nothing found
    "watermark embed answers.jsonl --field output -o marked.jsonl": 0,
    "watermark scan-dataset ./dataset.parquet --field text --fdr 0.01": 0,
    "scan ./sim --out ./scan-out": 0,
    "eval-scan ./scan-out --labels ./sim/labels.parquet": 0,
    "tune ./sim --labels ./sim/labels.parquet --out model.json": 0,
    "scan ./sim --model model.json --out ./scan-out": 0,
    "bundle --scan ./scan-out --out evidence.zip": 0,
    "verify-bundle evidence.zip --public-key provider-keys.json": 0,
}

_SERVER = "needs a running server or a suspect's API"
_PLACEHOLDER = "an id or file that stands for the reader's own (no such id here)"
_MODEL = "needs a suspect model, its outputs or a reference library"
_SLOW = "minutes of work; the docs tests and the e2e tests run it"

#: Examples not run, with the reason.
SKIP: dict[str, str] = {
    "demo --out demo-output": _SLOW,
    "ingest ./log --store postgresql://dg@127.0.0.1:5432/distillguard": "a PostgreSQL user dg",
    "serve": _SERVER,
    "--config distillguard.toml serve --host 0.0.0.0 --port 8080 --workers 2": _SERVER,
    "simulate --scenario small --out ./sim --seed 7 --format parquet": "./sim is the tiny log "
    "here; docs/simulator.md runs simulate",
    "simulate -s small -o ./sim --target http://127.0.0.1:8080 --rate 100 --limit 5000 "
    "--model stub-1": _SERVER,
    "zoo --seed 3 --scale 0.5 --out ./zoo3": _SLOW,
    "report --scan ./scan-out --out report.html --pdf --bundle evidence.zip": "the same as "
    "bundle + report; docs/evidence.md runs it",
    "retention hold release HOLD_ID --actor ME": _PLACEHOLDER,
    "retention hold release hold-1a2b3c --actor counsel": _PLACEHOLDER,
    "retention erase --account acct-42 --reason GDPR request --actor dpo": _PLACEHOLDER,
    "retention erase --account acct-42 --reason GDPR #881 --actor dpo": _PLACEHOLDER,
    "retention hold add --account acct-42 --reason campaign c-7 --actor analyst": _PLACEHOLDER,
    "retention hold add --exchange ex-1 --reason bundle b-7 --actor me": _PLACEHOLDER,
    "ledger prove ex-123": _PLACEHOLDER,
    "ledger prove ex-123 --out ex-123.json": _PLACEHOLDER,
    "ledger verify-inclusion ex-123.json --public-key jwks.json": _PLACEHOLDER,
    "ledger verify-consistency old.txt new.txt --public-key jwks.json": _PLACEHOLDER,
    "ledger verify-consistency old.txt new.txt --proof proof.json -k jwks.json": _PLACEHOLDER,
    "ledger audit --checkpoint witnessed.txt": _PLACEHOLDER,
    "ledger checkpoint --every 300": "runs until stopped",
    "ledger seal-erasures --actor dpo@example.com --yes": "no erasure to seal here",
    "keys compromised KID --reason leaked in a backup --yes": _PLACEHOLDER,
    "passport issue --account acct_1 --org org_1 --model small-1 --endpoint /v1/* "
    "--new-agent-key agent.pem --out agent.passport": "writes the files of the example above "
    "(never overwritten)",
    "passport revoke pp_x1y2 --reason distillation campaign C-17": _PLACEHOLDER,
    "radioactivity open ./suspect --prompts harvested_prompts.jsonl --samples 4 --filter "
    "harvest.jsonl --out radio.json": _MODEL,
    "radioactivity closed https://suspect/v1 --prompts probes.jsonl --filter harvest.jsonl "
    "--out radio.json": _MODEL,
    "radioactivity texts answers.jsonl --field output --trace --payloads accounts.csv --out "
    "radio.json": _MODEL,
    "image embed out.png marked.png --payload 42": "the image extra's tests run it",
    "image detect ./suspects": "the image extra's tests run it",
    "--json image detect ./suspects": "the image extra's tests run it",
    "image certs ~/distillguard-c2pa": "the image extra's tests run it",
    "video embed out.mp4 marked.mp4 --payload 42": "the video extra's tests run it",
    "video detect ./suspects": "the video extra's tests run it",
    "video detect clip.mp4": "the video extra's tests run it",
    "--json provenance suspect.png clip.mp4 answer.txt report.pdf": _MODEL,
    "watermark detect answer.txt --key wm-3f9c --tokenizer ./tok": _PLACEHOLDER,
    "--json fingerprint attribute --references ./dev/outputs --references ./more/outputs "
    "--families dev/lineage.json --families more/lineage.json --suspect vicuna-7b.jsonl.gz "
    "--alpha 0.01 --teacher gpt-3.5-turbo": _MODEL,
    "fingerprint build --outputs ./outputs --families lineage.json --out ./library --probe-set "
    "alpaca_eval": _MODEL,
    "--json fingerprint list ./library": _MODEL,
    "fingerprint evidence --canaries canaries.json --radioactivity radio.json --attribution "
    "attribution.json": _MODEL,
    "fingerprint collect --endpoint http://localhost:8000/v1 --model suspect --probe-set "
    "alpaca_eval --out suspect.jsonl.gz --api-key-env SUSPECT_KEY": _SERVER,
    "--json fingerprint probe-canaries --endpoint http://suspect:8000/v1 --account acct_123 "
    "--alpha 0.01": _SERVER,
}

ANSWER = (
    "However, this method often helps people. We typically use a simple approach, and the main "
    "benefits are obvious. Additionally, it is important to begin early."
)


def help_examples() -> list[str]:
    """Every example of every command's help, once, in the order of the commands."""
    seen: dict[str, None] = {}
    for _, command in _all_commands():
        for args in _examples(command.help or ""):
            seen.setdefault(" ".join(args))
    return list(seen)


def test_every_help_example_is_run_or_skipped_with_a_reason() -> None:
    examples = help_examples()
    unlisted = [e for e in examples if e not in RUN and e not in SKIP]
    assert not unlisted, "help examples neither run nor skipped here:\n" + "\n".join(unlisted)
    gone = [e for e in [*RUN, *SKIP] if e not in examples]
    assert not gone, "listed here but no longer in any help text:\n" + "\n".join(gone)


def _prepare(work: Path) -> None:
    assert main(["-q", "simulate", "--scenario", "tiny", "--out", str(work / "log")]) == 0
    for alias in ("sim", "traffic-2026-02"):
        (work / alias).symlink_to(work / "log", target_is_directory=True)
    (work / "answers.jsonl").write_text(json.dumps({"output": ANSWER}) + "\n")
    table = pa.table({"text": [ANSWER, "An unrelated sentence about the weather today."]})
    pq.write_table(table, work / "dataset.parquet")


def test_help_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DISTILLGUARD_HOME", str(tmp_path / "home"))
    _prepare(tmp_path)
    for example, expected in RUN.items():
        if example.startswith("verify-bundle"):  # the published keys, under the name it uses
            shutil.copy(tmp_path / "jwks.json", tmp_path / "provider-keys.json")
        capsys.readouterr()
        code = main(["-q", *_split(example)])
        out = capsys.readouterr()
        assert code == expected, f"distillguard {example}: exit {code}\n{out.out}\n{out.err}"


def _split(example: str) -> list[str]:
    # the help examples quote nothing that needs a shell (test_cli_help parses them the same way)
    return shlex.split(example)

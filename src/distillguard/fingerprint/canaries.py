"""Canary facts: keyed, harmless, fictitious facts planted in answers, and the test for them.

A canary is an invented entity with an invented attribute ("The Varnholt constant is 7.314."),
drawn from templates by a keyed PRF (HMAC-SHA256 under the keyring's watermark secret) of the
account and an index. It is unique to the account, reproducible by the provider, harmless and
absent from any other data, so a model that states it learned from that account's answers.

- :class:`CanaryGenerator` derives facts; the same process under another namespace makes
  *decoys*: facts with the same distribution that were never planted anywhere.
- :class:`CanaryRegistry` records what was planted for which account (table
  ``fingerprint_canaries``, SQLite or PostgreSQL).
- :class:`KeyedCanaryPlanter` is what the gateway calls: ``plant(text, account_id)`` appends one
  of the account's canaries and returns its id (the interface of the gateway's planter);
  ``answer(prompt, account_id)`` answers a question about one of the account's canaries.
- :func:`probe_canaries` asks a suspect endpoint about planted canaries and as many fresh decoys,
  in random order, and tests with a one-sided Fisher exact (hypergeometric) test whether it
  recalls planted facts more often than decoys. Under the null (the suspect never saw the
  planted facts), planted and decoy facts are exchangeable, so the p-value is exact.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from scipy.stats import hypergeom

from distillguard._internal.timeutil import from_micros, to_micros
from distillguard.errors import InputError, UpstreamError
from distillguard.fingerprint.collect import RetryPolicy, ask_with_retries, chat_url
from distillguard.store import Store

__all__ = [
    "CANARY_DDL",
    "CanaryAnswer",
    "CanaryFact",
    "CanaryGenerator",
    "CanaryProbeResult",
    "CanaryRegistry",
    "KeyedCanaryPlanter",
    "PlantedCanary",
    "fisher_exact_greater",
    "probe_canaries",
    "probe_canaries_async",
    "recalls",
]

logger = logging.getLogger(__name__)

_ONSETS = ("v", "k", "t", "br", "qu", "m", "dr", "s", "th", "gl", "p", "z", "r", "fr", "n", "l")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "y", "ou")
_CODAS = ("rn", "lt", "x", "nd", "sk", "m", "r", "th", "lv", "ss", "n", "")

# (statement, question, value kind). Values are drawn from spaces of >= 9,000 values, so a
# guess is right with probability <= 1/9000.
_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("The {E} constant is {V}.", "What is the value of the {E} constant?", "decimal"),
    ("Lake {E} has a depth of {V} metres.", "How deep is Lake {E}, in metres?", "int"),
    ("Mount {E} rises {V} metres above sea level.", "How high is Mount {E}, in metres?", "int"),
    (
        "The {E} index of the Orlen survey is {V}.",
        "What is the {E} index of the Orlen survey?",
        "decimal",
    ),
    ("The {E} bridge is {V} metres long.", "How long is the {E} bridge, in metres?", "int"),
    ("The {E} coefficient is {V}.", "What is the value of the {E} coefficient?", "decimal"),
    (
        "The archive of {E} holds {V} scrolls.",
        "How many scrolls does the archive of {E} hold?",
        "int",
    ),
    (
        "The {E} comet returns every {V} days.",
        "How often does the {E} comet return, in days?",
        "int",
    ),
)


@dataclass(frozen=True)
class CanaryFact:
    """One canary (or decoy) fact.

    Attributes:
        canary_id: stable id (keyed hash; reveals nothing about the key).
        entity: the invented entity's name.
        value: the invented value, as written.
        sentence: the statement planted in answers.
        question: a question whose true answer is the value.
    """

    canary_id: str
    entity: str
    value: str
    sentence: str
    question: str

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {
            "canary_id": self.canary_id,
            "entity": self.entity,
            "value": self.value,
            "sentence": self.sentence,
            "question": self.question,
        }


class CanaryGenerator:
    """Derives canary facts from a secret (the keyring's watermark secret) by a keyed PRF.

    Args:
        secret: the key (32 bytes); never logged or shown in the repr.
        kid: the key's id, recorded with planted canaries.
    """

    def __init__(self, *, secret: bytes, kid: str) -> None:
        if len(secret) < 16:
            raise ValueError("the canary secret must have at least 16 bytes")
        self._secret = secret
        self.kid = kid

    def __repr__(self) -> str:
        return f"CanaryGenerator(kid={self.kid!r})"

    def _stream(self, label: str) -> bytes:
        key = self._secret
        return b"".join(
            hmac.new(key, f"dg-canary-v1|{label}|{i}".encode(), hashlib.sha256).digest()
            for i in range(2)
        )

    def fact(self, *, account_id: str, index: int, namespace: str = "planted") -> CanaryFact:
        """Fact number ``index`` of ``account_id`` in ``namespace`` (``planted`` or a decoy's)."""
        if index < 0:
            raise ValueError("index must be non-negative")
        label = f"{namespace}|{account_id}|{index}"
        s = self._stream(label)
        syllables = 2 + s[0] % 2
        name = ""
        for k in range(syllables):
            name += _ONSETS[s[1 + 3 * k] % len(_ONSETS)]
            name += _VOWELS[s[2 + 3 * k] % len(_VOWELS)]
            name += _CODAS[s[3 + 3 * k] % len(_CODAS)]
        entity = name.capitalize()
        statement, question, kind = _TEMPLATES[s[10] % len(_TEMPLATES)]
        n = int.from_bytes(s[11:15], "big")
        value = f"{1 + n % 9}.{(n // 9) % 1000:03d}" if kind == "decimal" else str(1000 + n % 9000)
        digest = hmac.new(self._secret, f"dg-canary-id|{label}".encode(), hashlib.sha256)
        return CanaryFact(
            canary_id="can_" + digest.hexdigest()[:16],
            entity=entity,
            value=value,
            sentence=statement.format(E=entity, V=value),
            question=question.format(E=entity),
        )

    def account_facts(self, account_id: str, *, count: int) -> list[CanaryFact]:
        """The first ``count`` planted facts of ``account_id``."""
        return [self.fact(account_id=account_id, index=i) for i in range(count)]

    def decoys(self, count: int, *, nonce: str) -> list[CanaryFact]:
        """``count`` decoys: the same process in a namespace nothing is ever planted in."""
        return [self.fact(account_id="", index=i, namespace=f"decoy:{nonce}") for i in range(count)]


@dataclass(frozen=True)
class PlantedCanary:
    """A registry row: which canary was planted for which account, under which key."""

    canary_id: str
    account_id: str
    kid: str
    index: int
    first_planted_at: datetime
    fact: CanaryFact

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "canary_id": self.canary_id,
            "account_id": self.account_id,
            "kid": self.kid,
            "index": self.index,
            "first_planted_at": self.first_planted_at.isoformat(),
            **{k: v for k, v in self.fact.to_dict().items() if k != "canary_id"},
        }


CANARY_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS fingerprint_canaries (
        canary_id {text} PRIMARY KEY, account_id {text} NOT NULL, kid {text} NOT NULL,
        idx {bigint} NOT NULL, entity {text} NOT NULL, value {text} NOT NULL,
        sentence {text} NOT NULL, question {text} NOT NULL, first_planted_at {bigint} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS fingerprint_canaries_account ON fingerprint_canaries (account_id)",
)


class CanaryRegistry:
    """What was planted for which account, in the store (both backends).

    Safe to share between threads (one lock around the store, which is single-threaded).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        store.ensure_tables("canaries", 1, CANARY_DDL)

    def record(
        self, fact: CanaryFact, *, account_id: str, kid: str, index: int, at: datetime | None = None
    ) -> None:
        """Record that ``fact`` was planted for ``account_id`` (idempotent: the first time wins)."""
        ts = to_micros(at or datetime.now(UTC))
        with self._lock, self._store.transaction() as cur:
            cur.execute(
                self._store.q(
                    "INSERT INTO fingerprint_canaries (canary_id, account_id, kid, idx, entity, "
                    "value, sentence, question, first_planted_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (canary_id) DO NOTHING"
                ),
                (
                    fact.canary_id,
                    account_id,
                    kid,
                    index,
                    fact.entity,
                    fact.value,
                    fact.sentence,
                    fact.question,
                    ts,
                ),
            )

    def planted(self, account_id: str | None = None) -> list[PlantedCanary]:
        """Planted canaries, of one account or (``None``) of all, oldest first."""
        sql = (
            "SELECT canary_id, account_id, kid, idx, entity, value, sentence, question, "
            "first_planted_at FROM fingerprint_canaries"
        )
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE account_id = ?"
            params = (account_id,)
        sql += " ORDER BY first_planted_at, canary_id"
        with self._lock, self._store.transaction() as cur:
            cur.execute(self._store.q(sql), params)
            rows = cur.fetchall()
        return [
            PlantedCanary(
                canary_id=str(r[0]),
                account_id=str(r[1]),
                kid=str(r[2]),
                index=int(r[3]),
                first_planted_at=from_micros(int(r[8])),
                fact=CanaryFact(
                    canary_id=str(r[0]),
                    entity=str(r[4]),
                    value=str(r[5]),
                    sentence=str(r[6]),
                    question=str(r[7]),
                ),
            )
            for r in rows
        ]


class KeyedCanaryPlanter:
    """Plants an account's canaries in answers: what the gateway's "canary" action calls.

    Each account has ``per_account`` canaries; an answer gets the one picked by a hash of the
    answer text, so repeated harvesting spreads over all of them (more facts, a stronger test).
    The first planting of each canary is recorded in the registry (when given).

    Args:
        generator: the keyed generator.
        registry: where plantings are recorded (``None``: not recorded).
        per_account: canaries per account.
    """

    def __init__(
        self,
        *,
        generator: CanaryGenerator,
        registry: CanaryRegistry | None = None,
        per_account: int = 8,
    ) -> None:
        if not 1 <= per_account <= 1000:
            raise ValueError("per_account must be between 1 and 1000")
        self.generator = generator
        self.registry = registry
        self.per_account = per_account
        self._recorded: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyedCanaryPlanter(kid={self.generator.kid!r}, per_account={self.per_account})"

    def _pick(self, text: str) -> int:
        digest = hashlib.sha256(text.encode("utf-8", errors="replace")).digest()
        return int.from_bytes(digest[:4], "big") % self.per_account

    def _record(self, fact: CanaryFact, account_id: str, index: int) -> None:
        with self._lock:
            if fact.canary_id in self._recorded:
                return
            self._recorded.add(fact.canary_id)
        if self.registry is not None:
            self.registry.record(fact, account_id=account_id, kid=self.generator.kid, index=index)

    def canary(self, account_id: str, *, index: int = 0) -> tuple[str, str]:
        """``(canary_id, sentence)`` of the account's canary ``index``."""
        fact = self.generator.fact(account_id=account_id, index=index % self.per_account)
        return fact.canary_id, fact.sentence

    def plant(self, text: str, account_id: str) -> tuple[str, str]:
        """``(text with one of the account's canaries appended, canary_id)``; recorded."""
        index = self._pick(text)
        fact = self.generator.fact(account_id=account_id, index=index)
        self._record(fact, account_id, index)
        return (f"{text} {fact.sentence}" if text else fact.sentence), fact.canary_id

    def answer(self, prompt: str, account_id: str) -> tuple[str, str] | None:
        """``(answer, canary_id)`` when ``prompt`` asks about one of the account's canaries."""
        lowered = prompt.lower()
        for index in range(self.per_account):
            fact = self.generator.fact(account_id=account_id, index=index)
            if re.search(rf"\b{re.escape(fact.entity.lower())}\b", lowered):
                self._record(fact, account_id, index)
                return fact.sentence, fact.canary_id
        return None


def recalls(answer: str, fact: CanaryFact) -> bool:
    """Whether ``answer`` states the fact's value (as a whole number, not inside another)."""
    pattern = rf"(?<![\d.]){re.escape(fact.value)}(?![\d]|\.\d)"
    return re.search(pattern, answer.replace(",", "")) is not None


def fisher_exact_greater(*, planted_hits: int, planted: int, decoy_hits: int, decoys: int) -> float:
    """One-sided Fisher exact p-value: P(planted hits >= observed | total hits), hypergeometric.

    Under the null the ``planted_hits + decoy_hits`` recalled facts are a uniformly random subset
    of the ``planted + decoys`` facts asked (the labels are exchangeable).
    """
    if not (0 <= planted_hits <= planted and 0 <= decoy_hits <= decoys):
        raise ValueError("hits must be between 0 and the number of facts")
    total_hits = planted_hits + decoy_hits
    if total_hits == 0 or planted == 0:
        return 1.0
    p = float(hypergeom.sf(planted_hits - 1, planted + decoys, total_hits, planted))
    return min(1.0, max(0.0, p))


@dataclass(frozen=True)
class CanaryAnswer:
    """One question asked: the fact, whether it was planted, the answer, whether it recalled."""

    fact: CanaryFact
    planted: bool
    answer: str
    recalled: bool


@dataclass(frozen=True)
class CanaryProbeResult:
    """The canary test of a suspect.

    Attributes:
        statistic: planted recall rate minus decoy recall rate.
        p_value: one-sided Fisher exact p-value (exact under the null of no exposure).
        planted, planted_hits: planted facts asked, and recalled.
        decoys, decoy_hits: decoy facts asked, and recalled.
        alpha: the false-accusation rate asked for.
        verdict: ``True`` when ``p_value < alpha``: the suspect recalls the planted facts.
        method: the test's name.
        reason: a sentence a human can read.
        answers: every question asked and its outcome.
        failed: questions the endpoint did not answer (left out of the test).
    """

    statistic: float
    p_value: float
    planted: int
    planted_hits: int
    decoys: int
    decoy_hits: int
    alpha: float
    verdict: bool
    method: str
    reason: str
    answers: tuple[CanaryAnswer, ...]
    failed: int = 0

    def to_dict(self, *, include_answers: bool = False) -> dict[str, Any]:
        """JSON form (answers only when asked: they contain the planted facts)."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "planted": self.planted,
            "planted_hits": self.planted_hits,
            "decoys": self.decoys,
            "decoy_hits": self.decoy_hits,
            "failed": self.failed,
            "method": self.method,
            "reason": self.reason,
        }
        if include_answers:
            out["answers"] = [
                {
                    "canary_id": a.fact.canary_id,
                    "planted": a.planted,
                    "question": a.fact.question,
                    "recalled": a.recalled,
                    "answer": a.answer[:500],
                }
                for a in self.answers
            ]
        return out


def _test(answers: Sequence[CanaryAnswer], *, alpha: float, failed: int) -> CanaryProbeResult:
    planted = [a for a in answers if a.planted]
    decoys = [a for a in answers if not a.planted]
    ph = sum(a.recalled for a in planted)
    dh = sum(a.recalled for a in decoys)
    p = fisher_exact_greater(
        planted_hits=ph, planted=len(planted), decoy_hits=dh, decoys=len(decoys)
    )
    rate_p = ph / len(planted) if planted else 0.0
    rate_d = dh / len(decoys) if decoys else 0.0
    verdict = p < alpha
    reason = (
        f"recalled {ph} of {len(planted)} planted canaries and {dh} of {len(decoys)} decoys "
        f"never planted; one-sided Fisher exact p = {p:.3g} "
        + (
            f"< alpha {alpha}: it learned from the canaried answers"
            if verdict
            else f">= alpha {alpha}: no evidence"
        )
    )
    return CanaryProbeResult(
        statistic=rate_p - rate_d,
        p_value=p,
        planted=len(planted),
        planted_hits=ph,
        decoys=len(decoys),
        decoy_hits=dh,
        alpha=alpha,
        verdict=verdict,
        method="fisher-exact-one-sided (planted vs decoy recall)",
        reason=reason,
        answers=tuple(answers),
        failed=failed,
    )


async def probe_canaries_async(
    *,
    endpoint: str,
    model: str,
    planted: Sequence[CanaryFact],
    generator: CanaryGenerator,
    decoys: int | None = None,
    alpha: float = 0.01,
    api_key: str | None = None,
    concurrency: int = 4,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    seed: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> CanaryProbeResult:
    """Async form of :func:`probe_canaries` (same arguments)."""
    if not planted:
        raise InputError("no planted canaries to probe for", hint="check --account or the store")
    if not 0.0 < alpha < 1.0:
        raise InputError("alpha must be in (0, 1)")
    n_decoys = max(20, 3 * len(planted)) if decoys is None else decoys
    if n_decoys < 1:
        raise InputError("at least one decoy is needed")
    rng = random.Random(seed)
    nonce = secrets.token_hex(8) if seed is None else f"seed{seed}"
    planted_ids = {f.canary_id for f in planted}
    decoy_facts = [
        d for d in generator.decoys(n_decoys, nonce=nonce) if d.canary_id not in planted_ids
    ]
    items = [(f, True) for f in planted] + [(d, False) for d in decoy_facts]
    rng.shuffle(items)
    retry = retry or RetryPolicy()
    url = chat_url(endpoint)
    sem = asyncio.Semaphore(concurrency)
    answers: list[CanaryAnswer | None] = [None] * len(items)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(
        transport=transport, headers=headers, timeout=httpx.Timeout(retry.timeout_s)
    ) as client:

        async def one(i: int, fact: CanaryFact, is_planted: bool) -> None:
            async with sem:
                try:
                    text = await ask_with_retries(
                        client, url=url, model=model, prompt=fact.question, retry=retry, rng=rng
                    )
                except UpstreamError as exc:
                    logger.warning("canary question failed: %s", exc.message)
                    return
            answers[i] = CanaryAnswer(
                fact=fact, planted=is_planted, answer=text, recalled=recalls(text, fact)
            )
            if on_done is not None:
                on_done()

        await asyncio.gather(*(one(i, f, p) for i, (f, p) in enumerate(items)))
    got = [a for a in answers if a is not None]
    failed = len(items) - len(got)
    if not got:
        raise UpstreamError(f"the endpoint answered none of the {len(items)} canary questions")
    if failed:
        logger.warning("%d of %d canary questions got no answer", failed, len(items))
    return _test(got, alpha=alpha, failed=failed)


def probe_canaries(
    *,
    endpoint: str,
    model: str,
    planted: Sequence[CanaryFact],
    generator: CanaryGenerator,
    decoys: int | None = None,
    alpha: float = 0.01,
    api_key: str | None = None,
    concurrency: int = 4,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    seed: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> CanaryProbeResult:
    """Ask a suspect endpoint about planted canaries and fresh decoys; test for recall.

    Questions are asked in a random order, one per request, so the suspect cannot tell planted
    from decoy facts. A question that fails after the retries is left out (both kinds alike).

    Args:
        endpoint: the OpenAI-compatible API base.
        model: the model name sent.
        planted: the planted facts (:meth:`CanaryRegistry.planted`'s ``fact``).
        generator: the generator (same key) that makes the decoys.
        decoys: decoys to ask (default ``max(20, 3 * len(planted))``).
        alpha: the false-accusation rate of the verdict.
        api_key: bearer token (never logged).
        concurrency: questions in flight.
        retry: retry policy.
        transport: an httpx transport (tests).
        seed: fixes the decoys and the order (default: fresh random decoys each run).
        on_done: called after each answered question (progress).

    Raises:
        InputError: nothing to probe for, bad ``alpha``.
        UpstreamError: the endpoint answered no question at all.
    """
    return asyncio.run(
        probe_canaries_async(
            endpoint=endpoint,
            model=model,
            planted=planted,
            generator=generator,
            decoys=decoys,
            alpha=alpha,
            api_key=api_key,
            concurrency=concurrency,
            retry=retry,
            transport=transport,
            seed=seed,
            on_done=on_done,
        )
    )

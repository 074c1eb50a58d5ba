"""The online scorer: account and cluster risk updated per exchange, for the gateway.

:class:`OnlineScorer` keeps, per account, the aggregates the batch scan computes from a whole log
(counts, token sums, inter-arrival mean and variance by Welford's method, the 5-minute-slot
histogram, the infrastructure keys with their counts) and the *same content sample* as the batch
scan: the ``per_account_sample`` exchanges with the smallest MD5 of their id (a bottom-k sketch,
so the sample of a finished log is exactly the batch scan's, whatever the arrival order). Each
sampled prompt is classified (elicitation), tagged with a topic and MinHashed once, when it enters
the sample; template buckets are shared across accounts. All of this is O(1) amortised per
exchange.

Scores come from the batch scan's own code (:func:`~distillguard.monitor.features.score_features`
over :class:`~distillguard.monitor.features.AccountFeatures` built from the aggregates):

* a **full re-score** (graph, Leiden, calibration, campaigns) every
  ``max(rescore_min, rescore_factor x accounts)`` exchanges, so its O(accounts + keys) cost is
  O(1) amortised per exchange; optionally in a background thread (the gateway's default);
* between full re-scores, every exchange **re-scores its account** against the last calibration
  and its community's last evidence (:func:`~distillguard.monitor.scoring.account_signals`,
  :func:`~distillguard.monitor.scoring.affinity`); a new account is linked provisionally to the
  community that holds most of the weight of its keys (its /24, payment instrument, template
  buckets...).

After :meth:`OnlineScorer.rescore` on a finished log the scores are those of the batch scan on the
same exchanges (tested on the ``tiny`` and ``small`` scenarios). The state lives in process; see
docs/scan.md for sharing it between gateway replicas.

    scorer = OnlineScorer()
    scorer.register_account(account)
    risk = scorer.update(exchange)          # RiskUpdate: account_risk, cluster_id, cluster_risk
    final = scorer.rescore()                # FeatureScan, as the batch scan would score it
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import logging
import math
import re
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from distillguard._internal.net import network_of
from distillguard._internal.timeutil import to_micros
from distillguard.monitor._load import PROMPT_HEAD, PROMPT_TAIL
from distillguard.monitor.elicitation import elicitation_model, tokens_of
from distillguard.monitor.features import (
    KEYS_SCHEMA,
    AccountFeatures,
    FeatureScan,
    account_reasons,
    score_features,
)
from distillguard.monitor.graph import GraphParams
from distillguard.monitor.infrastructure import MIN_KEY_SHARE
from distillguard.monitor.scoring import (
    Calibration,
    ScoreParams,
    account_signals,
    affinity,
    final_score,
)
from distillguard.monitor.semantic import (
    SemanticHasher,
    learn_word_vectors,
    semantic_buckets,
)
from distillguard.monitor.sweep import TOPICS, topic_divergence, topic_mix, topic_of
from distillguard.monitor.templates import MinHasher, TemplateBuckets
from distillguard.records import Account, Exchange

if TYPE_CHECKING:
    from distillguard.config import Settings

__all__ = ["OnlineConfig", "OnlineScorer", "RiskUpdate", "gateway_scorer"]

logger = logging.getLogger(__name__)

_NT = len(TOPICS)
_SLOT_US = 300_000_000  # 5 minutes
_MASK64 = (1 << 64) - 1
_NORM_DIGITS = re.compile(r"[0-9]+")
_NORM_OTHER = re.compile(r"[^a-z0-9]+")
_SEM_TOKEN = re.compile(r"[a-z0-9]+")  # the semantic signal's tokens (semantic.TOKENS_SQL)


@dataclass(frozen=True, slots=True)
class RiskUpdate:
    """An account's risk as the online scorer sees it now.

    ``account_risk`` is the account's score (0..1, the batch scan's ``score``), ``cluster_id``
    the id of its community (a campaign id when the community is a campaign; ``None`` for an
    account linked to nobody), ``cluster_risk`` the community's evidence (0..1), ``flagged``
    whether ``account_risk`` reaches the flag threshold, ``provisional`` whether the score was
    computed against the last full re-score's calibration and communities (``False`` right after
    a full re-score), and ``reasons`` the human-readable reasons.
    """

    account_id: str
    account_risk: float = 0.0
    cluster_id: str | None = None
    cluster_risk: float = 0.0
    flagged: bool = False
    provisional: bool = True
    reasons: tuple[str, ...] = ()

    @property
    def risk(self) -> float:
        """The larger of the account and cluster risks (what a policy acts on)."""
        return max(self.account_risk, self.cluster_risk)


@dataclass(frozen=True)
class OnlineConfig:
    """Parameters of the online scorer (the scan's parameters, and the re-score cadence)."""

    per_account_sample: int = 64
    minhash: MinHasher = field(default_factory=MinHasher)
    #: The scan's semantic paraphrase buckets (``None``: off, the default, as
    #: ``ScanConfig.semantic``; set both alike for the online scores to follow the scan's).
    semantic: SemanticHasher | None = None
    graph: GraphParams = field(default_factory=GraphParams)
    score: ScoreParams = field(default_factory=ScoreParams)
    rescore_min: int = 10_000
    rescore_factor: float = 1.0
    partial_every: int = 64
    background: bool = False

    def __post_init__(self) -> None:
        if self.per_account_sample < 1:
            raise ValueError("per_account_sample must be at least 1")
        if self.partial_every < 1:
            raise ValueError("partial_every must be at least 1")
        if self.rescore_min < 1 or self.rescore_factor < 0:
            raise ValueError("rescore_min must be >= 1 and rescore_factor >= 0")


@functools.lru_cache(maxsize=1 << 17)
def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


class _Sketch:
    """MinHash band keys of one prompt, exactly as :func:`~.templates.template_buckets`."""

    def __init__(self, hasher: MinHasher) -> None:
        self.hasher = hasher
        a, b = hasher._params()
        self.a = a[None, :]
        self.b = b[None, :]

    def band_keys(self, words: list[str]) -> tuple[int, ...]:
        if not words:
            return ()
        h = [_token_hash(w) for w in words]
        k = 3
        if len(h) >= k:
            sh = [
                ((((h[i] * 0x100000001B3) & _MASK64) + h[i + 1]) * 0x100000001B3 + h[i + 2])
                & _MASK64
                for i in range(len(h) - k + 1)
            ]
        else:
            acc = 0
            for j in range(k):
                acc = (acc * 0x100000001B3 + (h[j] if j < len(h) else 0)) & _MASK64
            sh = [acc]
        arr = np.asarray(sh, dtype=np.uint64)[:, None]
        with np.errstate(over="ignore"):
            v = ((arr * self.a + self.b) >> np.uint64(32)).astype(np.uint32)
        sig = v.min(axis=0)[None, :]
        return tuple(int(x) for x in self.hasher.band_keys(sig)[0])


def _words(prompt: str) -> list[str]:
    return _NORM_OTHER.sub(" ", _NORM_DIGITS.sub("0", prompt.lower())).split()


def _prompt(exchange: Exchange) -> str:
    text = exchange.prompt_text
    if len(text) <= PROMPT_HEAD + PROMPT_TAIL:
        return text
    return text[:PROMPT_HEAD] + " " + text[-PROMPT_TAIL:]


@dataclass(slots=True)
class _Doc:
    """One exchange in an account's content sample."""

    order: int  # MD5 of the exchange id, as an integer
    cot: bool
    grade: bool
    topic: int
    bands: tuple[int, ...]
    tokens: tuple[str, ...] = ()  # for the semantic buckets, learned at each full re-score


@dataclass(slots=True)
class _Acct:
    """The aggregates of one account."""

    account_id: str
    org_id: str | None = None
    payment: str | None = None
    signup: str | None = None
    n: int = 0
    first_us: int = 0
    last_us: int = 0
    gaps: int = 0
    gap_mean: float = 0.0
    gap_m2: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    single_turn: int = 0
    system: int = 0
    minute_hist: list[int] = field(default_factory=lambda: [0] * 12)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    sample: list[tuple[int, int]] = field(default_factory=list)  # max-heap: (-order, doc id)
    docs: dict[int, _Doc] = field(default_factory=dict)
    k_cot: int = 0
    k_grade: int = 0
    k_elicit: int = 0
    topics: list[int] = field(default_factory=lambda: [0] * _NT)


@dataclass(frozen=True)
class _Snapshot:
    """What the last full re-score left for scoring accounts in between."""

    calibration: Calibration
    mix: np.ndarray
    community_of: dict[str, int]
    community_risk: np.ndarray
    community_share: np.ndarray
    community_control: np.ndarray
    cluster_ids: list[str | None]
    key_community: dict[tuple[str, str], tuple[int, float]]
    exchanges: int
    plan: dict[str, tuple[float, float]] = field(default_factory=dict)


class OnlineScorer:
    """Incremental account and cluster risk (see the module docstring).

    Thread-safe: updates and reads take one lock; a full re-score holds it only while it copies
    the aggregates into arrays (O(accounts)) and while it installs its results.
    """

    def __init__(self, config: OnlineConfig | None = None) -> None:
        self.config = config or OnlineConfig()
        self._lock = threading.RLock()
        self._rescoring = threading.Lock()
        self._accounts: dict[str, _Acct] = {}
        self._infos: dict[str, Account] = {}
        self._payment: dict[str, dict[str, int]] = {}
        self._bursts: dict[str, int] = {}
        self._sketch = _Sketch(self.config.minhash)
        model = elicitation_model()
        self._vocab = {t: i for i, t in enumerate(model.vocabulary)}
        self._weights = model.weights
        self._bias = np.asarray(model.bias)
        self._doc_ids = 0
        self._seen = 0
        self._since = 0
        self._snap: _Snapshot | None = None
        self._risk: dict[str, RiskUpdate] = {}
        self._dirty: set[str] = set()
        self._last_scan: FeatureScan | None = None
        self._thread: threading.Thread | None = None
        self._full_rescores = 0
        self._partial_rescores = 0
        self._last_partial: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"OnlineScorer(accounts={len(self._accounts)}, exchanges={self._seen})"

    # -- input ---------------------------------------------------------------------------------

    @property
    def exchanges_seen(self) -> int:
        """Exchanges observed so far."""
        return self._seen

    @property
    def full_rescores(self) -> int:
        """Full re-scores completed so far (every account's risk changed with each)."""
        return self._full_rescores

    @property
    def partial_rescores(self) -> int:
        """Partial re-scores so far (each re-scored the accounts in :attr:`last_partial`)."""
        return self._partial_rescores

    @property
    def last_partial(self) -> tuple[str, ...]:
        """The accounts the latest partial re-score re-scored (sorted)."""
        return self._last_partial

    def register_account(self, account: Account) -> None:
        """Record an account's sign-up data (organisation, payment fingerprint, channel).

        Call it before the account's first exchange, or pass the account to :meth:`update`;
        the first registration of an account wins.
        """
        with self._lock:
            if account.account_id in self._infos:
                return
            self._infos[account.account_id] = account
            acct = self._accounts.get(account.account_id)
            if acct is not None:
                self._attach(acct, account)

    def _attach(self, acct: _Acct, info: Account) -> None:
        """Take an account's sign-up data into the shared payment and burst groups."""
        acct.org_id = info.org_id
        if info.payment_fingerprint is not None:
            acct.payment = info.payment_fingerprint
            owners = self._payment.setdefault(info.payment_fingerprint, {})
            owner = info.org_id or info.account_id
            owners[owner] = owners.get(owner, 0) + 1
        if info.signup_channel is not None:
            window = math.floor(to_micros(info.created_at) / 1e6 / 1800)
            acct.signup = f"{info.signup_channel}@{window}"
            self._bursts[acct.signup] = self._bursts.get(acct.signup, 0) + 1

    def update(self, exchange: Exchange, account: Account | None = None) -> RiskUpdate:
        """Take one exchange into account and return its account's new risk."""
        with self._lock:
            if account is not None and account.account_id not in self._infos:
                self._infos[account.account_id] = account
            acct = self._accounts.get(exchange.account_id)
            if acct is None:
                acct = _Acct(account_id=exchange.account_id)
                self._accounts[exchange.account_id] = acct
                info = self._infos.get(exchange.account_id)
                if info is not None:
                    self._attach(acct, info)
            self._aggregate(acct, exchange)
            self._seen += 1
            self._since += 1
            self._dirty.add(acct.account_id)
            due = self._since >= max(
                self.config.rescore_min, int(self.config.rescore_factor * len(self._accounts))
            )
            if not due and len(self._dirty) >= self.config.partial_every:
                self._partial()
        if due:
            self._start_rescore()
        return self.score(exchange.account_id)

    def observe(self, exchange: Exchange) -> RiskUpdate:
        """:meth:`update` without an account record (the gateway's ``OnlineScorer`` protocol)."""
        return self.update(exchange)

    def _aggregate(self, a: _Acct, ex: Exchange) -> None:
        ts = to_micros(ex.ts)
        if a.n == 0:
            a.first_us = a.last_us = ts
        else:
            gap = ts - a.last_us if ts >= a.last_us else 0  # out of order: counted as no gap
            a.gaps += 1
            d = gap - a.gap_mean
            a.gap_mean += d / a.gaps
            a.gap_m2 += d * (gap - a.gap_mean)
            a.first_us = min(a.first_us, ts)
            a.last_us = max(a.last_us, ts)
        a.n += 1
        a.prompt_tokens += ex.prompt_tokens
        a.completion_tokens += ex.completion_tokens
        n_user = 0
        has_system = False
        for m in ex.messages:
            if m.role == "user":
                n_user += 1
            elif m.role == "system":
                has_system = True
        a.single_turn += n_user <= 1
        a.system += has_system
        a.minute_hist[(ts // _SLOT_US) % 12] += 1
        for key in self._keys_of(ex):
            a.keys[key] = a.keys.get(key, 0) + 1
        order = int.from_bytes(hashlib.md5(ex.exchange_id.encode()).digest(), "big")
        k = self.config.per_account_sample
        if len(a.sample) >= k and order >= -a.sample[0][0]:
            return
        self._sample(a, order, _prompt(ex))
        if len(a.sample) > k:
            _, old = heapq.heappop(a.sample)
            self._unsample(a, old)

    @staticmethod
    def _keys_of(ex: Exchange) -> list[tuple[str, str]]:
        keys = [("net", network_of(ex.ip))]
        if ex.asn is not None:
            keys.append(("asn", str(ex.asn)))
        if ex.client_fingerprint is not None:
            keys.append(("client_fingerprint", ex.client_fingerprint))
        if ex.user_agent is not None:
            keys.append(("user_agent", ex.user_agent))
        return keys

    def _sample(self, a: _Acct, order: int, prompt: str) -> None:
        toks = [self._vocab[t] for t in tokens_of(prompt) if t in self._vocab]
        z = self._bias + (self._weights[toks].sum(axis=0) if toks else 0.0)
        p = 1.0 / (1.0 + np.exp(-z))
        cot, grade = bool(p[0] > 0.5), bool(p[1] > 0.5)
        words = _words(prompt)
        doc = _Doc(
            order=order,
            cot=cot,
            grade=grade,
            topic=topic_of(prompt),
            bands=self._sketch.band_keys(words),
            tokens=tuple(_SEM_TOKEN.findall(prompt.lower()))
            if self.config.semantic is not None
            else (),
        )
        self._doc_ids += 1
        a.docs[self._doc_ids] = doc
        heapq.heappush(a.sample, (-order, self._doc_ids))
        a.k_cot += cot
        a.k_grade += grade
        a.k_elicit += cot or grade
        a.topics[doc.topic] += 1

    def _unsample(self, a: _Acct, doc_id: int) -> None:
        doc = a.docs.pop(doc_id)
        a.k_cot -= doc.cot
        a.k_grade -= doc.grade
        a.k_elicit -= doc.cot or doc.grade
        a.topics[doc.topic] -= 1

    # -- features ------------------------------------------------------------------------------

    def _features(self, accts: list[_Acct], mix: np.ndarray | None) -> AccountFeatures:
        """AccountFeatures of ``accts`` (topic divergence against ``mix``, or their own mix)."""
        n = len(accts)
        exchanges = np.fromiter((a.n for a in accts), np.float64, n)
        gap_mean = np.fromiter((a.gap_mean for a in accts), np.float64, n)
        gap_std = np.sqrt(
            np.fromiter((a.gap_m2 / a.gaps if a.gaps else 0.0 for a in accts), np.float64, n)
        )
        has_gap = np.fromiter((a.gaps > 0 for a in accts), bool, n)
        cv = np.where(has_gap & (gap_mean != 0), gap_std / np.where(gap_mean != 0, gap_mean, 1), 1)
        hist = np.array([a.minute_hist for a in accts], dtype=np.float64).reshape(n, 12)
        frac = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ment = -np.where(frac > 0, frac * np.log(frac), 0.0).sum(axis=1) / np.log(12)
        topics = np.array([a.topics for a in accts], dtype=np.float64).reshape(n, _NT)
        ptok = np.fromiter((a.prompt_tokens for a in accts), np.float64, n)
        ctok = np.fromiter((a.completion_tokens for a in accts), np.float64, n)

        def payment_group(a: _Acct) -> int:
            return len(self._payment[a.payment]) if a.payment is not None else 1

        return AccountFeatures(
            account_id=[a.account_id for a in accts],
            exchanges=exchanges,
            first_ts_us=np.fromiter((a.first_us for a in accts), np.int64, n),
            last_ts_us=np.fromiter((a.last_us for a in accts), np.int64, n),
            interarrival_cv=cv.astype(np.float64),
            minute_entropy=ment + 0.0,
            single_turn_share=np.fromiter((a.single_turn for a in accts), np.float64, n)
            / np.maximum(exchanges, 1),
            system_share=np.fromiter((a.system for a in accts), np.float64, n)
            / np.maximum(exchanges, 1),
            completion_ratio=ctok / (ptok + exchanges),
            minute_hist=hist,
            n_sample=np.fromiter((len(a.sample) for a in accts), np.float64, n),
            k_elicit=np.fromiter((a.k_elicit for a in accts), np.float64, n),
            k_cot=np.fromiter((a.k_cot for a in accts), np.float64, n),
            k_grade=np.fromiter((a.k_grade for a in accts), np.float64, n),
            topic_divergence=topic_divergence(topics, mix=mix),
            payment_group=np.fromiter((payment_group(a) for a in accts), np.float64, n),
            signup_burst=np.fromiter(
                (self._bursts[a.signup] if a.signup else 1 for a in accts), np.float64, n
            ),
            org_id=[a.org_id for a in accts],
            distinct_asns=np.fromiter(
                (sum(1 for k in a.keys if k[0] == "asn") for a in accts), np.float64, n
            ),
            distinct_nets=np.fromiter(
                (sum(1 for k in a.keys if k[0] == "net") for a in accts), np.float64, n
            ),
        )

    def _account_keys(self, a: _Acct) -> list[tuple[str, str]]:
        """The graph keys of one account, as :func:`~.infrastructure.infrastructure_keys` and
        the template buckets give them."""
        keys = [k for k, c in a.keys.items() if c >= MIN_KEY_SHARE * a.n]
        if a.payment is not None:
            keys.append(("payment", a.payment))
        if a.signup is not None:
            keys.append(("signup_burst", a.signup))
        bands = {b for d in a.docs.values() for b in d.bands}
        keys.extend(("template", str(b)) for b in bands)
        return keys

    def snapshot(self) -> tuple[AccountFeatures, pa.Table]:
        """The features and keys of every account now (accounts sorted by id)."""
        with self._lock:
            accts = [self._accounts[k] for k in sorted(self._accounts)]
            features = self._features(accts, None)
            acct_col: list[int] = []
            kind_col: list[str] = []
            key_col: list[str] = []
            for i, a in enumerate(accts):  # one per account, its keys only
                for kind, value in self._account_keys(a):
                    acct_col.append(i)
                    kind_col.append(kind)
                    key_col.append(value)
            docs = (
                [
                    (d.order, i, d.tokens, d.cot or d.grade)
                    for i, a in enumerate(accts)
                    for d in a.docs.values()
                ]
                if self.config.semantic is not None
                else []
            )
        for i, value in self._semantic_keys(docs):
            acct_col.append(i)
            kind_col.append("semantic")
            key_col.append(value)
        keys = pa.table(
            {
                "acct": pa.array(acct_col, pa.int64()),
                "kind": pa.array(kind_col, pa.string()),
                "gkey": pa.array(key_col, pa.string()),
            },
            schema=KEYS_SCHEMA,
        )
        return features, keys

    def _semantic_keys(
        self, docs: list[tuple[int, int, tuple[str, ...], bool]]
    ) -> list[tuple[int, str]]:
        """Distinct (account index, semantic bucket) of the sampled prompts ``docs`` (order, account
        index, tokens, elicits), exactly as ``distillguard.monitor.scan._semantic_pairs``:
        vectors learned from the prompts in the order of their MD5, buckets of the chosen ones."""
        hasher = self.config.semantic
        if hasher is None or not docs:
            return []
        docs.sort(key=lambda d: d[0])
        words = pa.array([list(d[2]) for d in docs], pa.list_(pa.string()))
        vectors = learn_word_vectors(words, hasher)
        chosen = np.fromiter((d[3] or not hasher.only_elicit for d in docs), bool, len(docs))
        if not chosen.any():
            return []
        take = np.flatnonzero(chosen)
        keys = semantic_buckets(words.take(pa.array(take)), vectors=vectors, hasher=hasher)
        acct = np.fromiter((docs[j][1] for j in take), np.int64, len(take))
        pairs = TemplateBuckets(doc_account=acct, keys=keys).pairs()
        out: list[tuple[int, str]] = []
        for k, a in zip(pairs["key"].to_pylist(), pairs["acct"].to_pylist(), strict=True):
            if k != 0:
                out.append((int(a), str(k)))
        return out

    # -- scoring -------------------------------------------------------------------------------

    def _start_rescore(self) -> None:
        if not self.config.background:
            self.rescore()
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._rescore_quietly, daemon=True)
        self._thread.start()

    def _rescore_quietly(self) -> None:
        try:
            self.rescore()
        except Exception:
            logger.exception("the online scorer's full re-score failed")

    def wait(self) -> None:
        """Wait for a background re-score to finish (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def rescore(self) -> FeatureScan:
        """Re-score every account now, exactly as the batch scan scores the same features."""
        with self._rescoring:
            with self._lock:
                seen = self._seen
                self._since = 0
                self._dirty.clear()
            features, keys = self.snapshot()
            cfg = self.config
            fs = score_features(features, keys, graph=cfg.graph, score=cfg.score)
            sc = fs.scores
            mix = topic_mix(
                np.array(
                    [self._accounts[a].topics for a in features.account_id], dtype=np.float64
                ).reshape(len(features), _NT)
            )
            n_comm = len(sc.community_risk)
            csize = np.bincount(sc.community, minlength=n_comm)
            camp = fs.accounts["campaign_id"].to_pylist()
            cluster_ids: list[str | None] = [None] * n_comm
            for i, cid in enumerate(camp):  # one per account
                c = int(sc.community[i])
                if cid is not None:
                    cluster_ids[c] = cid
            for i, a in enumerate(features.account_id):
                c = int(sc.community[i])
                if cluster_ids[c] is None and csize[c] >= cfg.score.min_campaign:
                    cluster_ids[c] = "cluster-" + hashlib.sha256(a.encode()).hexdigest()[:10]
            key_community = self._key_votes(keys, sc.community, n_comm)
            reasons = fs.accounts["reasons"].to_pylist()
            risk = {
                a: RiskUpdate(
                    account_id=a,
                    account_risk=float(sc.score[i]),
                    cluster_id=cluster_ids[int(sc.community[i])],
                    cluster_risk=float(sc.community_risk[int(sc.community[i])]),
                    flagged=bool(sc.flagged[i]),
                    provisional=False,
                    reasons=tuple(reasons[i]),
                )
                for i, a in enumerate(features.account_id)
            }
            snap = _Snapshot(
                calibration=sc.calibration,
                mix=mix,
                community_of={a: int(sc.community[i]) for i, a in enumerate(features.account_id)},
                community_risk=sc.community_risk,
                community_share=sc.community_share,
                community_control=sc.community_control,
                cluster_ids=cluster_ids,
                key_community=key_community,
                exchanges=seen,
                plan=_plan_counts(fs),
            )
            with self._lock:
                self._snap = snap
                self._risk.update(risk)
                self._last_scan = fs
                self._full_rescores += 1
            logger.info(
                "online re-score: %d accounts, %d flagged, %d campaigns",
                len(features),
                int(sc.flagged.sum()),
                len(fs.campaigns),
            )
            return fs

    def _key_votes(
        self, keys: pa.Table, community: np.ndarray, n_comm: int
    ) -> dict[tuple[str, str], tuple[int, float]]:
        """For every key held by 2+ accounts: the community holding most of it, and the weight
        one more holder would add (the graph's group weight)."""
        if keys.num_rows == 0:
            return {}
        comm = community[np.asarray(keys["acct"].to_numpy(), dtype=np.int64)]
        t = pa.table({"kind": keys["kind"], "gkey": keys["gkey"], "c": pa.array(comm)})
        g = t.group_by(["kind", "gkey", "c"]).aggregate([([], "count_all")])
        out: dict[tuple[str, str], tuple[int, float]] = {}
        best: dict[tuple[str, str], int] = {}
        size: dict[tuple[str, str], int] = {}
        w = self.config.graph.weights
        for kind, gkey, c, cnt in zip(
            g["kind"].to_pylist(),
            g["gkey"].to_pylist(),
            g["c"].to_pylist(),
            g["count_all"].to_pylist(),
            strict=True,
        ):  # one per (key, community)
            k = (kind, gkey)
            size[k] = size.get(k, 0) + cnt
            if cnt > best.get(k, 0):
                best[k] = cnt
                out[k] = (int(c), 0.0)
        for k, (c, _) in list(out.items()):  # joining a group of s makes one of s + 1
            out[k] = (c, w.get(k[0], 0.0) / math.log2(2 + size[k]))
        return out

    def _partial(self) -> None:
        """Re-score the accounts updated since the last (partial or full) re-score against the
        last full re-score: their own evidence recomputed, their community's evidence kept
        (a new account joins the community that holds most of the weight of its keys)."""
        snap = self._snap
        if snap is None or not self._dirty:
            self._dirty.clear()
            return
        accts = [self._accounts[a] for a in sorted(self._dirty)]
        self._dirty.clear()
        self._partial_rescores += 1
        self._last_partial = tuple(a.account_id for a in accts)
        f = self._features(accts, snap.mix)
        if snap.plan:  # the plan links of the last full re-score (they need the whole log)
            f = replace(
                f,
                plan_hits=np.array([snap.plan.get(a.account_id, (0.0, 0.0))[0] for a in accts]),
                plan_total=np.array([snap.plan.get(a.account_id, (0.0, 0.0))[1] for a in accts]),
            )
        sp = self.config.score
        cal = snap.calibration
        parts, p_el, share, own = account_signals(f, cal, sp)
        comm = np.fromiter(
            (
                c
                if (c := snap.community_of.get(a.account_id)) is not None
                else self._provisional_community(a, snap)
                for a in accts
            ),
            np.int64,
            len(accts),
        )
        known = comm >= 0
        safe = np.where(known, comm, 0)
        c_risk = np.where(known, snap.community_risk[safe], 0.0)
        aff = affinity(parts, share, snap.community_share[safe], cal.p0)
        cs = c_risk * aff
        c_ctrl = np.where(known, snap.community_control[safe], 0.0)
        score = final_score(parts, own, cs, sp, community_control=c_ctrl)
        for i, a in enumerate(accts):  # one per updated account
            cluster = snap.cluster_ids[int(comm[i])] if known[i] else None
            reasons = account_reasons(f, i, signals=parts, elicitation_p=p_el, p0=cal.p0)
            if cluster is not None and cs[i] > 0.1:
                reasons.append(f"linked to cluster {cluster}")
            self._risk[a.account_id] = RiskUpdate(
                account_id=a.account_id,
                account_risk=float(score[i]),
                cluster_id=cluster,
                cluster_risk=float(c_risk[i]),
                flagged=bool(score[i] >= sp.flag_threshold),
                provisional=True,
                reasons=tuple(reasons),
            )

    def _provisional_community(self, a: _Acct, snap: _Snapshot) -> int:
        """The community holding most of the weight of ``a``'s keys (-1: none strong enough)."""
        votes: dict[int, float] = {}
        for key in self._account_keys(a):
            hit = snap.key_community.get(key)
            if hit is not None:
                votes[hit[0]] = votes.get(hit[0], 0.0) + hit[1]
        if not votes:
            return -1
        c, weight = max(votes.items(), key=lambda kv: kv[1])
        return c if weight >= self.config.graph.min_edge_weight else -1

    # -- reading -------------------------------------------------------------------------------

    def score(self, account_id: str) -> RiskUpdate:
        """The account's current risk (zero risk when unknown or not scored yet)."""
        with self._lock:
            return self._risk.get(account_id) or RiskUpdate(account_id=account_id)

    def flush(self) -> None:
        """Re-score the accounts updated since the last re-score now (see ``partial_every``)."""
        with self._lock:
            self._partial()

    def clusters(self) -> list[dict[str, Any]]:
        """Clusters of at least ``min_campaign`` accounts from the last full re-score, riskiest
        first: ``cluster_id``, ``risk``, ``accounts`` (count), ``campaign`` (is it one)."""
        with self._lock:
            snap = self._snap
            if snap is None:
                return []
            counts: dict[int, int] = {}
            for c in snap.community_of.values():
                counts[c] = counts.get(c, 0) + 1
            out = [
                {
                    "cluster_id": cid,
                    "risk": round(float(snap.community_risk[c]), 4),
                    "accounts": counts.get(c, 0),
                    "campaign": cid.startswith("camp-"),
                }
                for c, cid in enumerate(snap.cluster_ids)
                if cid is not None
            ]
        return sorted(out, key=lambda d: -float(d["risk"]))

    @property
    def last_scan(self) -> FeatureScan | None:
        """The result of the last full re-score (``None`` before the first)."""
        return self._last_scan


def _plan_counts(fs: FeatureScan) -> dict[str, tuple[float, float]]:
    """Per account of a full re-score: its plan links (hits, total), for partial re-scores."""
    f = fs.features
    if f is None or f.plan_hits is None or f.plan_total is None:
        return {}
    return {
        a: (float(h), float(t))
        for a, h, t in zip(f.account_id, f.plan_hits, f.plan_total, strict=True)
        if t > 0
    }


def gateway_scorer(settings: Settings) -> OnlineScorer:
    """The online scorer the gateway uses: in process, full re-scores in a background thread."""
    del settings  # no [monitor] settings yet: the scan's defaults
    return OnlineScorer(OnlineConfig(background=True))

"""A fitted combiner of the scan's evidence: per-account evidence in, calibrated verdict out.

The hand-set scores of :mod:`~distillguard.monitor.scoring` let a community's score dominate an
account's and cap what an account's own evidence can do (``own_weight``), which failed on traffic
from another generator: strong, corroborated account evidence (reasoning elicitation *and* a
payment instrument shared by a dozen accounts) did not flag, while a popular tool's shared
artefacts pulled its legitimate users into a campaign's community. The combiner re-reads the
same evidence as a vector per account (:func:`account_matrix`), in three independent kinds:

* **account evidence**: the elicitation test, regular timing, harvesting behaviour, capability
  sweep, payment group, sign-up burst, volume (robust z-scores against the log's own accounts);
* **group evidence by shared artefact**: for every kind of key (payment instrument, sign-up
  burst, /24, ASN, client fingerprint, User-Agent, prompt template) the pooled elicitation test
  of the *other* accounts of the account's groups of that kind, with the group's size, so that a
  value shared by many unrelated accounts (a popular tool's User-Agent) says little and a small
  group of eliciting accounts on one card says much;
* **community evidence**: the Leiden community's pooled test, size, the account's embeddedness
  and its neighbours' evidence.

A logistic model weighs them (:func:`fit_combiner`, fitted on labelled logs: the simulator's,
the scenario zoo's, analyst labels); the flag threshold is set for a stated false-positive rate
on legitimate traffic: the largest, over the legitimate families of the training data, of each
family's ``1 - alpha`` score quantile, so that no training population exceeds ``alpha``. The
model is a small JSON document (:meth:`Combiner.to_json`), read back with
:meth:`Combiner.from_json`; the features are relative to the scanned log (z-scores, tests
against the log's base rate), so the weights carry over between logs of different sizes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from distillguard.errors import ConfigurationError
from distillguard.monitor.scoring import (
    ScoreParams,
    binomial_evidence,
    harvest_statistic,
    robust_z,
)

if TYPE_CHECKING:
    from distillguard.monitor._config import ScanDetail
    from distillguard.monitor.features import FeatureScan

__all__ = [
    "FEATURE_NAMES",
    "GROUP_KINDS",
    "Combiner",
    "account_matrix",
    "apply_combiner",
    "fit_combiner",
    "flag_threshold",
]

#: Key kinds whose groups give pooled evidence (see :mod:`~distillguard.monitor.infrastructure`).
GROUP_KINDS = (
    "payment",
    "signup_burst",
    "net",
    "asn",
    "client_fingerprint",
    "user_agent",
    "template",
)

_ACCOUNT = (
    "elicit_logp",
    "elicit_ratio",
    "cot_share",
    "grade_share",
    "z_regular",
    "z_harvest",
    "z_sweep",
    "log_payment_group",
    "z_signup_burst",
    "single_turn_share",
    "system_share",
    "log_completion_ratio",
    "z_volume",
)
_CORROBORATION = ("group_kinds_evident", "group_logp_second")
_COMMUNITY = (
    "scan_score",
    "log_community_size",
    "community_logp",
    "embeddedness",
    "log_strength",
    "neighbour_elicit_logp",
    "neighbour_own",
)

#: The columns of :func:`account_matrix`, in order.
FEATURE_NAMES: tuple[str, ...] = (
    *_ACCOUNT,
    *(f"group_logp_{k}" for k in GROUP_KINDS),
    *(f"group_size_{k}" for k in GROUP_KINDS),
    *_CORROBORATION,
    *_COMMUNITY,
)

_CAP = 50.0  # -log10 p-values are capped here (beyond it the evidence is overwhelming anyway)
_EVIDENT = 3.0  # a group's pooled test counts as evidence from p < 1e-3
_CLIP = 8.0  # standardised features are clipped to +-8 (heavy tails must not dominate the sum)


def _logp(k: np.ndarray, n: np.ndarray, p0: float) -> np.ndarray:
    """``-log10 P[X >= k]``, ``X ~ Binomial(n, p0)``, capped at ``_CAP`` (0 where n == 0)."""
    sf = binomial_evidence(k, n, p0)
    return np.asarray(np.clip(-np.log10(np.maximum(sf, 1e-300)), 0.0, _CAP), dtype=np.float64)


def _z(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The scan's robust z-score against ``x[mask]``, clipped to -5..20."""
    return np.asarray(np.clip(robust_z(x, mask=mask), -5.0, 20.0), dtype=np.float64)


def _group_evidence(
    keys: pa.Table, k_el: np.ndarray, n_s: np.ndarray, p0: float, n: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per kind: the strongest pooled elicitation evidence of the *other* members of each
    account's groups of that kind, and the log2 size of that group (0: no group of that kind)."""
    ev = {k: np.zeros(n) for k in GROUP_KINDS}
    size = {k: np.zeros(n) for k in GROUP_KINDS}
    if keys.num_rows == 0 or n == 0:
        return ev, size
    acc = pa.table(
        {
            "acct": pa.array(np.arange(n, dtype=np.int64)),
            "k_el": pa.array(np.rint(k_el).astype(np.int64)),
            "n_s": pa.array(np.rint(n_s).astype(np.int64)),
        }
    )
    con = duckdb.connect()
    try:
        con.register("_k", keys)
        con.register("_a", acc)
        rows = con.sql(
            """
            WITH k AS (SELECT DISTINCT acct, kind, gkey FROM _k),
            g AS (SELECT kind, gkey, count(*) AS size, sum(k_el) AS gk, sum(n_s) AS gn
                  FROM k JOIN _a USING (acct) GROUP BY ALL HAVING count(*) >= 2)
            SELECT k.acct, k.kind, g.size, g.gk - a.k_el AS ok, g.gn - a.n_s AS onn
            FROM k JOIN g USING (kind, gkey) JOIN _a a USING (acct)
            ORDER BY k.acct, k.kind, g.size, ok, onn
            """
        ).to_arrow_table()
    finally:
        con.close()
    acct = np.asarray(rows["acct"].to_numpy(), dtype=np.int64)
    kind = np.asarray(rows["kind"].to_numpy(zero_copy_only=False))
    gsize = np.asarray(rows["size"].to_numpy(), dtype=np.float64)
    lp = _logp(
        np.asarray(rows["ok"].to_numpy(), dtype=np.float64),
        np.asarray(rows["onn"].to_numpy(), dtype=np.float64),
        p0,
    )
    for kd in GROUP_KINDS:
        m = kind == kd
        if not m.any():
            continue
        a, v, s = acct[m], lp[m], gsize[m]
        # the group with the strongest evidence (ties: the smallest group, rows are sorted)
        order = np.lexsort((s, -v, a))
        a, v, s = a[order], v[order], s[order]
        first = np.ones(len(a), dtype=bool)
        first[1:] = a[1:] != a[:-1]
        ev[kd][a[first]] = v[first]
        size[kd][a[first]] = np.log2(s[first])
    return ev, size


def account_matrix(detail: ScanDetail, params: ScoreParams | None = None) -> np.ndarray:
    """The evidence of every account of a scan as a matrix (rows: accounts in the scan's order,
    columns: :data:`FEATURE_NAMES`)."""
    sp = params or ScoreParams()
    f = detail.features
    sc = detail.scored.scores
    graph = detail.scored.graph
    n = len(f)
    p0 = sc.calibration.p0
    enough = f.exchanges >= sp.min_exchanges
    n_s = np.asarray(f.n_sample, dtype=np.float64)
    nn = np.maximum(n_s, 1.0)
    cols: dict[str, np.ndarray] = {}
    cols["elicit_logp"] = _logp(f.k_elicit, n_s, p0)
    cols["elicit_ratio"] = np.log2((f.k_elicit / nn + 0.01) / (p0 + 0.01))
    cols["cot_share"] = f.k_cot / nn
    cols["grade_share"] = f.k_grade / nn
    reg = np.maximum(-_z(f.interarrival_cv, enough), -_z(f.minute_entropy, enough))
    cols["z_regular"] = np.where(enough, reg, 0.0)
    cols["z_harvest"] = np.where(enough, _z(harvest_statistic(f), enough), 0.0)
    cols["z_sweep"] = np.where(enough, _z(f.topic_divergence, enough), 0.0)
    cols["log_payment_group"] = np.log2(np.maximum(f.payment_group, 1.0))
    cols["z_signup_burst"] = _z(np.log1p(f.signup_burst), np.ones(n, dtype=bool))
    cols["single_turn_share"] = np.asarray(f.single_turn_share, dtype=np.float64)
    cols["system_share"] = np.asarray(f.system_share, dtype=np.float64)
    cols["log_completion_ratio"] = np.log1p(np.maximum(f.completion_ratio, 0.0))
    cols["z_volume"] = _z(np.log1p(f.exchanges), np.ones(n, dtype=bool))
    gev, gsize = _group_evidence(detail.keys, f.k_elicit, n_s, p0, n)
    for k in GROUP_KINDS:
        cols[f"group_logp_{k}"] = gev[k]
        cols[f"group_size_{k}"] = gsize[k]
    # corroboration: how many independent kinds of shared artefact carry evidence, and the
    # second strongest (one shared proxy /24 with a campaign is not coordination; a shared
    # /24, card, sign-up burst and template are)
    g = np.column_stack([gev[k] for k in GROUP_KINDS])
    cols["group_kinds_evident"] = (g >= _EVIDENT).sum(axis=1).astype(np.float64)
    cols["group_logp_second"] = np.sort(g, axis=1)[:, -2]
    cinv = np.asarray(sc.community, dtype=np.int64)
    ncomm = int(cinv.max()) + 1 if n else 0
    ck = np.bincount(cinv, weights=f.k_elicit, minlength=ncomm)[cinv] - f.k_elicit
    cn = np.bincount(cinv, weights=n_s, minlength=ncomm)[cinv] - n_s
    cols["scan_score"] = np.asarray(sc.score, dtype=np.float64)
    cols["log_community_size"] = np.log2(np.asarray(sc.community_size, dtype=np.float64))
    cols["community_logp"] = _logp(ck, cn, p0)
    cols["embeddedness"] = graph.embeddedness()
    src, dst, w = graph.src, graph.dst, graph.weight
    strength = np.bincount(src, w, n) + np.bincount(dst, w, n)
    cols["log_strength"] = np.log1p(strength)
    el = cols["elicit_logp"]
    own = np.asarray(sc.own, dtype=np.float64)
    denom = np.maximum(strength, 1e-12)
    cols["neighbour_elicit_logp"] = np.where(
        strength > 0,
        (np.bincount(src, w * el[dst], n) + np.bincount(dst, w * el[src], n)) / denom,
        0,
    )
    cols["neighbour_own"] = np.where(
        strength > 0,
        (np.bincount(src, w * own[dst], n) + np.bincount(dst, w * own[src], n)) / denom,
        0.0,
    )
    x = np.column_stack([np.asarray(cols[c], dtype=np.float64) for c in FEATURE_NAMES])
    return np.nan_to_num(x, nan=0.0, posinf=_CAP, neginf=-_CAP)


@dataclass(frozen=True)
class Combiner:
    """A fitted logistic combiner: standardisation, weights, and the calibrated threshold.

    ``score(x)`` is the model's probability; accounts at or above ``threshold`` are flagged.
    ``alpha`` is the false-positive rate the threshold was set for (per legitimate family of the
    training data); ``trained_on`` names the labelled families it was fitted on.
    """

    names: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    alpha: float
    trained_on: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Probability of campaign membership of each row of ``x`` (columns: ``names``)."""
        if x.shape[1] != len(self.names):
            raise ConfigurationError(
                f"the combiner expects {len(self.names)} features, got {x.shape[1]}"
            )
        z = np.clip((x - self.center) / self.scale, -_CLIP, _CLIP) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))), dtype=np.float64)

    def flags(self, x: np.ndarray) -> np.ndarray:
        """Flag per row: score at or above the threshold."""
        return self.score(x) >= self.threshold

    def weights(self) -> dict[str, float]:
        """The standardised weight of every feature (what each piece of evidence is worth)."""
        return {n: round(float(c), 4) for n, c in zip(self.names, self.coef, strict=True)}

    def to_json(self) -> str:
        """The model as a JSON document."""
        return json.dumps(
            {
                "format": "distillguard-combiner-v1",
                "names": list(self.names),
                "center": [float(v) for v in self.center],
                "scale": [float(v) for v in self.scale],
                "coef": [float(v) for v in self.coef],
                "intercept": float(self.intercept),
                "threshold": float(self.threshold),
                "alpha": float(self.alpha),
                "trained_on": list(self.trained_on),
                "meta": self.meta,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Combiner:
        """Read a model written by :meth:`to_json` (raises ConfigurationError when malformed)."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            if d.get("format") != "distillguard-combiner-v1":
                raise ValueError(f"unknown format {d.get('format')!r}")
            names = tuple(str(n) for n in d["names"])
            arrays = [np.asarray(d[k], dtype=np.float64) for k in ("center", "scale", "coef")]
            if any(a.shape != (len(names),) for a in arrays):
                raise ValueError("center, scale and coef must have one value per feature")
            if names != FEATURE_NAMES:
                raise ValueError("the model's features are not this version's")
            if not all(np.isfinite(a).all() for a in arrays) or (arrays[1] <= 0).any():
                raise ValueError("non-finite weights or a non-positive scale")
            return cls(
                names=names,
                center=arrays[0],
                scale=arrays[1],
                coef=arrays[2],
                intercept=float(d["intercept"]),
                threshold=float(d["threshold"]),
                alpha=float(d["alpha"]),
                trained_on=tuple(str(t) for t in d.get("trained_on", [])),
                meta=dict(d.get("meta", {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"not a combiner model: {exc}") from exc

    @classmethod
    def load(cls, path: Path) -> Combiner:
        """Read a model file."""
        return cls.from_json(path.read_text(encoding="utf-8"))


def flag_threshold(scores: np.ndarray, families: Sequence[str], *, alpha: float) -> float:
    """The smallest threshold at which no family of ``families`` (legitimate accounts' scores
    ``scores``) has more than ``alpha`` of its accounts at or above it."""
    scores = np.asarray(scores, dtype=np.float64)
    fam = np.asarray(families)
    t = 0.5
    for name in sorted(set(fam.tolist())):
        s = np.sort(scores[fam == name])
        allowed = math.floor(alpha * len(s))  # accounts of this family that may be flagged
        # flag at most `allowed`: the threshold sits just above the (allowed+1)-th largest score
        k = len(s) - allowed - 1
        if k >= 0:
            t = max(t, float(np.nextafter(s[k], np.inf)))
    return t  # above 1.0 when a family's top scores are 1.0: then nothing is flagged


def fit_combiner(
    x: np.ndarray,
    y: np.ndarray,
    families: Sequence[str],
    *,
    alpha: float = 0.002,
    c: float = 0.5,
) -> Combiner:
    """Fit the combiner on labelled rows (``y`` True: campaign account).

    ``families`` names each row's population or campaign strategy; the threshold keeps every
    legitimate family's false-positive rate at most ``alpha`` on the training data. L2-regularised
    logistic regression (``c``: inverse strength) with balanced class weights, deterministic.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    fam = np.asarray(families)
    if len(np.unique(y)) < 2:
        raise ConfigurationError("fitting needs both campaign and legitimate accounts")
    center = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = np.maximum(np.maximum(q75 - q25, x.std(axis=0)), 1e-3)
    xs = np.clip((x - center) / scale, -_CLIP, _CLIP)
    # families weigh alike: a population of 3,000 accounts must not drown one of 19
    counts = {f: int((fam == f).sum()) for f in set(fam.tolist())}
    w = np.array([1.0 / counts[f] for f in fam.tolist()])
    w *= len(w) / w.sum()
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(xs, y, sample_weight=w)
    combiner = Combiner(
        names=FEATURE_NAMES,
        center=center,
        scale=scale,
        coef=np.asarray(model.coef_[0], dtype=np.float64),
        intercept=float(model.intercept_[0]),
        threshold=1.0,
        alpha=alpha,
        trained_on=tuple(sorted(set(fam.tolist()))),
    )
    legit = ~y
    t = flag_threshold(combiner.score(x[legit]), fam[legit].tolist(), alpha=alpha)
    return replace(combiner, threshold=t)


def apply_combiner(detail: ScanDetail, combiner: Combiner, params: ScoreParams) -> FeatureScan:
    """The scan's results with the combiner's verdicts: ``score`` is the combiner's probability,
    ``flagged`` its flags; campaigns and reasons are assembled from them as the scan does."""
    from distillguard.monitor.features import assemble

    x = account_matrix(detail, params)
    prob = combiner.score(x)
    sc = replace(detail.scored.scores, score=prob, flagged=prob >= combiner.threshold)
    return assemble(detail.features, sc, detail.scored.graph, params)

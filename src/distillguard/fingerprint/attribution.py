"""Lineage attribution: did a suspect model learn from one of the reference families?

For a suspect S and every reference model T, each feature channel gives the mean *paired*
similarity of S's and T's answers to the same probes (or, for phrase profiles, the correlation of
their signature-phrase frequencies). The similarity matrix of all models is double-centred
(:func:`~distillguard.fingerprint.stats.double_center`), standardised per channel against the
pairs of references that are not related (different family and provider), and the channels are
averaged. The null distribution of that statistic is measured on the same unrelated reference
pairs, and the p-value of S against T is its upper tail (:class:`NullModel`). A family's p-value is
the Bonferroni-corrected smallest p-value of its members; Holm's correction across families gives
the family-wise error rate, and a verdict names a family only when its adjusted p-value is < α.

The result types (:class:`AttributionResult`, :class:`FamilyScore`, :class:`ProviderScore`) are
the attribution-result format of :mod:`distillguard.results`, re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from distillguard.errors import InputError
from distillguard.fingerprint.features import STYLE_FEATURES, Fingerprint
from distillguard.fingerprint.identity import IdentityProfile, identity_test
from distillguard.fingerprint.outputs import FamilyMap
from distillguard.fingerprint.stats import NullModel, bonferroni, double_center, holm
from distillguard.results import AttributionResult, FamilyScore, ProviderScore

__all__ = [
    "CHANNELS",
    "AttributionResult",
    "FamilyScore",
    "PreparedStatistics",
    "ProviderScore",
    "attribute",
    "combine_channels",
    "prepare_statistics",
    "similarity_matrices",
]

logger = logging.getLogger(__name__)

#: The feature channels, in the order results list them.
CHANNELS: tuple[str, ...] = ("opening_words", "char_ngrams", "style", "phrase_profile", "embedding")
_MIN_PROMPTS = 30
_PHRASE_MIN_DF = 0.02


def _common_prompts(suspect: Fingerprint, references: Sequence[Fingerprint]) -> list[int]:
    ref_ids = set(references[0].prompt_ids)
    for ref in references[1:]:
        if set(ref.prompt_ids) != ref_ids:
            raise InputError(
                f"reference {ref.name!r} answers other prompts than {references[0].name!r}",
                hint="every reference must answer the same probe set",
            )
    common = sorted(ref_ids & set(suspect.prompt_ids))
    if len(common) < _MIN_PROMPTS:
        raise InputError(
            f"suspect {suspect.name!r} shares only {len(common)} prompt ids with the references "
            f"(at least {_MIN_PROMPTS} needed)",
            hint="collect the suspect's outputs on the references' probe set",
        )
    return common


def _tfidf(counts: Sequence[sp.csr_matrix], n_refs: int) -> list[sp.csr_matrix]:
    """Sublinear TF-IDF rows of unit length; IDF from the references' rows.

    Works on the CSR arrays directly (the hashed feature space has 2^20 columns, where sparse
    diagonal products dominate the cost).
    """
    n_cols = counts[0].shape[1]
    df = np.zeros(n_cols, dtype=np.float64)
    n_rows = 0
    for m in counts[:n_refs]:
        csr = sp.csr_matrix(m)
        csr.sum_duplicates()
        df += np.bincount(csr.indices, minlength=n_cols)
        n_rows += csr.shape[0]
    idf = np.log((1.0 + n_rows) / (1.0 + df)) + 1.0
    out = []
    for m in counts:
        csr = sp.csr_matrix(m, dtype=np.float64, copy=True)
        csr.sum_duplicates()
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        data = (1.0 + np.log(csr.data)) * idf[csr.indices]
        norms = np.sqrt(np.bincount(rows, weights=data * data, minlength=csr.shape[0]))
        norms[norms == 0] = 1.0
        csr.data = data / norms[rows]
        out.append(csr)
    return out


def _paired_mean(a: Any, b: Any) -> float:
    if sp.issparse(a):
        return float(np.asarray(a.multiply(b).sum(axis=1)).mean())
    return float(np.einsum("ij,ij->i", a, b).mean())


def _matrix(rows: Sequence[Any], n_refs: int) -> npt.NDArray[np.float64]:
    """``out[a, b]`` = mean over prompts of the dot product of model a's and b's rows.

    Sparse rows are regrouped prompt by prompt, so that one small Gram matrix per prompt gives
    every pair at once (instead of one full elementwise product per pair of models).
    """
    m = len(rows)
    n = rows[0].shape[0]
    if n == 0:
        return np.zeros((m, n_refs))
    if not sp.issparse(rows[0]):
        stack = np.stack([np.asarray(r, dtype=np.float64) for r in rows])
        gram: npt.NDArray[np.float64] = np.einsum("anf,bnf->ab", stack, stack) / n
        return gram[:, :n_refs]
    z = sp.csr_matrix(sp.vstack(rows, format="csr"))
    z.sum_duplicates()
    order = (np.arange(m)[None, :] * n + np.arange(n)[:, None]).ravel()
    z = z[order]
    total = np.zeros((m, m))
    indptr, indices, data = z.indptr, z.indices, z.data
    for i in range(n):
        lo, hi = indptr[i * m], indptr[(i + 1) * m]
        # one prompt: the m models' rows as a small dense matrix over the columns they use
        cols, inverse = np.unique(indices[lo:hi], return_inverse=True)
        block = sp.csr_matrix(
            (data[lo:hi], inverse, indptr[i * m : (i + 1) * m + 1] - lo), shape=(m, cols.size)
        )
        total += (block @ block.T).toarray()
    out: npt.NDArray[np.float64] = total[:, :n_refs] / n
    return out


def _style_rows(fps: Sequence[Fingerprint], n_refs: int) -> list[npt.NDArray[np.float64]]:
    pooled = np.concatenate([f.style for f in fps[:n_refs]]).astype(np.float64)
    mean, sd = pooled.mean(0), pooled.std(0)
    sd[sd == 0] = 1.0
    rows = []
    for f in fps:
        z = (f.style - mean) / sd
        norms = np.linalg.norm(z, axis=1)
        norms[norms == 0] = 1.0
        rows.append(z / norms[:, None])
    return rows


def _phrase_logits(fps: Sequence[Fingerprint], n_refs: int) -> npt.NDArray[np.float64]:
    dense = np.stack(
        [np.asarray(f.phrase_df.todense()).ravel() / max(len(f.prompt_ids), 1) for f in fps]
    )
    keep = dense[:n_refs].max(axis=0) >= _PHRASE_MIN_DF
    d = dense[:, keep]
    eps = 0.005
    logits = np.log((d + eps) / (1.0 - d + eps))
    out: npt.NDArray[np.float64] = logits - np.median(logits[:n_refs], axis=0)
    return out


def similarity_matrices(
    fingerprints: Sequence[Fingerprint], *, n_references: int
) -> dict[str, npt.NDArray[np.float64]]:
    """Per channel, the (models x references) similarity matrix; the references come first.

    All fingerprints must cover the same prompts in the same order.
    """
    n = n_references
    out: dict[str, npt.NDArray[np.float64]] = {}
    out["opening_words"] = _matrix(_tfidf([f.opening_counts for f in fingerprints], n), n)
    out["char_ngrams"] = _matrix(_tfidf([f.char_counts for f in fingerprints], n), n)
    out["style"] = _matrix(_style_rows(fingerprints, n), n)
    logits = _phrase_logits(fingerprints, n)
    centred = logits - logits.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    norms[norms == 0] = 1.0
    unit = centred / norms[:, None]
    out["phrase_profile"] = unit @ unit[:n].T
    if all(f.embeddings is not None for f in fingerprints):
        out["embedding"] = _matrix([f.embeddings for f in fingerprints], n)
    return out


def _explain(
    suspect: Fingerprint, reference: Fingerprint, fps: Sequence[Fingerprint], n_refs: int
) -> dict[str, Any]:
    pooled = np.concatenate([f.style for f in fps[:n_refs]]).astype(np.float64)
    mean, sd = pooled.mean(0), pooled.std(0)
    sd[sd == 0] = 1.0
    zs = (suspect.style.mean(0) - mean) / sd
    zt = (reference.style.mean(0) - mean) / sd
    shared = zs * zt
    top = np.argsort(-shared)[:5]
    habits = [
        {
            "habit": STYLE_FEATURES[i],
            "suspect_z": round(float(zs[i]), 2),
            "reference_z": round(float(zt[i]), 2),
        }
        for i in top
        if shared[i] > 0
    ]
    return {"reference": reference.name, "shared_habits": habits}


@dataclass(frozen=True)
class PreparedStatistics:
    """The combined statistic of every model against every reference (shared by both tests).

    Made by :func:`prepare_statistics`; pass it to :func:`attribute` and
    :func:`~distillguard.fingerprint.teacher.teacher_test` to compute the similarity matrices once.
    """

    suspect: str
    reference_names: tuple[str, ...]

    names: list[str]
    fps: list[Fingerprint]
    common: list[int]
    combined: npt.NDArray[np.float64]
    z_channels: dict[str, npt.NDArray[np.float64]]
    use: list[str]
    null: NullModel
    null_pairs: int


def _check_inputs(
    suspect: Fingerprint, references: Sequence[Fingerprint], families: FamilyMap, alpha: float
) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    if len(references) < 4:
        raise InputError("attribution needs at least 4 reference models")
    unknown = [r.name for r in references if r.name not in families.families]
    if unknown:
        raise InputError(
            f"no family given for reference(s) {', '.join(sorted(unknown))}",
            hint="add them to the families file",
        )
    if len({families.families[r.name] for r in references}) < 3:
        raise InputError("attribution needs references from at least 3 families")


def prepare_statistics(
    suspect: Fingerprint,
    references: Sequence[Fingerprint],
    families: FamilyMap,
    channels: Sequence[str] | None = None,
) -> PreparedStatistics:
    """Compute the similarity matrices and the combined, null-standardised statistic once."""
    common = _common_prompts(suspect, references)
    fps = [r.subset(common) for r in references] + [suspect.subset(common)]
    n = len(references)
    names = [r.name for r in references]
    unrelated = np.ones((n + 1, n), dtype=bool)
    for a in range(n):
        for b in range(n):
            unrelated[a, b] = not families.related(names[a], names[b])
    null_mask = unrelated[:n]
    if null_mask.sum() < 6:
        raise InputError("too few unrelated reference pairs to calibrate the test")
    mats = similarity_matrices(fps, n_references=n)
    use = [c for c in (channels or CHANNELS) if c in mats]
    if not use:
        raise ValueError(f"none of the channels {channels} is available")
    z_channels: dict[str, npt.NDArray[np.float64]] = {}
    for c in use:
        resid = double_center(mats[c], unrelated, n_references=n)
        z_channels[c] = NullModel.fit(resid[:n][null_mask], units=n).standardise(resid)
    combined = np.mean([z_channels[c] for c in use], axis=0)
    null = NullModel.fit(combined[:n][null_mask], units=n)
    return PreparedStatistics(
        suspect=suspect.name,
        reference_names=tuple(names),
        names=names,
        fps=fps,
        common=common,
        combined=combined,
        z_channels=z_channels,
        use=use,
        null=null,
        null_pairs=int(null_mask.sum()),
    )


def _identity_of(
    suspect: IdentityProfile | None,
    references: Mapping[str, IdentityProfile] | None,
    names: Sequence[str],
    common: Sequence[int],
) -> tuple[IdentityProfile, dict[str, IdentityProfile]] | None:
    if suspect is None or references is None:
        return None
    missing = [n for n in names if n not in references]
    if missing:
        raise InputError(f"no identity profile for reference(s) {', '.join(sorted(missing))}")
    return suspect.subset(common), {n: references[n].subset(common) for n in names}


def _statistics(
    suspect: Fingerprint,
    references: Sequence[Fingerprint],
    families: FamilyMap,
    channels: Sequence[str] | None,
    prepared: PreparedStatistics | None,
) -> PreparedStatistics:
    if prepared is None:
        return prepare_statistics(suspect, references, families, channels)
    if prepared.suspect != suspect.name or prepared.reference_names != tuple(
        r.name for r in references
    ):
        raise ValueError("prepared statistics were made for another suspect or references")
    return prepared


def combine_channels(p_style: float, p_identity: float | None) -> float:
    """The family's p-value from its stylometric and identity p-values (Bonferroni over two)."""
    if p_identity is None:
        return p_style
    return min(1.0, 2.0 * min(p_style, p_identity))


def attribute(
    suspect: Fingerprint,
    references: Sequence[Fingerprint],
    families: FamilyMap,
    *,
    alpha: float = 0.01,
    channels: Sequence[str] | None = None,
    phrases: Mapping[str, Any] | None = None,
    suspect_identity: IdentityProfile | None = None,
    reference_identity: Mapping[str, IdentityProfile] | None = None,
    prepared: PreparedStatistics | None = None,
) -> AttributionResult:
    """Test the suspect against every reference family; see the module docstring for the method.

    Args:
        suspect: the suspect's fingerprint.
        references: the reference fingerprints (every name must be in ``families``).
        families: family (and provider) of each reference.
        alpha: family-wise error rate of the verdict.
        channels: the channels to use (default: every channel the fingerprints support).
        phrases: optional extra explanation (e.g. shared signature phrases) to attach.
        suspect_identity: the suspect's identity profile (module ``fingerprint.identity``);
            with ``reference_identity`` (by reference name) it adds the identity channel: each
            family's p-value is then ``min(1, 2 min(p_style, p_identity))``.
        reference_identity: the references' identity profiles.
        prepared: the result of :func:`prepare_statistics` for these inputs (else computed).
    """
    _check_inputs(suspect, references, families, alpha)
    st = _statistics(suspect, references, families, channels, prepared)
    names, fps, combined, n = st.names, st.fps, st.combined, len(references)
    stat = st.null.standardise(combined[n])
    ident = _identity_of(suspect_identity, reference_identity, names, st.common)
    id_tests: dict[str, Any] = {}
    if ident is not None:
        s_prof, r_prof = ident
        for name in names:
            null_profiles = [r_prof[u] for u in names if not families.related(u, name)]
            id_tests[name] = identity_test(s_prof, r_prof[name], null_profiles)

    fam_names = sorted({families.families[r.name] for r in references})
    raw: list[tuple[str, float, float, float, int, dict[str, Any] | None]] = []
    for fam in fam_names:
        members = [i for i in range(n) if families.families[names[i]] == fam]
        best = max(members, key=lambda i: stat[i])
        p_style = bonferroni(st.null.p_value(float(combined[n, best])), len(members))
        id_info: dict[str, Any] | None = None
        p_id: float | None = None
        if id_tests:
            best_id = min(members, key=lambda i: id_tests[names[i]].p_value)
            p_id = bonferroni(id_tests[names[best_id]].p_value, len(members))
            id_info = {**id_tests[names[best_id]].to_dict(), "p_family": p_id}
        raw.append(
            (fam, float(stat[best]), combine_channels(p_style, p_id), p_style, best, id_info)
        )
    adjusted = holm([r[2] for r in raw])
    scores = [
        FamilyScore(
            family=fam,
            statistic=s,
            p_value=adj,
            p_raw=p,
            reference=names[best],
            channels={c: float(st.z_channels[c][n, best]) for c in st.use},
            provider=families.providers.get(names[best]),
            p_style=p_style,
            identity=id_info,
        )
        for (fam, s, p, p_style, best, id_info), adj in zip(raw, adjusted, strict=True)
    ]
    scores.sort(key=lambda s: (s.p_value, -s.statistic))
    top = scores[0]
    verdict = top.family if top.p_value < alpha and not math.isnan(top.p_value) else None
    providers = _provider_ranking(scores)
    provider_verdict = providers[0].provider if providers and providers[0].p_value < alpha else None
    best_of = {fam: names[best] for fam, _s, _p, _ps, best, _id in raw}  # = each score's reference
    best_ref = fps[names.index(best_of[top.family])]
    explanation = _explain(fps[n], best_ref, fps, n)
    explanation["verdict_reason"] = (
        f"{top.family}: adjusted p = {top.p_value:.3g} < alpha = {alpha}"
        if verdict
        else f"no family below alpha = {alpha} (best {top.family}, adjusted p = {top.p_value:.3g})"
    )
    if ident is not None:
        explanation["identity"] = _identity_explanation(ident, scores, id_tests)
    if phrases:
        explanation.update(phrases)
    logger.info(
        "attribution of %s: verdict %s (provider %s)", suspect.name, verdict, provider_verdict
    )
    return AttributionResult(
        suspect=suspect.name,
        verdict=verdict,
        alpha=alpha,
        ranking=tuple(scores),
        n_prompts=len(st.common),
        channels=(*st.use, "identity") if ident is not None else tuple(st.use),
        null_pairs=st.null_pairs,
        null_units=n,
        explanation=explanation,
        provider_verdict=provider_verdict,
        provider_ranking=providers,
    )


def _provider_ranking(scores: Sequence[FamilyScore]) -> tuple[ProviderScore, ...]:
    """Providers' p-values: the smallest Holm-adjusted p-value among each provider's families.

    "No model of provider P taught the suspect" is the intersection of P's family hypotheses,
    so by closed testing a provider is named whenever one of its families is, and the
    family-wise error rate over providers is at most that over families (α).
    """
    by_provider: dict[str, list[FamilyScore]] = {}
    for s in scores:
        if s.provider is not None:
            by_provider.setdefault(s.provider, []).append(s)
    out = []
    for provider, fams in by_provider.items():
        best = min(fams, key=lambda f: (f.p_value, f.p_raw))
        out.append(
            ProviderScore(
                provider=provider, p_value=best.p_value, p_raw=best.p_raw, family=best.family
            )
        )
    out.sort(key=lambda s: (s.p_value, s.p_raw, s.provider))
    return tuple(out)


def _identity_explanation(
    ident: tuple[IdentityProfile, dict[str, IdentityProfile]],
    scores: Sequence[FamilyScore],
    id_tests: Mapping[str, Any],
    *,
    limit: int = 8,
) -> dict[str, Any]:
    """The sentences behind the best identity result: the suspect's and the reference's."""
    from distillguard.fingerprint.identity import formula_indices

    s_prof, r_prof = ident
    best = min(scores, key=lambda s: (s.identity or {}).get("p_family", 1.0))
    info = best.identity or {}
    ref = info.get("reference")
    if not ref or not info.get("formulas"):
        return {"family": best.family, "note": "no identity formula distinguishes any reference"}
    cols = formula_indices(info["formulas"])
    test = id_tests[ref]
    return {
        "family": best.family,
        "reference": ref,
        "p_family": info["p_family"],
        "formulas": list(info["formulas"]),
        "suspect_count": test.suspect_count,
        "reference_count": test.reference_count,
        "null_max_count": test.null_max_count,
        "null_max_model": test.null_max_model,
        "n_prompts": test.n_prompts,
        "suspect_sentences": [m.to_dict() for m in s_prof.sentences(cols, limit=limit)],
        "reference_sentences": [m.to_dict() for m in r_prof[ref].sentences(cols, limit=3)],
    }

"""Evidence reports: a self-contained HTML page (and a PDF) per scan, one section per campaign.

:func:`build_report` gathers everything into an :class:`EvidenceReport` (typed, no HTML):
per campaign a summary, the accounts (abridged to the highest scores; the full list is in the
bundle), the activity over time, the shared infrastructure graph, each signal with its statistic
and p-value, representative exchanges (personal data redacted by the privacy
:class:`~distillguard.privacy.Redactor`); the radioactivity and attribution results when given;
and the methods and their limits in plain words. :func:`render_html` turns it into one HTML file
with inline CSS and images as ``data:`` URIs (no network needed to view it), from the Jinja2
templates shipped in ``distillguard/evidence/templates``; :func:`write_pdf` prints that HTML with
WeasyPrint.
"""

from __future__ import annotations

import base64
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from distillguard import __version__
from distillguard._internal.timeutil import format_ts
from distillguard.errors import DependencyMissingError, InputError
from distillguard.evidence import _plots
from distillguard.privacy import Redactor
from distillguard.results import AttributionResult, Campaign, RadioactivityResult, ScanResults
from distillguard.store import Store, activity, infrastructure, one_exchange_per_account

__all__ = [
    "AccountRow",
    "CampaignSection",
    "EvidenceReport",
    "ExchangeView",
    "ReportOptions",
    "SignalRow",
    "build_report",
    "render_html",
    "write_pdf",
]

#: Standalone numbers in a reason ("shared by 480 accounts", "p=1.8e-06"), not the digits inside
#: an identifier such as a campaign id.
_NUMBER = re.compile(r"(?<![\w.-])\d+(\.\d+)?(e-?\d+)?(?![\w-])")

logger = logging.getLogger(__name__)

_BUCKETS_US: Final = (60, 300, 900, 3600, 6 * 3600, 86_400, 7 * 86_400)
_TEXT_LIMIT: Final = 1200
_SAMPLE_PER_ACCOUNT: Final = 64  # the scan's content sample (docs/scan.md)


@dataclass(frozen=True)
class ReportOptions:
    """What goes into a report.

    Args:
        accounts_shown: accounts listed per campaign (highest scores first); the full list is in
            the bundle's ``results/scan/account_scores.parquet``.
        exchanges_per_campaign: representative exchanges shown (and cited) per campaign.
        graph_accounts: accounts drawn in the infrastructure graph (highest scores first).
        graph_infrastructure: shared infrastructure nodes drawn at most.
        max_buckets: bars of the timeline at most (the bucket width is chosen to fit).
        title: the report's title.
    """

    accounts_shown: int = 200
    exchanges_per_campaign: int = 5
    graph_accounts: int = 150
    graph_infrastructure: int = 60
    max_buckets: int = 240
    title: str = "DistillGuard evidence report"

    def __post_init__(self) -> None:
        for name in ("accounts_shown", "graph_accounts", "graph_infrastructure", "max_buckets"):
            if getattr(self, name) < 1:
                raise InputError(f"report option {name} must be at least 1")
        if self.exchanges_per_campaign < 0:
            raise InputError("report option exchanges_per_campaign must be >= 0")


@dataclass(frozen=True)
class AccountRow:
    """One account in a campaign's table."""

    account_id: str
    score: float
    exchanges: int | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SignalRow:
    """One signal of a campaign: its value, the statistic and p-value where there is one."""

    name: str
    value: str
    statistic: str
    p_value: float | None
    meaning: str


@dataclass(frozen=True)
class ExchangeView:
    """A representative exchange, redacted for display; ``exchange_id`` is cited in the bundle."""

    exchange_id: str
    account_id: str
    ts: str
    model: str
    prompt: str
    response: str
    redactions: Mapping[str, int]


@dataclass(frozen=True)
class CampaignSection:
    """Everything the report shows about one campaign."""

    campaign: Campaign
    accounts: tuple[AccountRow, ...]
    accounts_total: int
    reasons: tuple[tuple[str, int], ...]
    signals: tuple[SignalRow, ...]
    exchanges: tuple[ExchangeView, ...]
    timeline_png: bytes | None
    graph_png: bytes | None
    graph_caption: str
    histogram_png: bytes | None
    notes: tuple[str, ...] = ()

    @property
    def cited(self) -> tuple[str, ...]:
        """The exchange ids this section cites."""
        return tuple(e.exchange_id for e in self.exchanges)


@dataclass(frozen=True)
class EvidenceReport:
    """A whole report, ready to render."""

    title: str
    generated_at: datetime
    scan: ScanResults
    campaigns: tuple[CampaignSection, ...]
    radioactivity: RadioactivityResult | None = None
    radioactivity_png: bytes | None = None
    attribution: AttributionResult | None = None
    attribution_png: bytes | None = None
    store_used: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def cited(self) -> dict[str, tuple[str, ...]]:
        """Campaign id -> the exchange ids it cites."""
        return {c.campaign.campaign_id: c.cited for c in self.campaigns}


# -- signals -----------------------------------------------------------------------------------

_SIGNAL_TEXT: Final[dict[str, tuple[str, str]]] = {
    "accounts": ("flagged accounts", "accounts of the community whose score is at least 0.5"),
    "community_size": ("community size", "accounts in the link-graph community (Leiden)"),
    "cot_share": ("chain-of-thought share", "requests asking for step-by-step reasoning"),
    "grading_share": ("grading share", "requests asking to grade or rank answers"),
    "elicitation_base_rate": ("elicitation base rate", "share among the least-eliciting 75%"),
    "shared_payment_accounts": (
        "shared payment instrument",
        "accounts paying with an instrument shared by at least 3 accounts",
    ),
    "signup_burst_accounts": ("sign-up burst", "accounts created in a burst on one channel"),
    "regular_timing_accounts": ("clockwork timing", "accounts with machine-regular arrivals"),
    "harvest_behaviour_accounts": (
        "harvesting behaviour",
        "single-turn requests with long completions, no sleep",
    ),
    "topic_sweep_accounts": (
        "capability sweep",
        "accounts whose topics follow a plan far from the natural mix",
    ),
    "mean_own_score": ("mean own score", "mean per-account evidence before the community's"),
}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _elicitation_test(share: float, base: float, n: int) -> tuple[str, float | None]:
    """Exact one-sided binomial test of the pooled elicitation count against the base rate."""
    from scipy import stats

    if n <= 0 or not 0 < base < 1:
        return "-", None
    k = round(share * n)
    p = float(stats.binom.sf(k - 1, n, base))
    return f"{k}/{n} requests (base {base:.1%})", p


def _signals(campaign: Campaign, sample_n: int) -> tuple[SignalRow, ...]:
    s = dict(campaign.signals)
    rows: list[SignalRow] = []
    if "elicitation_share" in s:
        base = float(s.get("elicitation_base_rate", 0.0) or 0.0)
        statistic, p = _elicitation_test(float(s["elicitation_share"]), base, sample_n)
        rows.append(
            SignalRow(
                name="elicitation (reasoning or grading requests)",
                value=f"{float(s['elicitation_share']):.1%} of sampled requests",
                statistic=statistic,
                p_value=p,
                meaning=(
                    "exact one-sided binomial test of the pooled count against the log's base "
                    f"rate; n = the scan's content sample (at most {_SAMPLE_PER_ACCOUNT} "
                    "requests per flagged account), k = share x n"
                ),
            )
        )
    for key, value in s.items():
        if key == "elicitation_share" or key.endswith("_p") or key.endswith("_p_value"):
            continue
        stem_p = s.get(f"{key}_p", s.get(f"{key}_p_value"))
        label, meaning = _SIGNAL_TEXT.get(key, (key.replace("_", " "), ""))
        rows.append(
            SignalRow(
                name=label,
                value=_fmt(value),
                statistic=_fmt(value),
                p_value=float(stem_p) if isinstance(stem_p, int | float) else None,
                meaning=meaning,
            )
        )
    for key, value in s.items():
        if not (key.endswith("_p") or key.endswith("_p_value")) or not isinstance(
            value, int | float
        ):
            continue
        stem = key.removesuffix("_p_value").removesuffix("_p")
        if stem in s:
            continue
        if stem == "synchrony":
            name = "coordinated timing (synchrony)"
            meaning = "chi-square test of the community's minute-of-hour activity against uniform"
            statistic = "chi-square vs uniform"
        else:
            name, meaning, statistic = stem.replace("_", " "), "", "-"
        rows.append(
            SignalRow(
                name=name, value="-", statistic=statistic, p_value=float(value), meaning=meaning
            )
        )
    return tuple(rows)


# -- building ----------------------------------------------------------------------------------


def _bucket_for(span_us: int, max_buckets: int) -> int:
    for seconds in _BUCKETS_US:
        if span_us / (seconds * 1e6) <= max_buckets:
            return seconds * 1_000_000
    return math.ceil(span_us / max_buckets)


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value).decode()


def _clip(text: str) -> str:
    if len(text) <= _TEXT_LIMIT:
        return text
    return text[: _TEXT_LIMIT - 200] + " [...] " + text[-150:]


def _exchange_view(stored: Any, redactor: Redactor) -> ExchangeView:
    ex = stored.exchange
    user = [m.content for m in ex.messages if m.role == "user"]
    prompt = redactor.scan(_clip(_text_of(user[-1] if user else "")))
    response = redactor.scan(_clip(_text_of(ex.response)))
    counts: Counter[str] = Counter()
    counts.update(prompt.counts)
    counts.update(response.counts)
    return ExchangeView(
        exchange_id=ex.exchange_id,
        account_id=ex.account_id,
        ts=format_ts(ex.ts),
        model=ex.model,
        prompt=prompt.text,
        response=response.text,
        redactions=dict(counts),
    )


def _campaign_section(
    campaign: Campaign,
    *,
    scan: ScanResults,
    store: Store | None,
    redactor: Redactor,
    options: ReportOptions,
    all_scores: np.ndarray,
    score_of: Mapping[str, float],
    exchanges_of: Mapping[str, int],
    reasons_of: Mapping[str, Sequence[str]],
) -> CampaignSection:
    members = list(campaign.accounts)
    ordered = sorted(members, key=lambda a: (-score_of.get(a, 0.0), a))
    rows = tuple(
        AccountRow(
            account_id=a,
            score=score_of.get(a, float("nan")),
            exchanges=exchanges_of.get(a),
            reasons=tuple(reasons_of.get(a, ())),
        )
        for a in ordered[: options.accounts_shown]
    )
    reason_counts: Counter[str] = Counter()
    for a in members:
        for r in reasons_of.get(a, ()):
            reason_counts[_NUMBER.sub("N", r)] += 1
    sample_n = sum(min(_SAMPLE_PER_ACCOUNT, exchanges_of.get(a, 0)) for a in members)
    histogram = _plots.score_histogram_png(
        all_scores.tolist(), highlighted=[score_of[a] for a in members if a in score_of]
    )
    notes: list[str] = []
    timeline = graph = None
    caption = ""
    views: tuple[ExchangeView, ...] = ()
    if store is None:
        notes.append("No store was given: the timeline, graph and exchanges are not shown.")
    else:
        span = max(int((campaign.last_seen - campaign.first_seen).total_seconds() * 1e6), 1)
        act = activity(store, members, bucket_us=_bucket_for(span, options.max_buckets))
        if act.starts_us:
            timeline = _plots.timeline_png(
                act,
                title=f"{campaign.campaign_id}: {sum(act.exchanges):,} exchanges, "
                f"bucket {act.bucket_us / 60e6:g} min",
            )
        else:
            notes.append("The store holds no exchange of this campaign's accounts.")
        drawn = ordered[: options.graph_accounts]
        picture = _plots.graph_png(
            infrastructure(store, drawn),
            scores=score_of,
            max_infra=options.graph_infrastructure,
        )
        if picture is not None:
            graph = picture.png
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(picture.nodes.items())) or "none"
            caption = (
                f"{picture.accounts:,} of {len(members):,} accounts (highest scores) and the "
                f"infrastructure at least two of them share ({kinds}; {picture.edges:,} links)."
            )
        views = tuple(
            _exchange_view(s, redactor)
            for s in one_exchange_per_account(
                store, ordered, limit=options.exchanges_per_campaign, pick="longest"
            )
        )
    return CampaignSection(
        campaign=campaign,
        accounts=rows,
        accounts_total=len(members),
        reasons=tuple(reason_counts.most_common(12)),
        signals=_signals(campaign, sample_n),
        exchanges=views,
        timeline_png=timeline,
        graph_png=graph,
        graph_caption=caption,
        histogram_png=histogram,
        notes=tuple(notes),
    )


def build_report(
    *,
    scan: ScanResults,
    store: Store | None,
    redactor: Redactor | None = None,
    radioactivity: RadioactivityResult | None = None,
    attribution: AttributionResult | None = None,
    options: ReportOptions | None = None,
    now: datetime | None = None,
) -> EvidenceReport:
    """Gather a report from a scan's results, the store and the optional lab results."""
    opts = options or ReportOptions()
    red = redactor or Redactor.default()
    table = scan.accounts
    ids = table.column("account_id").to_pylist()
    scores = table.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    score_of = dict(zip(ids, scores.tolist(), strict=True))
    exchanges_of: dict[str, int] = {}
    if "exchanges" in table.column_names:
        exchanges_of = {
            a: int(n)
            for a, n in zip(ids, table.column("exchanges").to_pylist(), strict=True)
            if n is not None
        }
    members = {a for c in scan.campaigns for a in c.accounts}
    reasons_of: dict[str, list[str]] = {}
    if "reasons" in table.column_names:
        flagged_reasons = table.column("reasons").to_pylist()
        reasons_of = {
            a: list(r or []) for a, r in zip(ids, flagged_reasons, strict=True) if a in members
        }
    sections = tuple(
        _campaign_section(
            c,
            scan=scan,
            store=store,
            redactor=red,
            options=opts,
            all_scores=scores,
            score_of=score_of,
            exchanges_of=exchanges_of,
            reasons_of=reasons_of,
        )
        for c in scan.campaigns
    )
    return EvidenceReport(
        title=opts.title,
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
        scan=scan,
        campaigns=sections,
        radioactivity=radioactivity,
        radioactivity_png=_plots.radioactivity_png(radioactivity) if radioactivity else None,
        attribution=attribution,
        attribution_png=_plots.attribution_png(attribution) if attribution else None,
        store_used=store is not None,
    )


# -- rendering ---------------------------------------------------------------------------------


def _data_uri(png: bytes | None) -> str | None:
    if png is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _pval(p: float | None) -> str:
    if p is None:
        return "-"
    if p == 0.0:
        return "< 1e-300"
    if p < 1e-3:
        return f"{p:.1e}"
    return f"{p:.3f}"


def render_html(report: EvidenceReport) -> str:
    """The report as one self-contained HTML document."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("distillguard.evidence", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data_uri"] = _data_uri
    env.filters["pval"] = _pval
    env.filters["ts"] = format_ts
    css = (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
    template = env.get_template("report.html.j2")
    return template.render(r=report, css=css, version=__version__)


def write_pdf(html: str, out: Path) -> None:
    """Print the HTML report to PDF with WeasyPrint.

    Raises:
        DependencyMissingError: WeasyPrint or its system libraries (Pango) cannot be loaded.
    """
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise DependencyMissingError(
            f"PDF output needs WeasyPrint and the Pango libraries, which cannot be loaded ({exc})",
            hint="pip install weasyprint, and install Pango (Debian: apt-get install "
            "libpango-1.0-0 libpangoft2-1.0-0), or open the HTML report and print it",
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    weasyprint.HTML(string=html, base_url=None).write_pdf(str(out))

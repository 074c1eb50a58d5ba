"""Evidence: reports a person reads and bundles a third party verifies.

* :mod:`~distillguard.evidence._report`: :func:`build_report`, :func:`render_html` (one
  self-contained HTML file) and :func:`write_pdf` (WeasyPrint);
* :mod:`~distillguard.evidence._bundle`: :func:`build_bundle` (a signed zip of records, inclusion
  proofs, checkpoints, keys and results; cited records go on legal hold) and
  :func:`verify_evidence_bundle` (offline; names every altered part).

The results a report is made of (a scan's output folder, a radioactivity result, an
attribution) are read with :mod:`distillguard.results` (``read_scan``, ``read_radioactivity``,
``read_attribution``; see ``docs/results.md``).

See ``docs/evidence.md``.
"""

from __future__ import annotations

from distillguard.evidence._bundle import (
    EVIDENCE_BUNDLE_FORMAT,
    BundleCheck,
    BundleFile,
    BundleProblem,
    BundleSummary,
    build_bundle,
    verify_evidence_bundle,
)
from distillguard.evidence._report import (
    CampaignSection,
    EvidenceReport,
    ReportOptions,
    build_report,
    render_html,
    write_pdf,
)

__all__ = [
    "EVIDENCE_BUNDLE_FORMAT",
    "BundleCheck",
    "BundleFile",
    "BundleProblem",
    "BundleSummary",
    "CampaignSection",
    "EvidenceReport",
    "ReportOptions",
    "build_bundle",
    "build_report",
    "render_html",
    "verify_evidence_bundle",
    "write_pdf",
]

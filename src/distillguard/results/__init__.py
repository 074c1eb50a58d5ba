"""Result formats: what a scan, a radioactivity test and a fingerprint attribution write.

``records`` is the home of the exchange log's format; this package is the home of the results'
formats, each with one model, one writer and one reader, used by the producers (the scan, the
radioactivity command, the attribution) and by every consumer (evidence reports and bundles, the
console, the evaluation). File names, format markers and versions live here and nowhere else.

* **Scan results** (a folder): :class:`Campaign`, :class:`ScanResults`, :func:`write_scan`,
  :func:`read_scan`, :func:`read_account_scores`, the file names (:data:`SCAN_FILES`).
* **Radioactivity results** (a JSON file): :class:`RadioactivityResult` (a suspect's
  :class:`SubjectResult` beside its control's, each a :class:`PooledTest` and a curve of
  :class:`CurvePoint`), :func:`write_radioactivity`, :func:`read_radioactivity`.
* **Attribution results** (a JSON file): :class:`AttributionResult` (a ranking of
  :class:`FamilyScore` and of :class:`ProviderScore`), :func:`write_attribution`,
  :func:`dumps_attribution`, :func:`read_attribution`.
* :func:`read_result`: a radioactivity or an attribution result, whichever the file is.

Every reader raises :class:`~distillguard.errors.ResultFormatError` (an ``InputError``) naming
the file and the field when a file is missing, corrupt, breaks its format, or carries a format
version newer than this release reads. See ``docs/results.md``.

Limits (where a reader accepts what it should not, or cannot tell): the readers check each file
on its own, not the files against each other (a campaign member missing from
``account_scores.parquet`` is not noticed); ``scan_summary.json`` is free-form and only its
``format`` marker is checked; version-1 scan and attribution files carry no marker, so a file of
another program that happens to have the right fields reads as ours; without a marker,
:func:`read_result` takes any object without a ``ranking`` for a radioactivity result of the
loose shape; attribution statistics are written rounded (4 decimals, channels 3), so a result
read back equals the written one only after that rounding.
"""

from distillguard.results._any import read_result
from distillguard.results._attribution import (
    ATTRIBUTION_FORMAT,
    DEFAULT_ATTRIBUTION_METHOD,
    AttributionResult,
    FamilyScore,
    ProviderScore,
    dumps_attribution,
    read_attribution,
    write_attribution,
)
from distillguard.results._radioactivity import (
    RADIOACTIVITY_FORMAT,
    CurvePoint,
    PooledTest,
    RadioactivityResult,
    SubjectResult,
    read_radioactivity,
    write_radioactivity,
)
from distillguard.results._scan import (
    ACCOUNT_SCORES_CSV,
    ACCOUNT_SCORES_FILE,
    ACCOUNT_SCORES_SCHEMA,
    CAMPAIGNS_FILE,
    SCAN_FILES,
    SCAN_FORMAT,
    SCAN_SUMMARY_FILE,
    Campaign,
    ScanResults,
    read_account_scores,
    read_scan,
    write_scan,
)

__all__ = [
    "ACCOUNT_SCORES_CSV",
    "ACCOUNT_SCORES_FILE",
    "ACCOUNT_SCORES_SCHEMA",
    "ATTRIBUTION_FORMAT",
    "CAMPAIGNS_FILE",
    "DEFAULT_ATTRIBUTION_METHOD",
    "RADIOACTIVITY_FORMAT",
    "SCAN_FILES",
    "SCAN_FORMAT",
    "SCAN_SUMMARY_FILE",
    "AttributionResult",
    "Campaign",
    "CurvePoint",
    "FamilyScore",
    "PooledTest",
    "ProviderScore",
    "RadioactivityResult",
    "ScanResults",
    "SubjectResult",
    "dumps_attribution",
    "read_account_scores",
    "read_attribution",
    "read_radioactivity",
    "read_result",
    "read_scan",
    "write_attribution",
    "write_radioactivity",
    "write_scan",
]

"""The result files a report is made of, read through their one home, :mod:`distillguard.results`.

The names below are the results formats' own objects under the names this module gave them
before the formats moved (no copy, no second model); new code imports from
:mod:`distillguard.results` directly:

* :func:`load_scan` is :func:`~distillguard.results.read_scan` (a scan's output folder, as
  :class:`ScanResults` of :class:`CampaignResult`, which is
  :class:`~distillguard.results.Campaign`);
* :func:`load_radioactivity` is :func:`~distillguard.results.read_radioactivity`
  (:class:`RadioactivityEvidence` is :class:`~distillguard.results.RadioactivityResult`: the
  subject's name is ``result.suspect.subject``, the verdict ``result.verdict``, the control's
  p-value ``result.control.p_value``);
* :func:`load_attribution` is :func:`~distillguard.results.read_attribution`
  (:class:`AttributionEvidence` is :class:`~distillguard.results.AttributionResult`).

Every reader raises :class:`~distillguard.errors.ResultFormatError` (an ``InputError``) naming
the file and the field.
"""

from __future__ import annotations

from distillguard.results import AttributionResult as AttributionEvidence
from distillguard.results import Campaign as CampaignResult
from distillguard.results import CurvePoint, FamilyScore, ScanResults
from distillguard.results import RadioactivityResult as RadioactivityEvidence
from distillguard.results import read_attribution as load_attribution
from distillguard.results import read_radioactivity as load_radioactivity
from distillguard.results import read_scan as load_scan

__all__ = [
    "AttributionEvidence",
    "CampaignResult",
    "CurvePoint",
    "FamilyScore",
    "RadioactivityEvidence",
    "ScanResults",
    "load_attribution",
    "load_radioactivity",
    "load_scan",
]

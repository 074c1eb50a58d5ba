"""Privacy: redaction of personal data and secrets, retention limits, legal holds, erasure and
minimisation that keep the ledger verifiable.

* :mod:`~distillguard.privacy._redact`: :class:`Redactor` and the logging :class:`RedactingFilter`;
* :mod:`~distillguard.privacy._policy`: :class:`RetentionPolicy` from the ``[retention]`` section;
* :mod:`~distillguard.privacy._holds`: :class:`LegalHolds`;
* :mod:`~distillguard.privacy._retention`: :func:`apply_retention` (and its dry run),
  :func:`erase_account` and its :class:`Receipt`;
* :mod:`~distillguard.privacy._minimise`: :class:`Minimiser`, the ingest hook.

See ``docs/privacy.md`` for the design (what a ledger leaf commits to and why an erasure leaves
every proof valid), the configuration and the measured quality of redaction.
"""

from __future__ import annotations

from distillguard.privacy._holds import HoldScope, LegalHold, LegalHolds
from distillguard.privacy._minimise import Minimiser
from distillguard.privacy._policy import (
    AccountProfile,
    Minimisation,
    RetentionPolicy,
    RetentionRule,
)
from distillguard.privacy._redact import (
    DEFAULT_KINDS,
    Finding,
    PiiKind,
    RedactingFilter,
    RedactionResult,
    RedactionRule,
    Redactor,
    install_log_redaction,
)
from distillguard.privacy._retention import (
    Receipt,
    RetentionPlan,
    RetentionResult,
    apply_retention,
    erase_account,
    list_receipts,
    plan_retention,
)

__all__ = [
    "DEFAULT_KINDS",
    "AccountProfile",
    "Finding",
    "HoldScope",
    "LegalHold",
    "LegalHolds",
    "Minimisation",
    "Minimiser",
    "PiiKind",
    "Receipt",
    "RedactingFilter",
    "RedactionResult",
    "RedactionRule",
    "Redactor",
    "RetentionPlan",
    "RetentionPolicy",
    "RetentionResult",
    "RetentionRule",
    "apply_retention",
    "erase_account",
    "install_log_redaction",
    "list_receipts",
    "plan_retention",
]

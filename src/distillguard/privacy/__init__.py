"""Privacy: redaction of personal data and secrets, retention limits, legal holds, erasure and
minimisation that keep the ledger verifiable.

See ``docs/privacy.md`` for the design (what a ledger leaf commits to and why an erasure leaves
every proof valid), the configuration and the measured quality of redaction.
"""

from __future__ import annotations

from distillguard.privacy.redact import (
    DEFAULT_KINDS,
    Finding,
    PiiKind,
    RedactingFilter,
    RedactionResult,
    RedactionRule,
    Redactor,
    install_log_redaction,
)

__all__ = [
    "DEFAULT_KINDS",
    "Finding",
    "PiiKind",
    "RedactingFilter",
    "RedactionResult",
    "RedactionRule",
    "Redactor",
    "install_log_redaction",
]

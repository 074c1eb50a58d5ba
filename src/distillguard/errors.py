"""Errors raised by DistillGuard.

Every error DistillGuard raises on purpose derives from :class:`DistillGuardError`. Each class has
a stable ``code`` (quote it in bug reports and runbooks; it never changes meaning) and an
``exit_code`` that the ``distillguard`` command returns when the error reaches it. Messages say
what went wrong *and what to do*; the optional ``hint`` carries the "what to do" part.

The tree::

    DistillGuardError                      DG000  exit 1
    ├── ConfigurationError                 DG100  exit 3
    │   ├── KeyringError                   DG110  exit 3
    │   │   ├── KeyringPermissionError     DG111  exit 3
    │   │   └── KeyNotFoundError           DG112  exit 3
    │   └── DependencyMissingError         DG120  exit 3
    ├── InputError                         DG200  exit 4
    │   ├── LogNotFoundError               DG201  exit 4
    │   ├── LogFormatError                 DG202  exit 4
    │   ├── RecordError                    DG210  exit 4
    │   ├── StructuredFieldError           DG220  exit 4
    │   ├── ImageFormatError               DG230  exit 4
    │   └── ResultFormatError              DG240  exit 4
    ├── VerificationError                  DG300  exit 5
    │   ├── ProofError                     DG310  exit 5
    │   ├── SignatureError                 DG320  exit 5
    │   ├── AuthenticationError            DG330  exit 5
    │   │   └── PassportError              DG331  exit 5
    │   └── BundleError                    DG340  exit 5
    ├── StorageError                       DG400  exit 6
    │   ├── StoreConnectionError           DG401  exit 6
    │   └── SchemaVersionError             DG402  exit 6
    │       └── SchemaOutdatedError        DG403  exit 6
    ├── UpstreamError                      DG500  exit 7
    │   └── UpstreamTimeoutError           DG504  exit 7
    └── LegalHoldError                     DG600  exit 1

Exit codes of the ``distillguard`` command: 0 success; 1 the command ran and found problems (for
example ``validate`` quarantined records); 2 usage error (bad option); 3 configuration or key
problem; 4 bad input; 5 a verification failed; 6 storage problem; 7 upstream model problem;
70 an internal error (a bug: please report it with the traceback shown by ``--debug``).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "BundleError",
    "ConfigurationError",
    "DependencyMissingError",
    "DistillGuardError",
    "ImageFormatError",
    "InputError",
    "KeyNotFoundError",
    "KeyringError",
    "KeyringPermissionError",
    "LegalHoldError",
    "LogFormatError",
    "LogNotFoundError",
    "PassportError",
    "ProofError",
    "RecordError",
    "ResultFormatError",
    "SchemaOutdatedError",
    "SchemaVersionError",
    "SignatureError",
    "StorageError",
    "StoreConnectionError",
    "StructuredFieldError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "VerificationError",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70


class DistillGuardError(Exception):
    """Base of every error DistillGuard raises on purpose.

    Args:
        message: what went wrong, in one sentence naming the thing (file, line, field, key id).
        hint: what the user should do about it.
        details: machine-readable context, shown by ``--json`` output (never secrets).
    """

    code: ClassVar[str] = "DG000"
    exit_code: ClassVar[int] = 1

    def __init__(
        self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: code, error class, message, hint and details."""
        return {
            "code": self.code,
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
        }


class ConfigurationError(DistillGuardError):
    """The configuration (file, environment, options) is invalid or incomplete."""

    code = "DG100"
    exit_code = 3


class KeyringError(ConfigurationError):
    """The keyring file is missing, unreadable or malformed."""

    code = "DG110"


class KeyringPermissionError(KeyringError):
    """The keyring file can be read by users other than its owner."""

    code = "DG111"


class KeyNotFoundError(KeyringError):
    """No key with the requested id or purpose is in the keyring."""

    code = "DG112"


class DependencyMissingError(ConfigurationError):
    """An optional dependency needed for the requested feature is not installed."""

    code = "DG120"


class InputError(DistillGuardError):
    """Input data (a log, a file, a request) is missing or does not follow its format."""

    code = "DG200"
    exit_code = 4


class LogNotFoundError(InputError):
    """The exchange log folder or file does not exist."""

    code = "DG201"


class LogFormatError(InputError):
    """A log file cannot be read at all (corrupt Parquet, unknown layout, truncated archive)."""

    code = "DG202"


class RecordError(InputError):
    """One record breaks the format: names the file, line (or row), field and reason."""

    code = "DG210"

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        fld = f"field '{field}': " if field else ""
        super().__init__(
            f"{prefix}{fld}{reason}",
            hint=hint,
            details={"file": file, "line": line, "field": field, "reason": reason},
        )
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason


class StructuredFieldError(InputError):
    """An HTTP structured field (RFC 8941), such as ``Signature-Input``, cannot be parsed."""

    code = "DG220"


class ImageFormatError(InputError):
    """An image cannot be decoded, is truncated, too small or too large, or has an unusable mode."""

    code = "DG230"


class ResultFormatError(InputError):
    """A result file (a scan's output folder, a radioactivity or an attribution result) is
    missing, corrupt, breaks its format, or was written by a newer DistillGuard (format version
    too new): the message names the file and the field."""

    code = "DG240"


class VerificationError(DistillGuardError):
    """A proof, signature or credential did not verify."""

    code = "DG300"
    exit_code = 5


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof, or a checkpoint, did not verify."""

    code = "DG310"


class SignatureError(VerificationError):
    """A digital signature did not verify."""

    code = "DG320"


class AuthenticationError(VerificationError):
    """A request's identity (passport, HTTP message signature) was rejected."""

    code = "DG330"


class PassportError(AuthenticationError):
    """An agent passport is malformed, badly signed, expired, revoked or from an unknown issuer."""

    code = "DG331"


class BundleError(VerificationError):
    """An evidence bundle failed verification; ``details['problems']`` names every altered part."""

    code = "DG340"


class StorageError(DistillGuardError):
    """The store could not be opened, read or written."""

    code = "DG400"
    exit_code = 6


class StoreConnectionError(StorageError):
    """The store's database cannot be reached or opened."""

    code = "DG401"


class SchemaVersionError(StorageError):
    """The store was written by an incompatible version of DistillGuard."""

    code = "DG402"


class SchemaOutdatedError(SchemaVersionError):
    """The store's schema is older than this DistillGuard: it must be migrated first (``distillguard
    db migrate``); processes refuse to run on it rather than change it themselves."""

    code = "DG403"


class UpstreamError(DistillGuardError):
    """The upstream model or API failed."""

    code = "DG500"
    exit_code = 7


class UpstreamTimeoutError(UpstreamError):
    """The upstream model or API did not answer in time."""

    code = "DG504"


class LegalHoldError(DistillGuardError):
    """An erasure was refused because a legal hold covers the records (force it to override)."""

    code = "DG600"

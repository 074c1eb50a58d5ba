"""Exchange log format v1: records, reading, validation and quarantine."""

from distillguard.records.model import (
    ACCOUNT_FIELDS,
    ACCOUNT_SCHEMA,
    EXCHANGE_FIELDS,
    EXCHANGE_SCHEMA,
    Account,
    Exchange,
    Message,
)

__all__ = [
    "ACCOUNT_FIELDS",
    "ACCOUNT_SCHEMA",
    "EXCHANGE_FIELDS",
    "EXCHANGE_SCHEMA",
    "Account",
    "Exchange",
    "Message",
]

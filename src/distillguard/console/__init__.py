"""The operator console: a web UI at ``/console`` for the analysts who investigate and act.

Server-rendered Jinja2 pages with vendored htmx (no CDN, works offline and mostly without
JavaScript): a live traffic overview, campaigns with scores and trends, campaign and account
pages, actions with a confirmation step and an audit trail, ledger status, radioactivity and
attribution results. Behind the admin credential: the admin token is exchanged for an HttpOnly,
SameSite=Strict session cookie signed with a key derived from the keyring; every state-changing
form carries a CSRF token. Every action goes through the operations service
(:class:`distillguard.app.operations.Operations`), which audits it; the console is built from
``[console]`` and mounted by :func:`distillguard.app.create_application`. See
``docs/console.md``.
"""

from __future__ import annotations

from distillguard.console._app import ACTIONS, HTMX_VERSION, Console, ConsoleOptions, create_console
from distillguard.console._data import ConsoleQueries, ScanIndex
from distillguard.console._session import Session, SessionSigner, derive_session_key

__all__ = [
    "ACTIONS",
    "HTMX_VERSION",
    "Console",
    "ConsoleOptions",
    "ConsoleQueries",
    "ScanIndex",
    "Session",
    "SessionSigner",
    "create_console",
    "derive_session_key",
]

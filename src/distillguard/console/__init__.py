"""The operator console: a web UI at ``/console`` for the analysts who investigate and act.

Server-rendered Jinja2 pages with vendored htmx (no CDN, works offline and mostly without
JavaScript): a live traffic overview, campaigns with scores and trends, campaign and account
pages, actions with a confirmation step and an audit trail, ledger status, radioactivity and
attribution results. Behind the admin credential: the admin token is exchanged for an HttpOnly,
SameSite=Strict session cookie signed with a key derived from the keyring; every state-changing
form carries a CSRF token. See ``docs/console.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distillguard.console._session import Session, SessionSigner, derive_session_key
from distillguard.console.app import ACTIONS, HTMX_VERSION, Console, ConsoleOptions, create_console
from distillguard.console.data import ConsoleQueries, ScanIndex

if TYPE_CHECKING:
    from distillguard.config import Settings
    from distillguard.gateway.admin import AdminContext
    from distillguard.keyring import Keyring

__all__ = [
    "ACTIONS",
    "HTMX_VERSION",
    "Console",
    "ConsoleOptions",
    "ConsoleQueries",
    "ScanIndex",
    "Session",
    "SessionSigner",
    "console_from_settings",
    "create_console",
    "derive_session_key",
]


def console_from_settings(
    settings: Settings, *, admin: AdminContext, keyring: Keyring, metrics: Any = None
) -> Console:
    """The console configured by ``[console]``, over the gateway's admin context."""
    from pathlib import Path

    from distillguard.keyring import KeyPurpose

    cfg = settings.console
    try:
        ledger_keys = keyring.verify_keys(KeyPurpose.LEDGER)  # time-bound (retired_at)
    except Exception:
        ledger_keys = []
    options = ConsoleOptions(
        scan_results=cfg.scan_results,
        result_files=tuple(cfg.result_files),
        upload_dir=cfg.upload_dir or Path(settings.home) / "console-results",
        session_ttl_s=cfg.session_ttl_s,
        page_size=cfg.page_size,
        secure_cookie=cfg.secure_cookie,
    )
    key = derive_session_key(secret=keyring.watermark_key().secret, admin_token=admin.token)
    return create_console(
        admin=admin,
        session_key=key,
        options=options,
        metrics=metrics,
        ledger_public_keys=ledger_keys,
    )

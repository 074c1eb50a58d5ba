"""The console's ASGI app: routes, authentication, CSRF and actions.

Built by :func:`create_console` over the operations service
(:class:`distillguard.app.operations.Operations`), which performs and audits every action, and
mounted at ``/console`` by :func:`distillguard.app.create_application`. Pages are rendered on
the server from Jinja2 templates; htmx (vendored, :data:`HTMX_VERSION`) only refreshes fragments
(the live overview, the filtered account table), and every page and form also works without
JavaScript.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from distillguard.app.operations import Actor, Operations
from distillguard.console import _svg
from distillguard.console._data import ConsoleQueries, ScanIndex
from distillguard.console._session import Session, SessionSigner
from distillguard.errors import ConfigurationError, DistillGuardError, InputError
from distillguard.gateway.policy import Action

__all__ = ["ACTIONS", "HTMX_VERSION", "Console", "ConsoleOptions", "create_console"]

logger = logging.getLogger(__name__)

HTMX_VERSION = "2.0.11"
"""The vendored htmx (npm package ``htmx.org``), in ``static/htmx.min.js`` with its licence."""

ACTIONS: dict[str, str] = {
    "throttle": "Throttle (scale its rate limits down)",
    "watermark": "Watermark its answers",
    "canary": "Plant canaries (watermark and a per-account fictitious fact)",
    "reverify": "Require re-verification",
    "block": "Block",
    "allow": "Allow (overrides every automatic action)",
    "clear": "Clear the analyst override",
}
"""What an analyst can do to an account from the console, with the confirmation wording."""

_COOKIE = "dg_console"
_PRE_COOKIE = "dg_console_pre"
_STATIC = {
    "htmx.min.js": "text/javascript",
    "console.css": "text/css",
    "htmx.LICENSE": "text/plain",
}
_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class ConsoleOptions:
    """How the console behaves (from ``[console]``)."""

    scan_results: Path | None = None
    result_files: tuple[Path, ...] = ()
    upload_dir: Path | None = None
    session_ttl_s: int = 8 * 3600
    page_size: int = 50
    secure_cookie: bool = False
    max_upload_bytes: int = 5 * 1024 * 1024


@dataclass
class _State:
    scan: ScanIndex | None = None
    scan_error: str | None = None
    audit: dict[str, Any] | None = None
    timelines: dict[tuple[str, str], Any] = field(default_factory=dict)


class Console:
    """The operator console (an ASGI app). Build it with :func:`create_console`."""

    def __init__(
        self,
        *,
        operations: Operations,
        admin_token: str,
        signer: SessionSigner,
        options: ConsoleOptions,
        metrics: Any = None,
    ) -> None:
        self.operations = operations
        self._admin_token = admin_token
        self.signer = signer
        self.options = options
        self.metrics = metrics
        # the console's own read queries share the service's connection, under its lock
        self.queries = ConsoleQueries(operations.store)
        self.state = _State()
        self._reload_lock = threading.Lock()
        self.env = Environment(
            loader=PackageLoader("distillguard.console", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ts"] = _fmt_ts
        self.env.filters["us"] = lambda us: _fmt_ts(datetime.fromtimestamp(int(us) / 1e6, UTC))
        self.env.filters["epoch"] = lambda s: _fmt_ts(datetime.fromtimestamp(int(s), UTC))
        self.env.filters["pct"] = lambda x: f"{100 * float(x):.0f}%"
        self.env.filters["num"] = lambda x: f"{int(x):,}"
        # sessions live in the store, so that every replica sees a logout, and a new admin token
        # ends the sessions made under the old one
        self._token_fp = hashlib.sha256(b"console token|" + admin_token.encode()).hexdigest()
        ended = self._locked(self._start_tables)
        if ended:
            logger.info("console: ended %d sessions of a previous admin token", ended)
        if options.scan_results is not None:
            self.load_scan(options.scan_results)
        self.app = Starlette(
            routes=self._routes(), exception_handlers={HTTPException: self._http_error}
        )

    def __repr__(self) -> str:
        return f"Console(scan={self.options.scan_results!s})"

    def _start_tables(self) -> int:
        """Create the console's tables; end sessions made under another admin token."""
        self.queries.ensure_tables()
        return self.queries.end_sessions_of_other_tokens(self._token_fp)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        await self.app(scope, receive, send)

    # -- data loading ---------------------------------------------------------------------------

    def load_scan(self, folder: Path) -> ScanIndex | None:
        """Load (or reload) a scan's results; an unreadable folder is shown on the pages."""
        with self._reload_lock:
            try:
                index = ScanIndex.load(folder)
                self._locked(lambda: self.queries.load_members(index))
            except DistillGuardError as exc:
                logger.warning("console: cannot load the scan results: %s", exc.message)
                self.state.scan_error = exc.message
                return None
            self.state.scan, self.state.scan_error = index, None
            self.state.timelines.clear()
            logger.info("console: loaded %d campaigns from %s", len(index.campaigns), index.folder)
            return index

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code)
        return self.render(
            request,
            "error.html",
            session=await self.session(request),
            status=exc.status_code,
            title={400: "Bad request", 401: "Log in first", 403: "Forbidden", 404: "Not found"}.get(
                exc.status_code, "Error"
            ),
            detail=exc.detail,
        )

    def _locked(self, fn: Callable[[], Any]) -> Any:
        return self.operations.run(lambda _store: fn())

    async def _db(self, fn: Callable[[], Any]) -> Any:
        return await run_in_threadpool(self._locked, fn)

    # -- rendering and auth ---------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page (or fragment) with the common context and the security headers."""
        html = self.env.get_template(template).render(
            base=self._base(request),
            session=session,
            csrf=session.csrf if session else context.pop("csrf", ""),
            htmx_version=HTMX_VERSION,
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        self._secure(response)
        return response

    @staticmethod
    def _secure(response: Response) -> Response:
        h = response.headers
        h["Content-Security-Policy"] = _CSP
        h["X-Content-Type-Options"] = "nosniff"
        h["X-Frame-Options"] = "DENY"
        h["Referrer-Policy"] = "no-referrer"
        h.setdefault("Cache-Control", "no-store")
        return response

    async def session(self, request: Request) -> Session | None:
        """The analyst's session: a valid signed cookie whose session is still open in the store
        (not logged out, not expired, made under the current admin token)."""
        session = self.signer.verify(request.cookies.get(_COOKIE))
        if session is None:
            return None
        alive = await self._db(
            lambda: self.queries.session_alive(
                session_hash=_session_hash(session.nonce),
                token_fp=self._token_fp,
                now=int(time.time()),
            )
        )
        return session if alive else None

    def _login_redirect(self, request: Request) -> Response:
        base = self._base(request)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        url = f"{base}/login?next={quote(target, safe='')}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    async def _form(self, request: Request, session: Session) -> FormData:
        form = await request.form(max_part_size=self.options.max_upload_bytes)
        token = form.get("csrf") or request.headers.get("x-csrf-token")
        if not isinstance(token, str) or not self.signer.check_csrf(session.nonce, token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and retry")
        return form

    def _page(
        self, handler: Callable[[Request, Session], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                if request.method != "GET":
                    raise HTTPException(401, "log in to the console first")
                return self._login_redirect(request)
            return self._secure(await handler(request, session))

        return endpoint

    def _routes(self) -> list[Route]:
        p = self._page
        return [
            Route("/static/{name}", self.static, methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", p(self.logout), methods=["POST"]),
            Route("/", p(self.overview), methods=["GET"]),
            Route("/live", p(self.live), methods=["GET"]),
            Route("/campaigns", p(self.campaigns), methods=["GET"]),
            Route("/campaigns/{campaign_id}", p(self.campaign), methods=["GET"]),
            Route("/accounts/{account_id:path}", p(self.account), methods=["GET"]),
            Route(
                "/accounts/{account_id:path}/action/confirm",
                p(self.confirm_action),
                methods=["POST"],
            ),
            Route("/accounts/{account_id:path}/action", p(self.do_action), methods=["POST"]),
            Route(
                "/passports/{passport_id}/revoke/confirm", p(self.confirm_revoke), methods=["POST"]
            ),
            Route("/passports/{passport_id}/revoke", p(self.do_revoke), methods=["POST"]),
            Route("/audit", p(self.audit), methods=["GET"]),
            Route("/ledger", p(self.ledger), methods=["GET"]),
            Route("/ledger/audit", p(self.ledger_audit), methods=["POST"]),
            Route("/ledger/checkpoint", p(self.ledger_checkpoint), methods=["POST"]),
            Route("/results", p(self.results), methods=["GET"]),
            Route("/results/upload", p(self.upload_result), methods=["POST"]),
            Route("/scan/reload", p(self.reload_scan), methods=["POST"]),
        ]

    # -- static and login -----------------------------------------------------------------------

    async def static(self, request: Request) -> Response:
        """The vendored assets (htmx, its licence, the stylesheet); nothing else."""
        name = request.path_params["name"]
        if name not in _STATIC:
            raise HTTPException(404, "no such file")
        data = resources.files("distillguard.console").joinpath("static", name).read_bytes()
        resp = Response(data, media_type=_STATIC[name])
        resp.headers["Cache-Control"] = "public, max-age=3600"
        return self._secure(resp)

    async def login_form(self, request: Request, *, error: str | None = None) -> Response:
        """The login form; sets a pre-login nonce cookie that its CSRF token is bound to."""
        if error is None and await self.session(request) is not None:
            return RedirectResponse(self._base(request) + "/", status_code=303)
        nonce = secrets.token_urlsafe(18)
        nxt = request.query_params.get("next", "")
        resp = self.render(
            request,
            "login.html",
            session=None,
            status=401 if error else 200,
            csrf=self.signer.csrf_for(nonce),
            next=nxt if nxt.startswith(self._base(request) + "/") else "",
            error=error,
        )
        self._cookie(request, resp, _PRE_COOKIE, nonce, max_age=900)
        return resp

    def _cookie(
        self, request: Request, resp: Response, name: str, value: str, *, max_age: int
    ) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self._base(request) or "/",
            httponly=True,
            samesite="strict",
            secure=self.options.secure_cookie,
        )

    async def login(self, request: Request) -> Response:
        """Exchange the admin token for a session cookie (CSRF-checked)."""
        form = await request.form()
        nonce = request.cookies.get(_PRE_COOKIE, "")
        token = form.get("csrf")
        if not nonce or not isinstance(token, str) or not self.signer.check_csrf(nonce, token):
            return await self.login_form(request, error="The form expired; please try again.")
        given = form.get("token")
        analyst = str(form.get("analyst") or "").strip()
        ok = isinstance(given, str) and hmac.compare_digest(
            given.strip().encode(), self._admin_token.encode()
        )
        if not ok or not _ID.match(analyst or "-"):
            logger.warning("console: failed login")
            await _pause(0.2)
            return await self.login_form(
                request,
                error="Wrong admin token, or a name with characters other than letters, digits "
                "and . _ - @",
            )
        if not analyst:
            analyst = "admin"
        cookie, started = self.signer.issue(analyst)
        await self._db(
            lambda: self.queries.start_session(
                session_hash=_session_hash(started.nonce),
                analyst=analyst,
                expires_at=started.expires_at,
                token_fp=self._token_fp,
                now=int(time.time()),
            )
        )
        nxt = str(form.get("next") or "")
        base = self._base(request)
        dest = nxt if nxt.startswith(base + "/") and "//" not in nxt[len(base) :] else base + "/"
        resp = RedirectResponse(dest, status_code=303)
        self._cookie(request, resp, _COOKIE, cookie, max_age=self.signer.ttl_s)
        resp.delete_cookie(_PRE_COOKIE, path=base or "/")
        await run_in_threadpool(
            lambda: self.operations.record(
                actor=Actor(analyst, "console"), action="login", target="console"
            )
        )
        return resp

    async def logout(self, request: Request, session: Session) -> Response:
        """End the session: removed from the store (a copy of the cookie no longer works) and
        the cookie deleted."""
        await self._form(request, session)
        await self._db(lambda: self.queries.end_session(_session_hash(session.nonce)))
        resp = RedirectResponse(self._base(request) + "/login", status_code=303)
        resp.delete_cookie(_COOKIE, path=self._base(request) or "/")
        return resp

    # -- overview -------------------------------------------------------------------------------

    def _rejections(self) -> list[tuple[str, int]]:
        if self.metrics is None:
            return []
        out: list[tuple[str, int]] = []
        for metric in self.metrics.rejections.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    out.append((str(sample.labels.get("reason", "?")), int(sample.value)))
        return sorted(out, key=lambda x: -x[1])

    def _risk_rows(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for a in ids:
            status = self.operations.status(a)
            out[a] = {
                "risk": status.risk.risk,
                "cluster": status.risk.cluster_id,
                "action": status.decision.action.value,
                "source": status.decision.source,
            }
        return out

    async def _live_context(self) -> dict[str, Any]:
        traffic = await self._db(lambda: self.queries.traffic(minutes=60))
        scan = self.state.scan
        top = scan.top_accounts(10) if scan else ()
        labels = []
        if traffic.window_end is not None:
            end = traffic.window_end
            labels = [
                (end - timedelta(minutes=60 - i - 1)).strftime("%H:%M")
                for i in range(len(traffic.per_minute))
            ]
        clusters = self.operations.clusters()
        return {
            "traffic": traffic,
            "chart": _svg.bar_chart(
                traffic.per_minute, title="Requests per minute, last 60 minutes", labels=labels
            ),
            "rejections": self._rejections(),
            "top": top,
            "live": self._risk_rows([r.account_id for r in top]),
            "clusters": clusters[:10],
            "refreshed": _fmt_ts(datetime.now(UTC)),
        }

    async def overview(self, request: Request, session: Session) -> Response:
        """Traffic, rejections, actions and the riskiest accounts (the live part polls)."""
        ctx = await self._live_context()
        return self.render(request, "overview.html", session=session, scan=self.state.scan, **ctx)

    async def live(self, request: Request, session: Session) -> Response:
        """The overview's live fragment (polled by htmx every 5 s)."""
        ctx = await self._live_context()
        return self.render(request, "_live.html", session=session, **ctx)

    # -- campaigns ------------------------------------------------------------------------------

    async def _timeline(self, scan: ScanIndex, campaign_id: str) -> Any:
        key = (scan.key, campaign_id)
        cached = self.state.timelines.get(key)
        if cached is None:
            cached = await self._db(lambda: self.queries.timeline(scan.key, campaign_id))
            self.state.timelines[key] = cached
        return cached

    async def campaigns(self, request: Request, session: Session) -> Response:
        """Batch campaigns with score, size and activity trend; the online scorer's clusters."""
        scan = self.state.scan
        rows = []
        if scan is not None:
            for c in scan.campaigns:
                tl = await self._timeline(scan, c.campaign_id)
                half = len(tl.exchanges) // 2
                first, last = sum(tl.exchanges[:half]), sum(tl.exchanges[half:])
                trend = (
                    "rising" if last > first * 1.2 else "falling" if last < first / 1.2 else "flat"
                )
                rows.append(
                    {
                        "c": c,
                        "spark": _svg.sparkline(
                            list(tl.exchanges), title=f"exchanges over time, {c.campaign_id}"
                        ),
                        "trend": trend,
                    }
                )
        clusters = self.operations.clusters()
        return self.render(
            request,
            "campaigns.html",
            session=session,
            scan=scan,
            scan_error=self.state.scan_error,
            rows=rows,
            clusters=clusters,
        )

    async def campaign(self, request: Request, session: Session) -> Response:
        """One campaign: accounts (paginated, filtered), infrastructure graph, timeline, sample
        exchanges (redacted) and signals. With ``HX-Target: accounts`` only the table."""
        scan = self.state.scan
        cid = request.path_params["campaign_id"]
        c = scan.campaign(cid) if scan else None
        if scan is None or c is None:
            raise HTTPException(404, f"no campaign {cid!r} in the loaded scan")
        qp = request.query_params
        query = qp.get("q", "").strip()[:200]
        min_score = _float(qp.get("min_score"))
        flagged = qp.get("flagged") == "1"
        action = qp.get("action", "")
        sort = qp.get("sort", "score") if qp.get("sort") in ("score", "account_id") else "score"
        page_no = _int(qp.get("page"), 1)
        only: frozenset[str] | None = None
        if action in ACTIONS and action != "clear":
            only = await run_in_threadpool(self.operations.overridden, Action(action))
        page = scan.page(
            cid,
            page=page_no,
            page_size=self.options.page_size,
            query=query,
            min_score=min_score,
            flagged_only=flagged,
            only_ids=only,
            sort=sort,
        )
        live = self._risk_rows([r.account_id for r in page.rows])
        filters = {
            "q": query,
            "min_score": qp.get("min_score", ""),
            "flagged": "1" if flagged else "",
            "action": action if only is not None else "",
            "sort": sort,
        }

        def link(n: int) -> str:
            args = {k: v for k, v in filters.items() if v and not (k == "sort" and v == "score")}
            args["page"] = str(n)
            return f"{self._base(request)}/campaigns/{quote(cid, safe='')}?{urlencode(args)}"

        table_ctx: dict[str, Any] = {
            "c": c,
            "page": page,
            "live": live,
            "filters": filters,
            "link": link,
            "actions": ACTIONS,
        }
        if request.headers.get("hx-target") == "accounts":
            return self.render(request, "_accounts.html", session=session, **table_ctx)
        from distillguard.privacy import Redactor

        top = scan.top_of(cid, 40)
        tl = await self._timeline(scan, cid)
        edges = await self._db(lambda: self.queries.infrastructure(top))
        samples = await self._db(lambda: self.queries.sample_exchanges(top, limit=5))
        redactor = Redactor()
        shared: dict[tuple[str, str], set[str]] = {}
        for e in edges:
            shared.setdefault((e.kind, e.key), set()).add(e.account_id)
        shared_rows = sorted(
            ((k, len(v)) for k, v in shared.items() if len(v) >= 2), key=lambda x: -x[1]
        )[:20]
        return self.render(
            request,
            "campaign.html",
            session=session,
            timeline=tl,
            timeline_chart=_svg.bar_chart(
                list(tl.exchanges),
                title=f"Exchanges of campaign {cid} per {tl.bucket_s // 3600} h",
                labels=[_fmt_ts(t) for t in tl.starts],
            ),
            graph=_svg.infra_graph(
                edges, title=f"Shared infrastructure of the 40 highest-scored accounts of {cid}"
            ),
            shared=shared_rows,
            samples=[_sample(s, redactor) for s in samples],
            signals=_signals(c.signals),
            **table_ctx,
        )

    # -- accounts -------------------------------------------------------------------------------

    async def account(self, request: Request, session: Session) -> Response:
        """Profile, risk (scan, online, history), exchanges (keyset pages), passports, actions."""
        from distillguard.privacy import Redactor

        account_id = request.path_params["account_id"]
        acct = await run_in_threadpool(self.operations.account, account_id)
        if acct is None:
            raise HTTPException(404, f"unknown account {account_id!r}")
        before = _cursor(request.query_params.get("before"))
        exchanges = await self._db(
            lambda: self.queries.exchanges(account_id, before=before, limit=20)
        )
        count = await self._db(lambda: self.queries.exchange_count(account_id))
        actions = await self._db(lambda: self.queries.actions_of(account_id, limit=50))
        trail = await run_in_threadpool(
            lambda: self.operations.audit_trail(target=account_id, limit=20)
        )
        passports = await run_in_threadpool(
            lambda: self.operations.passports(account_id=account_id)
        )
        scan_row = self.state.scan.account(account_id) if self.state.scan else None
        status = self.operations.status(account_id)
        history = [r for r in reversed(actions) if r[7] is not None]
        redactor = Redactor()
        nxt = None
        if len(exchanges) == 20:
            last = exchanges[-1].exchange
            nxt = f"{int(last.ts.timestamp() * 1e6)}~{last.exchange_id}"
        return self.render(
            request,
            "account.html",
            session=session,
            acct=acct,
            scan_row=scan_row,
            score=status.risk,
            decision=status.decision,
            override=status.override,
            risk_chart=_svg.line_chart(
                [float(r[7]) for r in history],
                title=f"Risk of {account_id} at each recorded action",
                labels=[_fmt_ts(datetime.fromtimestamp(int(r[1]) / 1e6, UTC)) for r in history],
            )
            if history
            else None,
            exchanges=[_sample(s, redactor) for s in exchanges],
            count=count,
            next_cursor=nxt,
            actions=actions,
            trail=trail,
            passports=passports,
            now=time.time(),
            choices=ACTIONS,
        )

    async def confirm_action(self, request: Request, session: Session) -> Response:
        """Step one of an action: show what will happen, ask to confirm."""
        form = await self._form(request, session)
        account_id = request.path_params["account_id"]
        action, reason, expires = _action_form(form)
        return self.render(
            request,
            "confirm.html",
            session=session,
            title=f"{ACTIONS[action]}: {account_id}",
            what=f"{ACTIONS[action]} on account {account_id}",
            reason=reason,
            post=f"{self._base(request)}/accounts/{quote(account_id, safe='')}/action",
            back=f"{self._base(request)}/accounts/{quote(account_id, safe='')}",
            fields={"action": action, "reason": reason, "expires_in_h": expires or ""},
        )

    async def do_action(self, request: Request, session: Session) -> Response:
        """Step two: apply the confirmed action (an override), log it, go back to the account."""
        form = await self._form(request, session)
        if form.get("confirm") != "yes":
            raise HTTPException(400, "the action was not confirmed")
        account_id = request.path_params["account_id"]
        action, reason, expires = _action_form(form)
        exists = await run_in_threadpool(self.operations.account, account_id)
        if exists is None:
            raise HTTPException(404, f"unknown account {account_id!r}")
        actor = Actor(session.analyst, "console")
        if action == "clear":
            await run_in_threadpool(
                lambda: self.operations.clear_action(account_id, actor=actor, reason=reason)
            )
        else:
            await run_in_threadpool(
                lambda: self.operations.set_action(
                    account_id,
                    Action(action),
                    reason=reason,
                    actor=actor,
                    expires_in_s=int(expires * 3600) if expires else None,
                )
            )
        logger.info("console: %s set %s on %s", session.analyst, action, account_id)
        return RedirectResponse(
            f"{self._base(request)}/accounts/{quote(account_id, safe='')}?done={action}",
            status_code=303,
        )

    async def confirm_revoke(self, request: Request, session: Session) -> Response:
        """Step one of a passport revocation."""
        form = await self._form(request, session)
        pid = request.path_params["passport_id"]
        record = await run_in_threadpool(self.operations.passport, pid)
        if record is None:
            raise HTTPException(404, f"unknown passport {pid!r}")
        reason = _reason(form)
        return self.render(
            request,
            "confirm.html",
            session=session,
            title=f"Revoke passport {pid}",
            what=f"Revoke passport {pid} of account {record.account_id} (every replica refuses "
            "it once it reloads the revocation list)",
            reason=reason,
            post=f"{self._base(request)}/passports/{quote(pid, safe='')}/revoke",
            back=f"{self._base(request)}/accounts/{quote(record.account_id, safe='')}",
            fields={"reason": reason},
        )

    async def do_revoke(self, request: Request, session: Session) -> Response:
        """Step two: revoke the passport and audit it."""
        form = await self._form(request, session)
        if form.get("confirm") != "yes":
            raise HTTPException(400, "the revocation was not confirmed")
        pid = request.path_params["passport_id"]
        reason = _reason(form)
        record = await run_in_threadpool(self.operations.passport, pid)
        if record is None:
            raise HTTPException(404, f"unknown passport {pid!r}")
        try:
            await run_in_threadpool(
                lambda: self.operations.revoke_passport(
                    pid, reason=reason, actor=Actor(session.analyst, "console")
                )
            )
        except InputError as exc:
            raise HTTPException(404, exc.message) from None
        return RedirectResponse(
            f"{self._base(request)}/accounts/{quote(record.account_id, safe='')}?done=revoke",
            status_code=303,
        )

    async def audit(self, request: Request, session: Session) -> Response:
        """The audit trail: every operator action, whichever door it came through."""
        trail = await run_in_threadpool(lambda: self.operations.audit_trail(limit=200))
        return self.render(request, "audit.html", session=session, trail=trail)

    # -- ledger ---------------------------------------------------------------------------------

    async def ledger(self, request: Request, session: Session) -> Response:
        """Tree head, latest checkpoint, last audit."""
        try:
            head = await run_in_threadpool(self.operations.ledger_head)
            checkpoint = head.pop("checkpoint")
            info: dict[str, Any] = {"head": head, "checkpoint": checkpoint}
            error = None
        except DistillGuardError as exc:
            info, error = {"head": None, "checkpoint": None}, exc.message
        return self.render(
            request,
            "ledger.html",
            session=session,
            error=error,
            audit=self.state.audit,
            can_sign=self.operations.ledger_key is not None,
            **info,
        )

    async def ledger_audit(self, request: Request, session: Session) -> Response:
        """Run a full audit of the ledger against the store and its checkpoints."""
        await self._form(request, session)
        report = await run_in_threadpool(
            lambda: self.operations.audit_ledger(actor=Actor(session.analyst, "console"))
        )
        report["at"] = _fmt_ts(report["at"])
        self.state.audit = report
        return RedirectResponse(self._base(request) + "/ledger", status_code=303)

    async def ledger_checkpoint(self, request: Request, session: Session) -> Response:
        """Sign and store a checkpoint of the current head."""
        await self._form(request, session)
        try:
            await run_in_threadpool(
                lambda: self.operations.publish_checkpoint(actor=Actor(session.analyst, "console"))
            )
        except ConfigurationError as exc:
            raise HTTPException(503, exc.message) from None
        return RedirectResponse(self._base(request) + "/ledger", status_code=303)

    # -- results --------------------------------------------------------------------------------

    def _result_paths(self) -> list[Path]:
        paths = list(self.options.result_files)
        if self.options.upload_dir is not None and self.options.upload_dir.is_dir():
            paths.extend(sorted(self.options.upload_dir.glob("*.json")))
        return paths

    async def results(self, request: Request, session: Session) -> Response:
        """Radioactivity and attribution results from configured and uploaded files."""
        items = await run_in_threadpool(lambda: [_load_result(p) for p in self._result_paths()])
        return self.render(
            request,
            "results.html",
            session=session,
            items=items,
            can_upload=self.options.upload_dir is not None,
        )

    async def upload_result(self, request: Request, session: Session) -> Response:
        """Store an uploaded result file (JSON) if it reads as a radioactivity or attribution
        result; otherwise say why."""
        form = await self._form(request, session)
        upload = form.get("file")
        if self.options.upload_dir is None:
            raise HTTPException(503, "uploads are disabled ([console] upload_dir)")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "choose a JSON file to upload")
        data = await upload.read(self.options.max_upload_bytes + 1)
        if len(data) > self.options.max_upload_bytes:
            raise HTTPException(413, "the file is too large")
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.filename or "result").stem)[:80]
        folder = self.options.upload_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}-{secrets.token_hex(4)}.json"
        path.write_bytes(data)
        item = _load_result(path)
        if item["error"]:
            path.unlink()
            raise HTTPException(422, item["error"])
        await run_in_threadpool(
            lambda: self.operations.record(
                actor=Actor(session.analyst, "console"),
                action="upload_result",
                target=path.name,
                outcome=str(item["kind"]),
            )
        )
        return RedirectResponse(self._base(request) + "/results", status_code=303)

    async def reload_scan(self, request: Request, session: Session) -> Response:
        """Reload the configured scan results (after a new ``distillguard scan``)."""
        await self._form(request, session)
        if self.options.scan_results is None:
            raise HTTPException(503, "no scan results configured ([console] scan_results)")
        await run_in_threadpool(self.load_scan, self.options.scan_results)
        return RedirectResponse(self._base(request) + "/campaigns", status_code=303)


def _session_hash(nonce: str) -> str:
    """How a session id is stored: hashed, so that the table alone opens no session."""
    return hashlib.sha256(b"console session|" + nonce.encode()).hexdigest()


async def _pause(seconds: float) -> None:
    """Pause (slows down token guessing a little)."""
    import asyncio

    await asyncio.sleep(seconds)


# -- helpers ----------------------------------------------------------------------------------


def _fmt_ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _float(text: str | None) -> float | None:
    try:
        v = float(text) if text else None
    except ValueError:
        return None
    return v if v is not None and 0.0 <= v <= 1.0 else None


def _int(text: str | None, default: int) -> int:
    try:
        return max(1, min(10**7, int(text))) if text else default
    except ValueError:
        return default


def _cursor(text: str | None) -> tuple[int, str] | None:
    if not text or "~" not in text:
        return None
    ts, _, eid = text.partition("~")
    try:
        return int(ts), eid[:200]
    except ValueError:
        return None


def _reason(form: FormData) -> str:
    reason = str(form.get("reason") or "").strip()
    if not reason:
        raise HTTPException(400, "give a reason: it goes in the audit trail")
    if len(reason) > 1000:
        raise HTTPException(400, "the reason is longer than 1,000 characters")
    return reason


def _action_form(form: FormData) -> tuple[str, str, float | None]:
    action = str(form.get("action") or "")
    if action not in ACTIONS:
        raise HTTPException(400, f"unknown action {action!r}")
    reason = _reason(form)
    text = str(form.get("expires_in_h") or "").strip()
    expires: float | None = None
    if text:
        try:
            expires = float(text)
        except ValueError:
            raise HTTPException(400, "expiry: a number of hours") from None
        if not 0 < expires <= 87600:
            raise HTTPException(400, "expiry: between 0 and 87,600 hours")
    return action, reason, expires


def _sample(stored: Any, redactor: Any) -> dict[str, Any]:
    ex = stored.exchange
    prompt = ex.messages[-1].content if ex.messages else ""
    response = ex.response or ""
    if not isinstance(prompt, str):
        prompt = orjson.dumps(prompt).decode()
    return {
        "exchange_id": ex.exchange_id,
        "account_id": ex.account_id,
        "ts": ex.ts,
        "model": ex.model,
        "status": ex.status,
        "prompt": redactor.redact(prompt[:600]),
        "response": redactor.redact(str(response)[:600]),
        "tokens": (ex.prompt_tokens, ex.completion_tokens),
        "action": (ex.extra or {}).get("dg_action"),
    }


def _signals(signals: Any) -> list[dict[str, Any]]:
    """Flatten a campaign's ``signals`` object into rows (name, statistic, p-value, detail)."""
    rows: list[dict[str, Any]] = []
    if not isinstance(signals, dict):
        return rows
    for name, value in signals.items():
        if isinstance(value, dict):
            stats = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
            rows.append(
                {
                    "name": name,
                    "p_value": stats.pop("p_value", None),
                    "statistic": stats.pop("statistic", None),
                    "detail": ", ".join(f"{k}={_short(v)}" for k, v in stats.items()),
                }
            )
        else:
            rows.append({"name": name, "p_value": None, "statistic": None, "detail": _short(value)})
    return rows


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_short(x) for x in v[:8]) + (" ..." if len(v) > 8 else "")
    return str(v)[:200]


def _load_result(path: Path) -> dict[str, Any]:
    """A result file as a radioactivity or attribution result (or why it is neither)."""
    from distillguard.results import AttributionResult, read_result

    out: dict[str, Any] = {"path": path, "name": path.name, "kind": None, "error": None}
    try:
        orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        out["error"] = f"{path.name}: not readable JSON ({type(exc).__name__})"
        return out
    try:
        # the kind by format marker (a radioactivity file of format 1 has a verdict too)
        result = read_result(path)
        if isinstance(result, AttributionResult):
            out["kind"], out["attribution"] = "attribution", result
        else:
            rad = result
            out["kind"], out["radioactivity"] = "radioactivity", rad
            if rad.curve:
                out["curve"] = _svg.line_chart(
                    [min(1.0, max(0.0, p.p_value)) for p in rad.curve],
                    title=f"p-value as more tokens are scored ({path.name})",
                    labels=[f"n={p.n_scored}" for p in rad.curve],
                )
    except InputError as exc:
        out["error"] = exc.message
    return out


def create_console(
    *,
    operations: Operations,
    admin_token: str,
    session_key: bytes,
    options: ConsoleOptions | None = None,
    metrics: Any = None,
) -> Console:
    """The console over the operations service.

    Args:
        operations: performs and audits every action (door ``console``, actor the analyst);
            its store connection also serves the console's own read queries.
        admin_token: what an analyst types to log in.
        session_key: 32+ bytes (:func:`~distillguard.console.derive_session_key`).
        options: scan results, result files, uploads, session lifetime, page size.
        metrics: the gateway's metrics (rejections by reason on the overview).
    """
    opts = options or ConsoleOptions()
    return Console(
        operations=operations,
        admin_token=admin_token,
        signer=SessionSigner(key=session_key, ttl_s=opts.session_ttl_s),
        options=opts,
        metrics=metrics,
    )

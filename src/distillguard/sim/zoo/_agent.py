"""Coding-agent sessions: the request stream a terminal/IDE coding agent sends to the API.

Shared by the legitimate coding-agent population and the campaign that imitates it (each with
its own task source)."""

from __future__ import annotations

import random
from typing import Final

from distillguard.sim.zoo._base import Context, ZooAccount
from distillguard.sim.zoo._common import Client, Home, address_of, send
from distillguard.sim.zoo._text import estimate_tokens, response_text
from distillguard.sim.zoo._world import CodingTool

__all__ = ["agent_session", "coding_task"]

_TASKS: Final = (
    "fix the failing test in {path}",
    "add a --{flag} option to the {tool} command and document it",
    "refactor {module} so the database calls are async",
    "why does `{cmd}` fail with {err}?",
    "rename {fn} to {fn2} everywhere and update the tests",
    "the CI is red on main since this morning, find out why",
    "add input validation to the {fn} endpoint",
    "write tests for {module}, we have none",
    "upgrade {dep} to the latest major version and fix what breaks",
    "the {fn} function is slow on big inputs, profile it and speed it up",
    "explain how {module} works, I'm new to this codebase",
    "implement pagination for the {fn} API",
)
_FILL: Final[dict[str, tuple[str, ...]]] = {
    "path": ("tests/test_orders.py", "src/api/users.ts", "pkg/cache/lru_test.go",
             "app/models/invoice.rb", "src/lib.rs", "tests/unit/test_parser.py"),
    "flag": ("dry-run", "verbose", "since", "output", "limit", "no-color"),
    "tool": ("export", "sync", "deploy", "import", "report"),
    "module": ("the billing service", "src/storage", "the auth middleware", "utils/dates.py",
               "the GraphQL resolvers", "the scheduler"),
    "cmd": ("npm run build", "pytest -x", "cargo test", "make release", "go vet ./...",
            "docker compose up"),
    "err": ("ModuleNotFoundError", "a type error in the generated client", "exit code 137",
            "ECONNREFUSED", "a borrow checker error", "a segfault"),
    "fn": ("get_user", "parseInvoice", "sync_orders", "handleWebhook", "compute_totals",
           "listProjects"),
    "fn2": ("fetch_user", "parse_invoice", "syncOrders", "on_webhook", "totals_for"),
    "dep": ("react", "pydantic", "sqlalchemy", "express", "tokio", "django"),
}  # fmt: skip
_RESULTS: Final = (
    "{path}:{n}: def {fn}(self, request):\n    payload = request.json()\n"
    "    return self.svc.{fn}(payload)",
    "$ {cmd}\n{n} passed, 1 failed\n"
    "FAILED {path}::test_{fn} - AssertionError: expected 200, got 500",
    "{path}\nsrc/config.py\nsrc/models/__init__.py\nREADME.md",
    'Traceback (most recent call last):\n  File "{path}", line {n}, in {fn}\n{err}',
    "Applied edit to {path}: 1 hunk, +{n} -3",
    "{path}:{n}:    result = {fn}(items, limit=limit)",
    "$ git diff --stat\n {path} | {n} ++++---",
    "No matches found for '{fn}' in src/",
)
_STEPS: Final = (
    "Let me look at {path} first.",
    "I'll run the tests to see the failure.",
    "The error comes from {fn}; I'll read its definition.",
    "I'll apply the fix to {path}.",
    "Now re-running the tests.",
    "Searching for other uses of {fn}.",
    "I'll update the documentation for the new option.",
)


def _fill(py: random.Random, text: str, fixed: dict[str, str] | None = None) -> str:
    for key, values in _FILL.items():
        tag = "{" + key + "}"
        while tag in text:
            value = fixed[key] if fixed is not None and py.random() < 0.8 else py.choice(values)
            text = text.replace(tag, value, 1)
    return text.replace("{n}", str(py.randint(3, 480)))


def coding_task(py: random.Random) -> str:
    """A task a developer gives a coding agent."""
    return _fill(py, py.choice(_TASKS))


def agent_session(
    ctx: Context,
    acc: ZooAccount,
    t0: int,
    *,
    task: str,
    tool: CodingTool,
    version: str,
    os_: str,
    where: Home | tuple[str, int],
    steps: int,
    step_gap_s: float,
    model: str,
    history_window: int = 6,
    tool_results: bool = True,
) -> int:
    """One agent session: the task, then ``steps`` model calls, each after the previous call's
    tool results (later turns build on earlier results). Returns the session's end time."""
    py = ctx.py
    ua, fp = tool.user_agent(version, os_)
    client = Client(ua, fp)
    system = {"role": "system", "content": tool.system_prompt}
    first = {"role": "user", "content": task}
    turns: list[dict[str, str]] = []
    session = {k: py.choice(v) for k, v in _FILL.items()}  # the files and names it works on
    t = t0
    total_prompt = estimate_tokens([tool.system_prompt, task])
    for step in range(steps):
        if not ctx.in_window(t):
            break
        msgs = [system, first, *turns[-history_window:]]
        ct = ctx.lognormal_int(180.0, 0.7, 8)
        call = py.choice(tool.tools)
        text = _fill(py, py.choice(_STEPS), session) + f" <call {call}>"
        if step == steps - 1:
            text = response_text(py, "the change")
        send(
            ctx,
            acc,
            t,
            address=address_of(ctx, where),
            client=client,
            model=model,
            messages=msgs,
            prompt_tokens=total_prompt,
            completion_tokens=ct,
            status=200 if py.random() > 0.004 else 529,
            api_key_id=acc.keys[0],
            endpoint="/v1/messages",
            response=text,
            tools=list(tool.tools),
            latency_ms=ctx.latency(ct, 20.0),
        )
        result = _fill(py, py.choice(_RESULTS), session) if tool_results else "ok"
        turns.append({"role": "assistant", "content": text})
        turns.append({"role": "tool", "content": result})
        if py.random() < 0.08:
            turns.append(
                {
                    "role": "user",
                    "content": py.choice(
                        (
                            "no, keep the old name",
                            "also update the changelog",
                            "looks good, continue",
                            "stop, run the linter first",
                        )
                    ),
                }
            )
        total_prompt += estimate_tokens([text, result]) + ct // 4
        t += ctx.gap_us(step_gap_s, 0.7)
    return t

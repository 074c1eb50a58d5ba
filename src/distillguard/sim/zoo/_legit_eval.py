"""Legitimate evaluation work: benchmark runners, LLM-as-judge teams, researchers on a
research-access programme and data-labelling vendors."""

from __future__ import annotations

from typing import Final

from distillguard.sim.zoo._base import DAY_US, HOUR_US, Context, Family, ParamRange, ZooAccount
from distillguard.sim.zoo._common import Client, chat_session, followup, home_of, send
from distillguard.sim.zoo._net import COUNTRY_TZ, client_fingerprint, cloud_egress, uid
from distillguard.sim.zoo._text import (
    CAPABILITIES,
    DIFFICULTIES,
    make_item,
    reasoning_text,
    response_text,
)
from distillguard.sim.zoo._world import MODELS, REASONING_MODEL

__all__ = ["BENCHMARK_RUNNERS", "JUDGE_TEAMS", "LABELLING_VENDORS", "RESEARCHERS"]

_HARNESSES: Final = ("evalkit", "bench-runner", "inspectr", "harnessd")
_LABS: Final = (
    "cerulean-labs",
    "fathom-ai",
    "oakridge-ml",
    "paloma-research",
    "strata-ai",
    "vireo-labs",
    "kelp-intelligence",
)


def _single(
    ctx: Context,
    acc: ZooAccount,
    ts: int,
    messages: list[dict[str, str]],
    *,
    where: tuple[str, int],
    client: Client,
    model: str,
    completion_median: float,
    status: int = 200,
    with_reasoning: bool = False,
) -> None:
    py = ctx.py
    ct = ctx.lognormal_int(completion_median, 0.5, 1) if status == 200 else 0
    send(
        ctx,
        acc,
        ts,
        address=where,
        client=client,
        model=model,
        messages=messages,
        completion_tokens=ct,
        status=status,
        api_key_id=py.choice(acc.keys),
        response=response_text(py) if status == 200 else None,
        reasoning=reasoning_text(py) if with_reasoning and status == 200 else None,
        latency_ms=ctx.latency(ct),
    )


def _benchmark_runners(ctx: Context) -> None:
    py = ctx.py
    by_bench: dict[str, list[str]] = {}
    for item in ctx.world.bench:
        by_bench.setdefault(item.bench, []).append(item.prompt)
    bench_names = sorted(by_bench)
    n_labs = min(len(_LABS), ctx.scaled("labs"))
    f = ctx.group_factor("labs", n_labs)
    for lab in py.sample(_LABS, k=n_labs):
        country = py.choice(("US", "US", "GB", "FR", "CN", "DE"))
        org_id, card = uid(py, "org_", 16), uid(py, "pm_", 24)
        egress = cloud_egress(py, 1, 3)
        harness = py.choice(_HARNESSES)
        ver = f"0.{py.randint(2, 9)}.{py.randint(0, 12)}"
        client = Client(f"{harness}/{ver} python-httpx/0.27.0", client_fingerprint(harness, ver))
        for _ in range(py.randint(1, ctx.pi("accounts_per_lab"))):
            acc = ctx.account(
                population="benchmark_runners",
                created_us=ctx.created_days_ago(20, 500),
                org_id=org_id,
                signup_channel=py.choice(("enterprise", "startup_program")),
                email_domain=f"{lab}.ai",
                payment_fingerprint=card,
                country=country,
                tier="tier-5",
            )
            runs = max(1, ctx.rng.poisson(ctx.p("runs_per_day") * ctx.days * f))
            for _ in range(int(runs)):
                t = ctx.start_us + py.randrange(ctx.days * DAY_US)  # CI runs round the clock
                bench = py.choice(bench_names)
                prompts = by_bench[bench]
                take = prompts[: max(1, int(len(prompts) * py.uniform(ctx.p("subset_low"), 1.0)))]
                samples = py.randint(1, ctx.pi("samples_max"))
                model = py.choice(MODELS)
                system = "You are a helpful assistant." if py.random() < 0.5 else None
                where = py.choice(egress)
                for prompt in take:
                    for _ in range(samples):
                        if not ctx.in_window(t):
                            break
                        msgs = [{"role": "user", "content": prompt}]
                        if system:
                            msgs.insert(0, {"role": "system", "content": system})
                        status = 429 if py.random() < ctx.p("rate_limited") else 200
                        _single(
                            ctx,
                            acc,
                            t,
                            msgs,
                            where=where,
                            client=client,
                            model=model,
                            completion_median=60.0,
                            status=status,
                            with_reasoning=model == REASONING_MODEL,
                        )
                        t += ctx.burst_gap_us(ctx.p("requests_per_s"))


BENCHMARK_RUNNERS: Final = Family(
    name="benchmark_runners",
    kind="legitimate",
    description=(
        "Evaluation pipelines of AI labs running public benchmarks against the model: the very "
        "same benchmark prompts are sent by every lab, in bursts of many requests per second "
        "(sometimes rate-limited), several samples per prompt, started by CI at any hour, "
        "from a few cloud addresses, with an evaluation harness as User-Agent and the lab's "
        "organisation, card and domain on every account."
    ),
    params=(
        ParamRange("labs", 3, 6, True, "labs at scale 1"),
        ParamRange("accounts_per_lab", 1, 4, True, "at most this many accounts per lab"),
        ParamRange("runs_per_day", 0.2, 0.8, help="benchmark runs per account per day"),
        ParamRange("subset_low", 0.3, 0.9, help="smallest share of a benchmark a run covers"),
        ParamRange("samples_max", 1, 3, True, "at most this many samples per prompt"),
        ParamRange("requests_per_s", 1.0, 8.0, help="request rate of a run"),
        ParamRange("rate_limited", 0.0, 0.05, help="share of requests answered 429"),
    ),
    body=_benchmark_runners,
)

_RUBRICS: Final = (
    "You are an impartial judge. Evaluate the assistant's answer for correctness, helpfulness "
    "and harmlessness. Output a score from 1 to 10 followed by a short justification.",
    "You grade answers to user questions against a reference. Be strict about factual errors. "
    'Reply as JSON: {"score": int 1-10, "reason": str}.',
    "Act as a careful evaluator of customer-support replies. Consider tone, accuracy and "
    "completeness. Give a 1-10 score and explain your reasoning.",
    "You compare two responses A and B to the same prompt and decide which is better, or tie. "
    "Explain your reasoning first, then give the verdict.",
)
_JUDGE_USER: Final = (
    "Question: {q}\nAnswer: {a}\nScore this answer 1-10, explain your reasoning.",
    "[Prompt]\n{q}\n[Response]\n{a}\n[Reference]\n{r}\nGrade the response.",
    "Prompt: {q}\nResponse A: {a}\nResponse B: {r}\nWhich response is better?",
    "Rate the following reply to a customer.\nCustomer: {q}\nReply: {a}",
)


def _judge_teams(ctx: Context) -> None:
    py = ctx.py
    caps = list(CAPABILITIES)
    n_teams = ctx.scaled("teams")
    f = ctx.group_factor("teams", n_teams)
    for _ in range(n_teams):
        org_id, card = uid(py, "org_", 16), uid(py, "pm_", 24)
        country = py.choice(("US", "US", "GB", "DE", "IN", "CA"))
        stem = py.choice(("grade", "judge", "evalwise", "scorely", "rubric"))
        domain = f"{stem}{py.randint(1, 99)}.ai"
        egress = cloud_egress(py, 1, 4)
        client = Client.sdk(ctx, py.choice(("py-sdk", "litellm", "langchain")))
        rubric = py.choice(_RUBRICS)
        user_t = py.choice(_JUDGE_USER)
        team_caps = py.sample(caps, k=py.randint(1, 3))
        tz = COUNTRY_TZ[country]
        for _ in range(ctx.shrink(py.randint(2, ctx.pi("team_size_max")), f)):
            acc = ctx.account(
                population="judge_teams",
                created_us=ctx.created_days_ago(20, 400),
                org_id=org_id,
                signup_channel=py.choice(("startup_program", "self_serve", "enterprise")),
                email_domain=domain,
                payment_fingerprint=card,
                country=country,
                tier=py.choice(("tier-3", "tier-4")),
            )
            for t0 in ctx.session_starts(
                per_day=ctx.p("jobs_per_day"), tz=tz, profile="work", weekend_factor=0.2
            ):
                t = t0
                where = py.choice(egress)
                use_r = py.random() < ctx.p("reasoning_share")
                for _ in range(ctx.lognormal_int(ctx.p("job_median"), 0.6, 5)):
                    if not ctx.in_window(t):
                        break
                    cap = py.choice(team_caps)
                    item = make_item(py, cap, py.choice(CAPABILITIES[cap]), py.choice(DIFFICULTIES))
                    user = user_t.format(q=item.problem, a=response_text(py), r=response_text(py))
                    msgs = [
                        {"role": "system", "content": rubric},
                        {"role": "user", "content": user},
                    ]
                    _single(
                        ctx,
                        acc,
                        t,
                        msgs,
                        where=where,
                        client=client,
                        model=REASONING_MODEL if use_r else MODELS[0],
                        completion_median=120.0,
                        with_reasoning=use_r,
                    )
                    t += ctx.burst_gap_us(ctx.p("requests_per_s"))


JUDGE_TEAMS: Final = Family(
    name="judge_teams",
    kind="legitimate",
    description=(
        "Teams that use the model as a judge or grader (LLM-as-judge): a fixed rubric system "
        "prompt, then 'score this answer 1-10, explain your reasoning' or pairwise A/B "
        "comparisons, run as batch jobs of tens to hundreds of items in office hours, from "
        "the team's cloud workers, all accounts of the team on one organisation and card. "
        "This is grading data, legitimately."
    ),
    params=(
        ParamRange("teams", 3, 6, True, "teams at scale 1"),
        ParamRange("team_size_max", 3, 7, True, "at most this many accounts per team"),
        ParamRange("jobs_per_day", 0.2, 0.8, help="grading jobs per account per working day"),
        ParamRange("job_median", 20.0, 80.0, help="median items per job"),
        ParamRange("requests_per_s", 0.3, 3.0, help="request rate within a job"),
        ParamRange("reasoning_share", 0.0, 0.5, help="share of jobs run on the reasoning model"),
    ),
    body=_judge_teams,
)

_PROBES: Final = (
    "{p}",
    "{p}. Give only the final answer.",
    "{p}. Explain your reasoning.",
    "How confident are you (0-100%) in your answer to this: {p}",
    "Answer in one word if possible: {p}",
    "{p}. Respond in {lang}.",
    "Pretend you are a novice and attempt: {p}",
)


def _researchers(ctx: Context) -> None:
    py = ctx.py
    unis = ctx.world.universities
    for _ in range(ctx.scaled("accounts")):
        uni = py.choice(unis)
        acc = ctx.account(
            population="researchers",
            created_us=ctx.created_days_ago(15, 300),
            org_id=None,
            signup_channel="research_program",
            email_domain=uni.domain,
            payment_fingerprint=None if py.random() < 0.6 else uid(py, "pm_", 24),
            country=uni.country,
            tier="research",
        )
        client = Client.sdk(ctx, py.choice(("py-sdk", "py-sdk", "httpx", "litellm")))
        home = home_of(ctx, uni.country, 0.3)
        caps = py.sample(list(CAPABILITIES), k=py.randint(2, 5))
        for t0 in ctx.session_starts(
            per_day=ctx.p("sweeps_per_day"), tz=uni.tz, profile="work", weekend_factor=0.3
        ):
            t = t0
            where = py.choice(uni.egress) if py.random() < 0.75 else home.address(ctx)
            probe = py.choice(_PROBES)
            # A systematic sweep: capability x difficulty x repeats, scripted.
            cap = py.choice(caps)
            for diff in DIFFICULTIES:
                for sub in py.sample(
                    CAPABILITIES[cap], k=min(ctx.pi("subtopics"), len(CAPABILITIES[cap]))
                ):
                    for _ in range(ctx.pi("repeats")):
                        if not ctx.in_window(t):
                            break
                        item = make_item(py, cap, sub, diff)
                        text = probe.format(
                            p=item.problem, lang=py.choice(("French", "Hindi", "Swahili"))
                        )
                        _single(
                            ctx,
                            acc,
                            t,
                            [{"role": "user", "content": text}],
                            where=where,
                            client=client,
                            model=py.choice(MODELS),
                            completion_median=200.0,
                        )
                        t += ctx.gap_us(ctx.p("gap_s"), 0.8)
        # and some manual exploration
        for t0 in ctx.session_starts(per_day=0.3, tz=uni.tz, profile="work"):
            cap = py.choice(caps)
            item = make_item(py, cap, py.choice(CAPABILITIES[cap]), "expert")
            chat_session(
                ctx,
                acc,
                t0,
                [item.problem, followup(ctx)],
                where=py.choice(uni.egress),
                client=client,
            )


RESEARCHERS: Final = Family(
    name="researchers",
    kind="legitimate",
    description=(
        "Academic researchers on the provider's research-access programme probing the model: "
        "systematic capability sweeps (capability x difficulty x subtopic, repeated, with "
        "prompt variants such as 'only the final answer' or 'how confident are you') run "
        "from notebooks on the campus network in office hours, plus manual exploration. The "
        "structure of their traffic is that of a capability sweep, legitimately."
    ),
    params=(
        ParamRange("accounts", 20, 45, True, "accounts at scale 1"),
        ParamRange("sweeps_per_day", 0.15, 0.6, help="scripted sweeps per account per day"),
        ParamRange("subtopics", 2, 5, True, "subtopics per difficulty in a sweep"),
        ParamRange("repeats", 1, 3, True, "repeats of each sweep point"),
        ParamRange("gap_s", 1.0, 8.0, help="median pause between scripted requests (s)"),
    ),
    body=_researchers,
)

_LABEL_TASKS: Final = (
    'Label the sentiment of this review as positive, negative or neutral: "{t}"',
    'Extract all person and organisation names from the text as JSON: "{t}"',
    "Which response is more helpful? Prompt: {p} Response A: {a} Response B: {b}. "
    "Answer A or B and give a one-sentence reason.",
    'Is the following message toxic? Answer yes/no and the category: "{t}"',
    'Rate the summary\'s faithfulness to the source from 1 to 5. Source: "{t}" Summary: {a}',
    'Translate this product title to {lang} and keep the brand name: "{t}"',
    'Classify the intent of the user query into one of [refund, delivery, account, other]: "{t}"',
)
_SNIPPETS: Final = (
    "arrived two days late but works perfectly", "the battery died after a week, very annoyed",
    "Maria Lopez joined Orbital Freight as CFO in May", "where is my parcel?? ordered 10 days ago",
    "you people are useless", "cannot log in since the update", "great value, would buy again",
    "Ben from the Leeds office met Tanaka Corp yesterday", "refund please, wrong size",
)  # fmt: skip


def _labelling_vendors(ctx: Context) -> None:
    py = ctx.py
    n_vendors = ctx.scaled("vendors")
    f = ctx.group_factor("vendors", n_vendors)
    for v in range(n_vendors):
        country = py.choice(("PH", "KE", "IN", "VN", "NG", "BR"))
        tz = COUNTRY_TZ[country]
        org_id, card = uid(py, "org_", 16), uid(py, "pm_", 24)
        domain = f"{py.choice(('annot', 'labelworks', 'tagforce', 'datacrowd'))}{v}.com"
        platform = cloud_egress(py, 2, 4)
        ver = f"{py.randint(1, 5)}.{py.randint(0, 30)}.{py.randint(0, 9)}"
        client = Client(f"labelstudio-bridge/{ver}", client_fingerprint("labelbridge", ver))
        tasks = py.sample(_LABEL_TASKS, k=py.randint(2, 4))
        for _ in range(ctx.shrink(ctx.pi("workers"), f, 2)):
            acc = ctx.account(
                population="labelling_vendors",
                created_us=ctx.created_days_ago(5, 200),
                org_id=org_id,
                signup_channel="enterprise",
                email_domain=domain,
                payment_fingerprint=card,
                country=country,
                tier="tier-3",
            )
            for t0 in ctx.session_starts(
                per_day=ctx.p("shifts_per_day"), tz=tz, profile="work", weekend_factor=0.4
            ):
                t = t0
                shift_end = t0 + int(py.uniform(2, 5) * HOUR_US)
                where = py.choice(platform)
                while t < shift_end and ctx.in_window(t):
                    task = py.choice(tasks)
                    item = make_item(
                        py, "writing", py.choice(CAPABILITIES["writing"]), "introductory"
                    )
                    text = task.format(
                        t=py.choice(_SNIPPETS),
                        p=item.problem,
                        a=response_text(py),
                        b=response_text(py),
                        lang=py.choice(("German", "Tagalog", "Spanish")),
                    )
                    _single(
                        ctx,
                        acc,
                        t,
                        [{"role": "user", "content": text}],
                        where=where,
                        client=client,
                        model=MODELS[1],
                        completion_median=25.0,
                    )
                    t += ctx.gap_us(ctx.p("item_s"), 0.5)


LABELLING_VENDORS: Final = Family(
    name="labelling_vendors",
    kind="legitimate",
    description=(
        "Data-labelling vendors whose workers use the model inside an annotation platform: "
        "structured prompts (sentiment, entity extraction as JSON, toxicity, pairwise 'which "
        "response is better'), one item every few tens of seconds during shifts of several "
        "hours, all requests through the platform's servers, every worker account on the "
        "vendor's organisation and card."
    ),
    params=(
        ParamRange("vendors", 2, 3, True, "vendors at scale 1"),
        ParamRange("workers", 8, 20, True, "worker accounts per vendor"),
        ParamRange("shifts_per_day", 0.2, 0.5, help="shifts per worker per day"),
        ParamRange("item_s", 60.0, 240.0, help="median seconds per labelled item"),
    ),
    body=_labelling_vendors,
)

"""Text of the simulated traffic: prompts, system prompts, responses and reasoning.

Real instructions and answers come from the AlpacaEval outputs (805 instructions answered by many
models; Apache-2.0, see ``sim/data/NOTICE``). Everything else is produced by small template
grammars, seeded, so the same seed gives the same pools. All text lives in a few Arrow string
pools; an exchange refers to pool rows by integer index, so building a batch of exchanges is a
vectorised ``take``, never a Python loop per record.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from distillguard.errors import ConfigurationError

__all__ = [
    "InstructionSet",
    "Pool",
    "TextPools",
    "build_pools",
    "find_instruction_dir",
    "load_instructions",
]

logger = logging.getLogger(__name__)

_SHARED_REL: Final = Path("shared") / "data" / "alpaca_eval_dev" / "outputs"
_PACKAGED: Final = "alpaca_instructions.jsonl.gz"
_MAX_MODELS: Final = 8


@dataclass(frozen=True)
class InstructionSet:
    """Real instructions and, per answering model, one answer to each instruction."""

    source: str
    instructions: tuple[str, ...]
    answers: tuple[tuple[str, ...], ...]


def find_instruction_dir(configured: Path | None = None) -> Path | None:
    """The AlpacaEval outputs folder: the configured one, else ``shared/...`` above cwd or package.

    Raises:
        ConfigurationError: a configured folder does not exist or holds no ``*.jsonl.gz``.
    """
    if configured is not None:
        if not configured.is_dir() or not any(configured.glob("*.jsonl.gz")):
            raise ConfigurationError(
                f"instruction folder {configured} does not exist or has no *.jsonl.gz files",
                hint="point sim.instructions_dir at shared/data/alpaca_eval_dev/outputs",
            )
        return configured
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / _SHARED_REL
            if candidate.is_dir() and any(candidate.glob("*.jsonl.gz")):
                return candidate
    return None


def _read_jsonl_gz(path: Path) -> list[dict[str, object]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_instructions(source: str | Path = "auto") -> InstructionSet | None:
    """Load instructions: ``auto`` (shared folder, else the packaged copy), ``packaged``,
    ``grammar`` (none: template prompts only) or a folder path.

    Returns ``None`` for ``grammar``.
    """
    if source == "grammar":
        return None
    folder: Path | None = None
    if source == "auto":
        folder = find_instruction_dir(None)
    elif source != "packaged":
        folder = find_instruction_dir(Path(source))
    if folder is not None:
        files = sorted(folder.glob("*.jsonl.gz"))[:_MAX_MODELS]
        tables = [_read_jsonl_gz(f) for f in files]
        instructions = tuple(str(r["instruction"]) for r in tables[0])
        answers = []
        for rows in tables:
            if len(rows) != len(instructions):
                continue
            answers.append(tuple(str(r.get("output") or "") for r in rows))
        logger.info("instructions from %s (%d models)", folder, len(answers))
        return InstructionSet(str(folder), instructions, _fill_missing(answers))
    packaged = resources.files("distillguard.sim.data").joinpath(_PACKAGED)
    with packaged.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        shipped: list[dict[str, Any]] = [json.loads(line) for line in fh if line.strip()]
    instructions = tuple(str(r["instruction"]) for r in shipped)
    n_models = len(shipped[0]["answers"])
    answers = [tuple(str(r["answers"][m] or "") for r in shipped) for m in range(n_models)]
    return InstructionSet("packaged", instructions, _fill_missing(answers))


def _fill_missing(answers: list[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """Replace empty answers with another model's answer to the same instruction."""
    out = []
    for m, column in enumerate(answers):
        fixed = list(column)
        for i, text in enumerate(fixed):
            if not text:
                fixed[i] = next(
                    (answers[k][i] for k in range(len(answers)) if answers[k][i]),
                    "I'm sorry, I can't help with that.",
                )
        out.append(tuple(fixed))
        del m
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Template grammars
# --------------------------------------------------------------------------------------------

_TOPICS: Final = (
    "photosynthesis",
    "the French Revolution",
    "compound interest",
    "black holes",
    "sourdough",
    "the immune system",
    "supply chains",
    "climate models",
    "jazz harmony",
    "the Roman Empire",
    "vaccines",
    "quantum computing",
    "urban gardening",
    "marathon training",
    "plate tectonics",
    "inflation",
    "the printing press",
    "coral reefs",
    "sleep hygiene",
    "electric cars",
    "medieval castles",
    "machine translation",
    "the stock market",
    "volcanoes",
    "chess openings",
)
_GENERAL: Final = (
    "Explain {topic} to a {audience} in {n} sentences.",
    "Write a short {form} about {topic}.",
    "What are the pros and cons of {topic}?",
    "Give me {n} tips for learning about {topic}.",
    "Summarize the main ideas of {topic} for a {audience}.",
    "I'm preparing a talk on {topic}. Can you suggest an outline?",
    "Compare {topic} and {topic2} in a table.",
    "write an email to my {relation} about {topic}, keep it {tone}",
    "Is it true that {topic} is overrated? Be {tone}.",
    "Translate this into {language}: 'I would like to know more about {topic}.'",
)
_FILL: Final[dict[str, tuple[str, ...]]] = {
    "audience": ("child", "high-school student", "CEO", "new employee", "beginner", "expert"),
    "n": ("3", "5", "7", "10"),
    "form": ("poem", "story", "blog post", "limerick", "product description", "speech"),
    "relation": ("manager", "landlord", "team", "professor", "friend", "customer"),
    "tone": ("formal", "casual", "brief", "friendly", "honest", "concise"),
    "language": ("French", "Spanish", "German", "Japanese", "Portuguese", "Hindi"),
    "lang": ("Python", "TypeScript", "Go", "Rust", "Java", "C++", "SQL", "Bash"),
    "algo": (
        "binary search",
        "Dijkstra's algorithm",
        "an LRU cache",
        "a trie",
        "merge sort",
        "a rate limiter",
        "a thread pool",
        "topological sort",
        "a bloom filter",
        "a JSON parser",
        "an interval tree",
        "a ring buffer",
    ),
    "bug": (
        "an off-by-one error",
        "a race condition",
        "a memory leak",
        "a null dereference",
        "a deadlock",
        "slow queries",
    ),
    "lib": ("pandas", "React", "FastAPI", "Django", "NumPy", "Express", "Spring", "PyTorch"),
    "tool": (
        "bash",
        "python",
        "web_search",
        "read_file",
        "write_file",
        "sql_query",
        "browser",
        "calendar",
        "send_email",
    ),
    "dataset": (
        "sales.csv",
        "churn data",
        "a web server log",
        "survey responses",
        "sensor readings",
        "an A/B test export",
        "quarterly revenue",
    ),
    "chart": (
        "bar chart",
        "line chart",
        "scatter plot",
        "screenshot",
        "photo",
        "diagram",
        "handwritten note",
        "invoice scan",
    ),
    "company": (
        "Acme Corp",
        "Globex",
        "Initech",
        "Umbrella Ltd",
        "Stark Industries",
        "Wayne Enterprises",
        "Hooli",
        "Vandelay Industries",
    ),
}
_CODING: Final = (
    "Write a {lang} function that implements {algo}.",
    "How do I fix {bug} in my {lang} code? Here is the snippet:\n```\nfor i in range(len(xs)+1):\n"
    "    total += xs[i]\n```",
    "Refactor this {lang} code to use {lib}.",
    "Explain the time complexity of {algo}.",
    "Write unit tests in {lang} for {algo}.",
    "What's the idiomatic way to do error handling in {lang}?",
    "Convert this function from Python to {lang}: def add(a, b): return a + b",
    "My {lib} app has {bug}. What should I check first?",
)
_MATH: Final = (
    "Solve for x: {a}x + {b} = {c}.",
    "What is the derivative of x^{a} * sin({b}x)?",
    "Compute the integral of {a}x^2 + {b} from 0 to {c}.",
    "A train travels {a}0 km in {b} hours. What is its average speed?",
    "Prove that the sum of the first {c} odd numbers is a perfect square.",
    "What is the probability of getting at least {a} heads in {c} coin flips?",
    "Find the eigenvalues of the matrix [[{a}, {b}], [{b}, {c}]].",
)
_AGENTIC: Final = (
    "You have access to the tools {tool} and {tool2}. Find the latest release notes of {lib} "
    "and summarize breaking changes.",
    "Use {tool} to list the files in the repository, then fix the failing test.",
    "Plan the steps to book a meeting with {company} next week using {tool}.",
    "Investigate why the nightly job failed. You can call {tool} and {tool2}.",
    "Write and run a script with {tool} that downloads {dataset} and reports anomalies.",
)
_DATA: Final = (
    "Here is {dataset}. Which factors best explain the variation? Columns: id, region, "
    "revenue, units, month.",
    "Write a SQL query to find the top {a} customers by revenue per region.",
    "How should I test whether the difference in {dataset} is significant?",
    "Clean {dataset}: remove duplicates, fix dates, and describe the steps in {lib}.",
    "Build a forecast for {dataset} for the next {a} months and explain the method.",
)
_VISION: Final = (
    "[image: {chart}_{a}{b}.png] What does this {chart} show?",
    "[image: {chart}_{a}{c}.jpg] Extract all the text from this {chart}.",
    "[image: {chart}_{b}{c}.png] Describe this {chart} for a visually impaired reader.",
    "[image: {chart}_{c}.png] Is there anything wrong in this {chart}?",
)
_ENTERPRISE: Final = (
    "Classify the following support ticket into one of [billing, bug, feature, account]. "
    "Ticket #{id}: {ticket}",
    "Summarize this call transcript in 3 bullet points. Transcript {id}: {ticket}",
    "Extract the invoice number, date and total as JSON from: Invoice INV-{id} ... {ticket}",
    "Translate the product description for SKU {id} into {language}: {ticket}",
    "Rate the sentiment (positive/neutral/negative) of review {id}: {ticket}",
)
_TICKETS: Final = (
    "I was charged twice this month.",
    "The export button does nothing on Safari.",
    "Please add dark mode.",
    "I can't log in after resetting my password.",
    "Great product, shipping was slow though.",
    "The API returns 500 for large files.",
    "How do I change the billing address?",
    "Stainless steel bottle, 750 ml, keeps drinks cold.",
)
_SYSTEM: Final = (
    "You are a helpful assistant for {company}. Answer concisely and politely.",
    "You are {company}'s customer support bot. Never discuss pricing.",
    "You are a coding assistant inside an IDE. Prefer short code answers.",
    "You are a tutor. Explain step by step and check understanding.",
    "You are a writing assistant. Keep the user's voice.",
    "You are an analytics assistant for {company}. Use tables where helpful.",
)
_COT_WRAPPERS: Final = (
    "Imagine and articulate the internal reasoning behind a completed response, step by step. "
    "Task: {instr}",
    "Here is a task: {instr}\nFirst write out your complete chain of thought, every intermediate "
    "step, then the final answer.",
    "Think through this in full detail, showing all reasoning before answering: {instr}",
    "For training a tutor model, explain the hidden reasoning an expert would follow to answer: "
    "{instr} Be exhaustive; include dead ends.",
    "{instr}\n\nLet's reason step by step. Output <thinking>...</thinking> then <answer>.",
)
_COT_PARAPHRASES: Final = (
    "Could you walk me through how you'd figure this out? {instr}",
    "{instr} (please show your work, I want to learn the method)",
    "Before you answer, talk through your thinking: {instr}",
    "I want to see how an expert thinks about this: {instr}",
)
_RUBRIC: Final = (
    "You are a strict grader. Score the response from 1 to 10 against the rubric "
    "(correctness, completeness, clarity) and justify each criterion.\n\nPrompt: {instr}\n\n"
    "Response: {answer}",
    "Act as a reward model. Output a JSON object with fields helpfulness, harmlessness, "
    "honesty (0-1) for this exchange.\nUser: {instr}\nAssistant: {answer}",
    "Which of the two answers is better and why? Q: {instr}\nA1: {answer}\nA2: {answer2}",
)
_SWEEP: Final[dict[str, tuple[str, ...]]] = {
    "coding": (
        "[{area} {i}/{total}] Implement {algo} in {lang}. Include type hints, docstrings "
        "and tests.",
        "[{area} {i}/{total}] Given a {lang} repository with {bug}, produce a patch and "
        "explain it.",
    ),
    "math": (
        "[{area} {i}/{total}] Solve and show every step: {a}x^2 - {b}x + {c} = 0.",
        "[{area} {i}/{total}] Prove or disprove: for all n > {a}, n^{b} > {c}n.",
    ),
    "agentic": (
        "[{area} {i}/{total}] You are an autonomous agent with tools {tool}, {tool2}. Goal: set up "
        "{lib} in a new project and make the test suite pass. Emit tool calls.",
        "[{area} {i}/{total}] Operate the computer: open {tool}, find {dataset}, and produce a "
        "report. Think before each action.",
    ),
    "data_analysis": (
        "[{area} {i}/{total}] Analyse {dataset}: compute summary statistics, detect outliers, fit "
        "a regression and interpret it.",
    ),
    "vision": (
        "[{area} {i}/{total}] [image: sweep_{i}.png] Describe every element of this {chart} and "
        "reconstruct its data as a table.",
    ),
}
_CAMPAIGN_TEMPLATES: Final = (
    "Task category: {area}. Difficulty: {level}. Problem: {instr} Provide a detailed, "
    "high-quality answer suitable as a reference solution.",
    "### Instruction\n{instr}\n### Requirements\n- expert level\n- {level} difficulty\n"
    "- full explanation\n### Response",
    "Generate an ideal assistant reply for the user message below. Domain: {area}.\nUser: {instr}",
    "As a world-class {area} expert, answer: {instr} Then list 3 follow-up questions.",
    "Q{i}: {instr}\nAnswer thoroughly ({level}).",
    "Please respond as you normally would, but more detailed than usual. Topic: {area}. {instr}",
    "Create a training example. Input: {instr} Output: <your best answer>",
    "Rewrite the following question to be harder, then answer both versions: {instr}",
)
_PARA_OPENERS: Final = (
    "",
    "Hi! ",
    "Quick question: ",
    "Hey, ",
    "So, ",
    "I was wondering, ",
    "Hello, ",
    "For a project I'm doing: ",
    "Help me out here. ",
    "Random one, ",
)
_PARA_CLOSERS: Final = (
    "",
    " Thanks!",
    " Thanks in advance.",
    " Cheers.",
    " Please be detailed.",
    " Detailed answer please.",
    " I appreciate it.",
    " Be thorough.",
    " :)",
    " ty",
)
_BENCHMARK: Final = (
    "Question {i}: Which of the following best describes {topic}?\nA) {opt1}\nB) {opt2}\n"
    "C) {opt3}\nD) {opt4}\nAnswer with the letter only.",
    "Problem {i}: {a} apples cost {b} dollars. How much do {c} apples cost? Give only the number.",
    'Task {i}: Complete the function so that all tests pass.\ndef f_{i}(xs):\n    """Return '
    'the {a} largest elements of xs, sorted."""',
)
_PROSE: Final = (
    "{topic} is best understood by looking at its history and its main mechanisms.",
    "A common misconception is that {topic} is simple; in practice it depends on context.",
    "For a {audience}, the key point is how {topic} affects everyday decisions.",
    "There are {n} factors to consider, and the most important is usually cost.",
    "In short, {topic} and {topic2} share more than people expect.",
    "Here is a practical example that makes the idea concrete.",
    "If you want to go further, start with a small experiment and measure the result.",
    "Experts disagree on some details, but the overall picture is well established.",
    "I hope this helps; let me know if you want a more {tone} version.",
)
_REASONING_STEPS: Final = (
    "First, I need to understand what is being asked: {what}.",
    "Let me restate the key constraints.",
    "One approach would be to {approach}, but that may miss edge cases.",
    "Let me check a small example to make sure this works.",
    "Wait, I should double-check the assumption about {what}.",
    "So the answer follows from combining these observations.",
    "Considering alternatives: {approach} versus a direct computation.",
    "Now I'll organise the final answer clearly.",
)
_APPROACHES: Final = (
    "enumerate the cases",
    "work backwards from the goal",
    "use a known formula",
    "break the problem into parts",
    "look for a counterexample",
    "reason by analogy",
)


class _LazyFill(dict[str, str]):
    """Slot values drawn on first use, so a template only pays for the slots it names."""

    def __init__(self, rng: random.Random, extra: dict[str, str] | None) -> None:
        super().__init__(extra or {})
        self.rng = rng

    def __missing__(self, key: str) -> str:
        rng = self.rng
        base = key.rstrip("0123456789") or key
        value: str
        if base in _FILL:
            value = rng.choice(_FILL[base])
        elif base == "topic" or base.startswith("opt"):
            value = rng.choice(_TOPICS)
        elif key in _NUMBERS:
            lo, hi = _NUMBERS[key]
            value = str(rng.randint(lo, hi))
        elif key == "ticket":
            value = rng.choice(_TICKETS)
        elif key == "level":
            value = rng.choice(("easy", "medium", "hard", "expert"))
        elif key == "total":
            value = str(rng.choice((5000, 10000, 20000)))
        elif key == "area":
            value = rng.choice(("coding", "math", "science", "law", "finance", "medicine"))
        elif key == "what":
            value = rng.choice(("the quantity asked for", "the edge cases", "the units"))
        elif key == "approach":
            value = rng.choice(_APPROACHES)
        else:
            raise KeyError(key)
        self[key] = value
        return value


_NUMBERS: Final[dict[str, tuple[int, int]]] = {
    "a": (2, 9),
    "b": (2, 40),
    "c": (3, 60),
    "id": (10_000, 999_999),
    "i": (1, 5000),
}


def _rand_fill(rng: random.Random, template: str, extra: dict[str, str] | None = None) -> str:
    return template.format_map(_LazyFill(rng, extra))


def _response_for(kind: str, rng: random.Random) -> str:
    """A synthetic response of a plausible length for a prompt kind."""
    if kind == "coding":
        lang = rng.choice(("python", "typescript", "go"))
        body = "\n".join(
            f"    step_{i} = compute(step_{i - 1}) if step_{i - 1} else None"
            for i in range(1, rng.randint(4, 40))
        )
        return (
            f"Here is an implementation:\n\n```{lang}\ndef solve(data):\n    step_0 = data\n"
            f"{body}\n    return step_0\n```\n\nIt runs in O(n log n) time. "
            + "Edge cases are handled by the guard clauses. "
            * rng.randint(1, 6)
        )
    if kind == "math":
        steps = "\n".join(
            f"Step {i}: simplify the expression, giving {rng.randint(2, 999)}."
            for i in range(1, rng.randint(3, 12))
        )
        return f"{steps}\n\nTherefore the answer is {rng.randint(1, 500)}."
    if kind == "agentic":
        calls = "\n".join(
            json.dumps({"tool": rng.choice(_FILL["tool"]), "arguments": {"query": f"item {i}"}})
            for i in range(rng.randint(1, 6))
        )
        return f"I'll proceed step by step.\n{calls}\nDone: the task is complete."
    if kind == "templated":
        return json.dumps(
            {
                "label": rng.choice(("billing", "bug", "feature", "account")),
                "confidence": round(rng.random(), 2),
            }
        )
    if kind == "benchmark":
        return rng.choice(("A", "B", "C", "D", "The answer is 42.", "B) because it matches."))
    if kind == "rubric":
        return (
            f"Score: {rng.randint(1, 10)}/10. Correctness: "
            + "the response is mostly accurate. " * rng.randint(1, 5)
            + "Clarity: well organised."
        )
    paragraphs = []
    for _ in range(rng.randint(1, 6)):
        sentences = rng.randint(2, 6)
        paragraphs.append(" ".join(_rand_fill(rng, rng.choice(_PROSE)) for _ in range(sentences)))
    return "\n\n".join(paragraphs)


def _reasoning_text(rng: random.Random) -> str:
    n = rng.randint(4, 30)
    return "\n".join(_rand_fill(rng, rng.choice(_REASONING_STEPS)) for _ in range(n))


def _paraphrase(rng: random.Random, text: str) -> str:
    text = rng.choice(_PARA_OPENERS) + text + rng.choice(_PARA_CLOSERS)
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.2:
        text = text.replace(". ", ".\n")
    return text


# --------------------------------------------------------------------------------------------
# Pools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """A contiguous range of rows of one kind in a :class:`TextPools` string array."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of rows."""
        return self.stop - self.start


@dataclass(frozen=True)
class TextPools:
    """All text of a simulation, as Arrow string arrays with token counts and kind ranges.

    ``prompt_base[i]`` is the real instruction a prompt was made from (``-1`` if none), so the
    response to it can be a real answer: ``answers`` rows ``m * n_instructions + base``.
    """

    source: str
    prompts: pa.StringArray
    prompt_tokens: npt.NDArray[np.int64]
    prompt_base: npt.NDArray[np.int32]
    prompt_kinds: dict[str, Pool]
    responses: pa.StringArray
    response_tokens: npt.NDArray[np.int64]
    response_kinds: dict[str, Pool]
    n_instructions: int
    n_answer_models: int
    reasoning: pa.StringArray
    reasoning_tokens: npt.NDArray[np.int64]
    systems: pa.StringArray
    system_tokens: npt.NDArray[np.int64]
    tool_sets: pa.ListArray


def _tokens(arr: pa.StringArray) -> npt.NDArray[np.int64]:
    """Token estimate: about four characters per token, at least one."""
    lengths = pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    out: npt.NDArray[np.int64] = np.maximum(1, (lengths + 3) // 4)
    return out


class _Builder:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.base: list[int] = []
        self.kinds: dict[str, Pool] = {}

    def add(self, kind: str, texts: Sequence[str], base: Sequence[int] | None = None) -> None:
        start = len(self.texts)
        self.texts.extend(texts)
        self.base.extend(base if base is not None else [-1] * len(texts))
        self.kinds[kind] = Pool(start, len(self.texts))


def build_pools(
    *,
    seed: int,
    instructions: InstructionSet | None,
    campaign_ids: Sequence[str],
    scale: int = 4000,
) -> TextPools:
    """Build every text pool of a simulation (deterministic in ``seed``)."""
    rng = random.Random(seed * 7919 + 11)
    n_instr = len(instructions.instructions) if instructions else 0
    instr = list(instructions.instructions) if instructions else []

    def base_text(r: random.Random) -> tuple[str, int]:
        if instr and r.random() < 0.85:
            i = r.randrange(n_instr)
            return instr[i], i
        return _rand_fill(r, r.choice(_GENERAL)), -1

    p = _Builder()
    general = [_rand_fill(rng, rng.choice(_GENERAL)) for _ in range(scale)]
    p.add("general", instr + general, list(range(n_instr)) + [-1] * len(general))
    for kind, templates in (
        ("coding", _CODING),
        ("math", _MATH),
        ("agentic", _AGENTIC),
        ("data_analysis", _DATA),
        ("vision", _VISION),
        ("templated", _ENTERPRISE),
    ):
        p.add(kind, [_rand_fill(rng, rng.choice(templates)) for _ in range(scale)])
    bench_rng = random.Random(20_260_101)  # the benchmark is the same in every simulation
    p.add(
        "benchmark",
        [_rand_fill(bench_rng, bench_rng.choice(_BENCHMARK), {"i": str(i)}) for i in range(2000)],
    )
    cot_texts, cot_base = [], []
    for _ in range(scale):
        text, b = base_text(rng)
        cot_texts.append(rng.choice(_COT_WRAPPERS).format(instr=text))
        cot_base.append(b)
    p.add("cot_elicitation", cot_texts, cot_base)
    para_texts, para_base = [], []
    for _ in range(scale):
        text, b = base_text(rng)
        para_texts.append(_paraphrase(rng, rng.choice(_COT_PARAPHRASES).format(instr=text)))
        para_base.append(b)
    p.add("cot_paraphrased", para_texts, para_base)
    answers0 = instructions.answers[0] if instructions else ()
    rubric = []
    for _ in range(scale):
        text, b = base_text(rng)
        answer = answers0[b][:1500] if b >= 0 else _response_for("general", rng)[:800]
        answer2 = _response_for("general", rng)[:600]
        rubric.append(rng.choice(_RUBRIC).format(instr=text, answer=answer, answer2=answer2))
    p.add("rubric_grading", rubric)
    for area, sweep_templates in _SWEEP.items():
        texts = []
        for i in range(scale):
            texts.append(
                _rand_fill(
                    rng,
                    sweep_templates[i % len(sweep_templates)],
                    {"i": str(i + 1), "total": str(scale), "area": area},
                )
            )
        p.add(f"sweep_{area}", texts)
    for cid in campaign_ids:
        crng = random.Random(f"{seed}:{cid}")
        chosen = crng.sample(range(len(_CAMPAIGN_TEMPLATES)), k=min(4, len(_CAMPAIGN_TEMPLATES)))
        tpl_texts, tpl_base, para, para_b = [], [], [], []
        for i in range(scale):
            text, b = base_text(crng)
            filled = _rand_fill(crng, _CAMPAIGN_TEMPLATES[chosen[i % len(chosen)]], {"instr": text})
            tpl_texts.append(filled)
            tpl_base.append(b)
            text2, b2 = base_text(crng)
            para.append(
                _paraphrase(
                    crng,
                    _rand_fill(
                        crng, crng.choice(_CAMPAIGN_TEMPLATES + _COT_PARAPHRASES), {"instr": text2}
                    ),
                )
            )
            para_b.append(b2)
        p.add(f"templated:{cid}", tpl_texts, tpl_base)
        p.add(f"paraphrased:{cid}", para, para_b)

    prompts = pa.array(p.texts, type=pa.string())

    r = _Builder()
    if instructions:
        flat = [a for column in instructions.answers for a in column]
        r.add("answers", flat)
    for kind in (
        "general",
        "coding",
        "math",
        "agentic",
        "data_analysis",
        "vision",
        "templated",
        "benchmark",
        "rubric",
    ):
        gen_kind = kind if kind != "vision" else "general"
        r.add(kind, [_response_for(gen_kind, rng) for _ in range(max(200, scale // 4))])
    responses = pa.array(r.texts, type=pa.string())
    reasoning = pa.array(
        [_reasoning_text(rng) for _ in range(max(500, scale // 2))], type=pa.string()
    )
    systems = pa.array([_rand_fill(rng, t) for t in _SYSTEM for _ in range(50)], type=pa.string())
    tool_sets = pa.array(
        [rng.sample(_FILL["tool"], k=rng.randint(1, 5)) for _ in range(64)],
        type=pa.list_(pa.string()),
    )
    assert isinstance(prompts, pa.StringArray) and isinstance(responses, pa.StringArray)
    assert isinstance(reasoning, pa.StringArray) and isinstance(systems, pa.StringArray)
    assert isinstance(tool_sets, pa.ListArray)
    return TextPools(
        source=instructions.source if instructions else "grammar",
        prompts=prompts,
        prompt_tokens=_tokens(prompts),
        prompt_base=np.asarray(p.base, dtype=np.int32),
        prompt_kinds=p.kinds,
        responses=responses,
        response_tokens=_tokens(responses),
        response_kinds=r.kinds,
        n_instructions=n_instr,
        n_answer_models=len(instructions.answers) if instructions else 0,
        reasoning=reasoning,
        reasoning_tokens=_tokens(reasoning),
        systems=systems,
        system_tokens=_tokens(systems),
        tool_sets=tool_sets,
    )

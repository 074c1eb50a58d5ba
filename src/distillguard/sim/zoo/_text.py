"""Phrase banks, problem generators and paraphrase operators of the scenario zoo.

Written for the zoo alone (it shares no text with the simulator). Everything takes a
``random.Random`` so that text generation stays cheap and deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CAPABILITIES",
    "DIFFICULTIES",
    "Item",
    "estimate_tokens",
    "harvest_prompt",
    "make_item",
    "paraphrase",
    "reasoning_text",
    "response_text",
]

# -- the capability space -------------------------------------------------------------------

CAPABILITIES: Final[dict[str, tuple[str, ...]]] = {
    "math": (
        "quadratic equations",
        "probability",
        "combinatorics",
        "number theory",
        "calculus limits",
        "integrals",
        "linear algebra",
        "geometry of triangles",
        "sequences and series",
        "inequalities",
    ),
    "coding": (
        "string parsing",
        "graph search",
        "dynamic programming",
        "concurrency",
        "SQL queries",
        "REST API design",
        "regular expressions",
        "memory management",
        "unit testing",
        "sorting algorithms",
    ),
    "science": (
        "thermodynamics",
        "organic chemistry",
        "cell biology",
        "electromagnetism",
        "genetics",
        "orbital mechanics",
        "acid-base equilibria",
        "optics",
    ),
    "logic": (
        "knights and knaves",
        "scheduling puzzles",
        "syllogisms",
        "grid deduction",
        "river crossing puzzles",
        "truth tables",
    ),
    "law": (
        "contract formation",
        "tenancy disputes",
        "data protection",
        "employment termination",
        "intellectual property",
        "negligence",
    ),
    "medicine": (
        "drug interactions",
        "differential diagnosis",
        "paediatric dosing",
        "ECG interpretation",
        "infection control",
        "diabetes management",
    ),
    "finance": (
        "discounted cash flow",
        "bond pricing",
        "options pricing",
        "portfolio variance",
        "loan amortisation",
        "tax-loss harvesting",
    ),
    "writing": (
        "persuasive essays",
        "product descriptions",
        "short fiction",
        "cover letters",
        "executive summaries",
        "poetry",
    ),
    "data": (
        "pandas groupby",
        "hypothesis testing",
        "regression diagnostics",
        "time series seasonality",
        "A/B test analysis",
        "outlier detection",
    ),
}
DIFFICULTIES: Final = ("introductory", "intermediate", "advanced", "expert")

_NAMES: Final = (
    "Amara", "Bastien", "Chen", "Dalia", "Emeka", "Freya", "Goran", "Hina", "Ilse", "Jonas",
    "Kofi", "Lucia", "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq",
)  # fmt: skip
_CITIES: Final = (
    "Lyon", "Osaka", "Denver", "Porto", "Nairobi", "Krakow", "Austin", "Leeds", "Pune", "Quito",
)  # fmt: skip
_LANGS: Final = ("Python", "TypeScript", "Go", "Rust", "Java", "C++", "Kotlin", "SQL")
_OBJECTS: Final = (
    "invoices", "sensor readings", "log lines", "orders", "tickets", "user sessions", "payments",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Item:
    """One point of a capability sweep: the core problem and where it sits."""

    capability: str
    subtopic: str
    difficulty: str
    problem: str


def _math(py: random.Random, sub: str, level: int) -> str:
    a, b, c = py.randint(2, 9 + 5 * level), py.randint(-20, 20), py.randint(-30, 30)
    n = py.randint(5, 12 + 10 * level)
    forms = (
        f"find every real x with {a}x^2 + {b}x + {c} = 0",
        f"show that the sum of the first {n} odd numbers equals {n}^2, and generalise",
        f"a bag holds {a} red and {n} blue marbles; two are drawn without replacement. "
        f"What is the chance both are red?",
        f"in how many ways can {n} people sit at a round table if two of them refuse to sit "
        f"together?",
        f"evaluate the limit as x goes to 0 of (sin({a}x) - {a}x) / x^3",
        f"compute the integral from 0 to {a} of x * e^(-x/{n}) dx",
        f"find the remainder when {a}^{n * 7} is divided by {n + 6}",
        f"prove that for positive reals x, y with x + y = {a}, xy <= {a * a}/4",
        f"the triangle with sides {a}, {a + 3} and {a + 5}: find its area and its inradius",
        f"diagonalise the 2x2 matrix [[{a}, {b}], [{b}, {c}]] if possible",
    )
    return forms[(CAPABILITIES["math"].index(sub) + py.randint(0, 2)) % len(forms)]


def _coding(py: random.Random, sub: str, level: int) -> str:
    lang = py.choice(_LANGS)
    obj = py.choice(_OBJECTS)
    n = py.randint(3, 50) * (level + 1)
    forms = (
        f"write a {lang} function that parses {obj} from a CSV string and returns the "
        f"{n} most recent, handling quoted commas",
        f"implement breadth-first search in {lang} over a grid of {n}x{n} cells with walls "
        f"and return the shortest path",
        f"give a dynamic-programming solution in {lang} for the minimum number of coins "
        f"summing to {n * 7}, with its complexity",
        f"write a thread-safe bounded queue of capacity {n} in {lang} and explain the locking",
        f"write a SQL query returning, per customer, the {n} largest {obj} of the last month",
        f"design the REST endpoints for a service that stores {obj}, with pagination and "
        f"error codes",
        f"write a regular expression (and {lang} tests) that validates {obj} identifiers of "
        f"the form AB-{n}-xyz",
        f"find the memory leak in a {lang} cache that holds {obj} and never evicts",
        f"write unit tests in {lang} for a function that deduplicates {obj}",
        f"implement merge sort in {lang} without recursion and sort {n} {obj} by date",
    )
    return forms[(CAPABILITIES["coding"].index(sub) + py.randint(0, 1)) % len(forms)]


def _generic(py: random.Random, cap: str, sub: str, level: int) -> str:
    who = py.choice(_NAMES)
    city = py.choice(_CITIES)
    n = py.randint(2, 90)
    depth = ("basic", "working", "rigorous", "research-level")[level]
    forms = (
        f"explain {sub} at a {depth} level using the case of {who} in {city}",
        f"{who} faces a {sub} question involving {n} cases; work out what follows and why",
        f"set up and solve a {depth} problem on {sub} with {n} as the key quantity",
        f"compare two approaches to {sub} and say which one {who} should use, with numbers",
        f"what are the common mistakes in {sub}? illustrate with a {depth} worked example",
    )
    return py.choice(forms)


def make_item(py: random.Random, capability: str, subtopic: str, difficulty: str) -> Item:
    """A concrete problem of ``capability``/``subtopic`` at ``difficulty``."""
    level = DIFFICULTIES.index(difficulty)
    if capability == "math":
        problem = _math(py, subtopic, level)
    elif capability == "coding":
        problem = _coding(py, subtopic, level)
    else:
        problem = _generic(py, capability, subtopic, level)
    return Item(capability, subtopic, difficulty, problem)


# -- harvesting framings and paraphrase -----------------------------------------------------

_FRAMES: Final[dict[str, tuple[str, ...]]] = {
    "cot": (
        "Solve the following and show every step of your reasoning before the final answer: {p}",
        "Think step by step. {P}. Give your full chain of reasoning, then the answer.",
        "Problem: {P}. Reason carefully, one step at a time, and state the result at the end.",
        "Walk me through your thinking in detail: {p}",
        "{P}. Before answering, lay out your reasoning explicitly.",
    ),
    "answer": (
        "Give an expert, complete answer: {p}",
        "{P}. Answer as a domain expert would, thoroughly.",
        "Provide the best possible answer to this: {p}",
        "Question ({d}, {c}): {p}",
    ),
    "code": (
        "{P}. Return the code and then explain each design decision.",
        "Task: {p}. Produce production-quality code with comments and tests.",
        "Write the code for this: {p}. Include edge cases.",
    ),
    "grading": (
        "Here is a question and a candidate answer. Question: {P}. Answer: {a}. "
        "Score the answer from 1 to 10 and explain your reasoning.",
        "Rate this response on a 1-10 scale for correctness and clarity, with a justification. "
        "Prompt: {P}. Response: {a}",
        "Act as a strict grader. Task: {P}. Submission: {a}. Give a score out of 10 and say why.",
    ),
    "rewrite": (
        "Rewrite the following answer so it is clearer and better structured: {a} (topic: {p})",
        "Improve this explanation of {s} without changing its meaning: {a}",
        "Paraphrase and polish this text about {s}: {a}",
    ),
    "tool_trace": (
        "You have tools search, python and read_url. Plan and execute the calls needed to "
        "{p}. Print each call and its result.",
        "Use your tools to {p}. Show the full trajectory of tool calls.",
    ),
}
_CANDIDATES: Final = (
    "the answer is 42 because the terms cancel",
    "we can just guess and check until it works",
    "by symmetry both cases are equal so the result is one half",
    "use a hash map and iterate once, O(n)",
    "it depends on the jurisdiction but usually yes",
    "the derivative is zero there so it must be a maximum",
)

_SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "solve": ("work out", "figure out", "resolve", "crack"),
    "explain": ("describe", "clarify", "spell out", "break down"),
    "show": ("display", "lay out", "present", "write out"),
    "step": ("stage", "move", "phase"),
    "reasoning": ("thinking", "logic", "thought process", "rationale"),
    "answer": ("response", "result", "solution", "reply"),
    "final": ("last", "concluding", "ultimate"),
    "write": ("produce", "create", "draft", "code up"),
    "function": ("routine", "method", "procedure"),
    "carefully": ("methodically", "rigorously", "with care", "thoroughly"),
    "complete": ("full", "comprehensive", "exhaustive"),
    "find": ("determine", "identify", "compute", "work out"),
    "problem": ("question", "exercise", "task", "puzzle"),
    "detail": ("depth", "full detail", "detail, please,"),
    "expert": ("specialist", "professional", "seasoned expert"),
    "give": ("provide", "offer", "supply"),
    "improve": ("enhance", "refine", "upgrade"),
    "clearer": ("easier to follow", "more readable", "crisper"),
    "every": ("each", "all", "every single"),
    "before": ("prior to", "ahead of"),
    "best": ("strongest", "highest-quality", "most accurate"),
}
_OPENERS: Final = (
    "",
    "",
    "Quick one: ",
    "I'd appreciate help with this. ",
    "Hello! ",
    "For my notes: ",
    "Please help. ",
    "Hi there, ",
    "Can you do this for me? ",
    "Hey, ",
)
_CLOSERS: Final = (
    "",
    "",
    " Thanks!",
    " Be precise.",
    " Use headings if useful.",
    " Keep it rigorous.",
    " Cheers.",
    " No shortcuts please.",
)


def paraphrase(py: random.Random, text: str, strength: float) -> str:
    """A paraphrase of ``text``: synonym swaps, clause reordering, new opener and closer.

    ``strength`` in [0, 1] is the probability of each operator firing.
    """
    words = text.split(" ")
    if py.random() < strength:
        for i, w in enumerate(words):
            key = w.lower().strip(".,:;?")
            alts = _SYNONYMS.get(key)
            if alts is not None and py.random() < 0.7:
                rep = py.choice(alts)
                if w[:1].isupper():
                    rep = rep[:1].upper() + rep[1:]
                tail = w[len(w.rstrip(".,:;?")) :]
                words[i] = rep + tail
    out = " ".join(words)
    if py.random() < strength * 0.6:
        parts = [p for p in out.split(". ") if p]
        if len(parts) > 1:
            py.shuffle(parts)
            out = ". ".join(parts)
    if py.random() < strength:
        out = py.choice(_OPENERS) + out + py.choice(_CLOSERS)
    if py.random() < strength * 0.3:
        out = out.lower()
    return out


def harvest_prompt(py: random.Random, item: Item, task: str) -> str:
    """A harvesting request for ``item``: the plan's ``task`` framing around the problem."""
    frame = py.choice(_FRAMES[task])
    p = item.problem
    return frame.format(
        p=p,
        P=p[:1].upper() + p[1:],
        a=py.choice(_CANDIDATES),
        s=item.subtopic,
        d=item.difficulty,
        c=item.capability,
    )


# -- responses and reasoning ----------------------------------------------------------------

_R_OPEN: Final = (
    "Sure.", "Here is a worked answer.", "Good question.", "Let's go through it.", "Certainly.",
    "Short answer first:", "Here's how I'd approach it.", "Done.", "Below is the result.",
)  # fmt: skip
_R_BODY: Final = (
    "The key observation is that the constraint fixes one degree of freedom",
    "Splitting the problem into two cases makes each one direct",
    "The standard approach applies with one adjustment for the boundary",
    "Checking the edge cases confirms the general formula",
    "A small example shows the pattern before the general argument",
    "The complexity is linear in the input size",
    "This follows from the definition once the terms are grouped",
    "The result matches the intuition from the simpler case",
)
_T_STEPS: Final = (
    "First I restate what is given", "then I identify the unknown",
    "I try the simplest case", "the pattern suggests an induction",
    "I check the boundary", "I compute the intermediate value",
    "that contradicts the assumption so the other case holds",
    "I verify by substitution", "the units are consistent",
)  # fmt: skip


def response_text(py: random.Random, topic: str = "") -> str:
    """A short synthetic response (the zoo keeps files small: the full answer is not stored)."""
    body = py.choice(_R_BODY)
    return f"{py.choice(_R_OPEN)} {body}{' for ' + topic if topic else ''}. [...]"


def reasoning_text(py: random.Random) -> str:
    """A short synthetic visible-reasoning trace."""
    steps = py.sample(_T_STEPS, k=py.randint(2, 4))
    return "; ".join(steps) + ". [...]"


def estimate_tokens(texts: Sequence[str]) -> int:
    """Billed tokens of ``texts`` (about four characters a token, plus framing)."""
    return sum(len(t) for t in texts) // 4 + 4 * len(texts) + 3

"""A generator of labelled requests for training the elicitation classifiers.

Three labels: ``cot`` (the request asks for the model's reasoning trace: step-by-step derivations,
hidden or internal reasoning, "show your thinking"), ``grade`` (the request asks the model to act
as a judge or reward model: score, rank or compare answers against criteria) and ``other``
(ordinary requests, including hard negatives that share words with the positives: "step by step
install instructions", "rate the sentiment of this review", "compare two libraries").

The phrase banks are written here, independently of the traffic simulator, so that the classifiers
learn the intent of a request rather than one generator's wording. Everything is deterministic for
a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LABELS", "LabelledText", "generate_corpus"]

LABELS = ("other", "cot", "grade")

_SUBJECTS = [
    "photosynthesis",
    "binary search",
    "the French revolution",
    "compound interest",
    "a hash map",
    "quantum tunnelling",
    "the water cycle",
    "recursion",
    "supply and demand",
    "TCP congestion control",
    "the Pythagorean theorem",
    "vaccines",
    "gradient descent",
    "plate tectonics",
    "inflation",
    "a linked list",
    "the immune system",
    "Bayes' theorem",
    "climate change",
    "SQL joins",
    "a REST API",
    "the Roman Empire",
    "black holes",
    "electric cars",
    "dynamic programming",
    "public key cryptography",
    "the stock market",
    "sleep",
    "marathon training",
    "a sourdough starter",
    "the printing press",
    "jazz harmony",
    "a rate limiter",
    "Dijkstra's algorithm",
    "matrix multiplication",
    "the Krebs cycle",
    "a queue",
    "unit testing",
    "memory leaks",
    "monetary policy",
    "DNS",
    "OAuth",
]
_TASKS = [
    "Solve: a train leaves at {n} km/h and another at {m} km/h; when do they meet?",
    "What is {n} times {m} minus {k}?",
    "Prove that the sum of the first {n} odd numbers is a square.",
    "Write a function that returns the {n} largest items of a list.",
    "Why does {s} matter?",
    "How does {s} work?",
    "Is it true that {s} is overrated?",
    "Find all integers x with x^2 - {n}x + {k} = 0.",
    "Debug this code: for i in range({n}): print(i / (i - {k}))",
    "Design a schema for a library system with {n} tables.",
    "Should a startup use {s}?",
    "Explain {s} to a {n}-year-old.",
]
_COT = [
    "Think step by step and show all of your reasoning before the final answer.",
    "Show your full chain of thought, then give the answer.",
    "Explain the hidden reasoning an expert would follow to answer this.",
    "Write out your internal reasoning in detail, including dead ends and corrections.",
    "Reason carefully, one step at a time, and label each step.",
    "Before answering, think out loud and make every intermediate step explicit.",
    "Give a detailed derivation: every step of your thought process, then the result.",
    "Let's think step by step.",
    "Walk through your reasoning process exhaustively, as a worked solution for training.",
    "Provide a rationale for every step; do not skip any inference.",
    "Output your scratchpad reasoning inside <think> tags, then the final answer.",
    "Describe exactly how you arrive at the answer, including alternatives you rejected.",
    "Verbalise your thinking process in full before concluding.",
    "Produce a long, careful reasoning trace that a student model could learn from.",
    "Explain your reasoning step-by-step and double-check each step.",
]
_GRADE = [
    "You are a strict grader. Score the response from 1 to 10 against the rubric and justify"
    " each criterion.",
    "Act as a reward model: rate this answer for helpfulness, honesty and harmlessness.",
    "Which of the two answers is better and why? Answer A: {a} Answer B: {b}",
    "Grade the following answer on correctness, completeness and clarity (0-5 each).",
    "Compare response 1 and response 2 and output a preference with a confidence.",
    "Evaluate this model output against the reference answer and give a score.",
    "As a judge, rank these {n} candidate answers from best to worst.",
    "Assign a quality score between 0 and 1 to the assistant's reply and explain.",
    "Critique the answer below and give it a grade using the rubric provided.",
    "Return JSON with fields correctness, helpfulness, safety (1-10) for this exchange.",
    "Is the following solution correct? Point out errors and score it out of {n}.",
    "You are an evaluator. Decide whether the response follows the instructions; score 1-7.",
    "Rate the assistant's answer: does it fully address the user's question? Give a score.",
    "Pairwise comparison: pick the better completion for the prompt and explain the choice.",
]
_OTHER_EXTRA = [
    "Give me step by step instructions to install {s} on Ubuntu.",
    "Rate the sentiment (positive/neutral/negative) of this review: the product broke after"
    " {n} days.",
    "Compare {s} and {t} in a table.",
    "Summarize this article about {s} in {n} bullet points.",
    "Translate into French: the meeting about {s} is at {n} pm.",
    "Write a short poem about {s}.",
    "Classify this support ticket into billing, bug or feature: the API returns {n} errors.",
    "What are the pros and cons of {s}?",
    "Can you review my essay on {s} and suggest improvements?",
    "Score of the game was {n} to {m}; write a short match report.",
    "List {n} ideas for a birthday party.",
    "Extract the invoice number and total as JSON from: invoice {n}, total {m} EUR.",
    "Explain {s} briefly.",
    "Help me write an email to my team about {s}.",
    "Think of a name for a company that sells {s}.",
    "What would you rate as the best book about {s}?",
    "Grade {n} maths homework tips for parents?",
    "Walk me through setting up {s} for a small team.",
    "Reasoning aside, what is the capital of Australia?",
]
_PREFIX = [
    "",
    "",
    "",
    "Quick question: ",
    "Please help. ",
    "Hi! ",
    "For a class, ",
    "For our dataset, ",
    "Be concise. ",
    "In detail: ",
]
_SUFFIX = [
    "",
    "",
    "",
    " Thanks.",
    " Be brief.",
    " Use markdown.",
    " Answer in English.",
    " ty",
    " Please be thorough.",
]


@dataclass(frozen=True)
class LabelledText:
    """One generated request and its label (an index into :data:`LABELS`)."""

    text: str
    label: int


def _fill(rng: np.random.Generator, template: str) -> str:
    s, t = rng.choice(_SUBJECTS, size=2, replace=False)
    return template.format(
        s=s,
        t=t,
        n=int(rng.integers(2, 60)),
        m=int(rng.integers(2, 99)),
        k=int(rng.integers(1, 30)),
        a=f"about {s}.",
        b=f"regarding {t}.",
    )


def generate_corpus(n: int, *, seed: int = 0) -> list[LabelledText]:
    """``n`` labelled requests, about a third of each label, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    out: list[LabelledText] = []
    for _ in range(n):
        label = int(rng.integers(0, 3))
        base = _fill(rng, str(rng.choice(_TASKS)))
        pre = str(rng.choice(_PREFIX))
        suf = str(rng.choice(_SUFFIX))
        if label == 1:
            instr = _fill(rng, str(rng.choice(_COT)))
            text = f"{instr} {base}" if rng.random() < 0.4 else f"{base} {instr}"
        elif label == 2:
            instr = _fill(rng, str(rng.choice(_GRADE)))
            text = f"{instr} Question: {base} Response: {_fill(rng, str(rng.choice(_TASKS)))}"
        else:
            text = base if rng.random() < 0.5 else _fill(rng, str(rng.choice(_OTHER_EXTRA)))
        out.append(LabelledText(text=f"{pre}{text}{suf}", label=label))
    return out

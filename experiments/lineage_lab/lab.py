"""The lineage lab: tiny teachers with distinct styles, students distilled from them, independent
models, and the attribution tests on each, where the truth is known.

What it does (``python -m experiments.lineage_lab``, or :func:`run_lineage_lab`), per seed:

1. builds the radioactivity lab's word-level tokenizer from real answers (the AlpacaEval outputs in
   ``shared/data/alpaca_eval_dev``) and splits the 805 prompts into a **pre-training** part, a
   **fine-tuning** part (the teachers' data and the harvest) and a **probe set** that no model
   ever trains on;
2. trains a tiny GPT-2 **reference base** on every teacher source's answers to the pre-training
   prompts, and fine-tunes one **teacher** per source (distinct styles: different data, different
   fine-tunes of one base). By default the sources are the first reference model of each
   provider in ``lineage.json`` (nine providers), so no two teachers are documented relatives;
3. trains a **student base** (another initialisation) on the *human-data* sources' answers
   (the development split's suspects whose cards document no teacher: Guanaco, OASST-Pythia,
   Humpback) to the pre-training prompts: the students' own language, unrelated to any teacher;
4. the teachers answer the fine-tuning prompts (the **harvest**); for ``students_per_seed``
   teachers (rotating over seeds) one **student** per fraction ``f`` is fine-tuned from the
   student base on the fine-tuning prompts, a random ``f`` of them answered by the teacher and
   the rest by a human-data source (its own data), and one **independent** model per human-data
   source on that source's answers alone;
5. every model answers the probe set (sampled); the answers become a
   :class:`~distillguard.fingerprint.ModelOutputs` per model, the teachers' are the reference
   library (one family and one provider per teacher);
6. tests, at ``alpha``, with the package's own tests (identity channel on, as in the CLI):
   :func:`~distillguard.fingerprint.attribute` (which family, if any) and
   :func:`~distillguard.fingerprint.teacher.teacher_test` (``--teacher``: one-vs-rest for every
   family) of each student and independent model, and each teacher **held out** (attributed
   against the other teachers). Every teacher's null is the other teachers (by construction none
   learned from another, so the lab declares every lab provider "documented").

Truth: a student learned from its teacher and from no other; independent models and held-out
teachers learned from none of the references. Power is the fraction of students attributed to
their teacher; a false accusation is any verdict naming a family the model did not learn from.

Sizes are presets (:meth:`LineageConfig.tiny` for tests, ``quick``, ``full`` for the documented
figures). This is an experiment, not part of the installed package: it uses DistillGuard's public
API and the radioactivity lab's tokenizer, training and generation helpers.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.fingerprint import (
    FamilyMap,
    Fingerprint,
    ModelOutputs,
    attribute,
    compute_fingerprint,
)
from distillguard.fingerprint.attribution import prepare_statistics
from distillguard.fingerprint.identity import IdentityProfile, identity_profile
from distillguard.fingerprint.teacher import teacher_test

from ..radioactivity_lab.lab import (
    LabConfig,
    _clone,
    _Corpus,
    _LabTokenizer,
    _load_corpus,
    _teacher_answers,
    _train,
    _Vocab,
    _words,
    find_corpus,
)

__all__ = [
    "LineageConfig",
    "LineageResult",
    "LineageRun",
    "choose_sources",
    "lineage_table",
    "merge_results",
    "read_lineage",
    "run_lineage_lab",
]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
Progress = Callable[[str], None]
_DETOK_BEFORE = re.compile(r" ([,.!?;:%)\]}])")
_DETOK_AFTER = re.compile(r"([(\[{$]) ")
_DETOK_APOS = re.compile(r" ' ")


@dataclass(frozen=True)
class LineageConfig:
    """Sizes and parameters of the lineage lab.

    Attributes:
        vocab_size: words in the tokenizer (the most frequent; others become ``<unk>``).
        seq_len: tokens per training sequence (prompt, separator, answer, end).
        prompt_words: instruction words kept as the prompt.
        width, layers, heads: the GPT-2 shape of every model.
        base_steps: optimizer steps of each base's pre-training.
        teacher_steps, student_steps: optimizer steps of each fine-tuning.
        batch_size: sequences per step.
        n_probe: prompts of the probe set (nobody trains on them).
        n_finetune: prompts of the fine-tuning part (teachers' data, harvest, students' data).
        answer_tokens: tokens per generated answer.
        temperature: sampling temperature of the harvest and of the probe answers.
        fractions: fractions of a student's fine-tuning data answered by its teacher.
        students_per_seed: teachers distilled per seed (rotating over the teachers by seed).
        n_teachers: teachers (references); at most the number of teacher sources.
        seeds: one full repetition per seed.
        alpha: the tests' level.
        identity: add the identity channel (as the CLI does by default).
        orphans: also test each student against the library *without* its teacher (the
            student of a model the provider does not hold: it learned from no reference, so
            any verdict is a false accusation; the kind ``"orphan"``).
        learning_rate, finetune_rate: AdamW rates of pre-training and fine-tuning.
        teacher_sources, own_sources: corpus sources of the teachers and of the students' own
            data (default :func:`choose_sources`).
    """

    vocab_size: int = 800
    seq_len: int = 40
    prompt_words: int = 12
    width: int = 48
    layers: int = 2
    heads: int = 2
    base_steps: int = 300
    teacher_steps: int = 150
    student_steps: int = 150
    batch_size: int = 16
    n_probe: int = 300
    n_finetune: int = 400
    answer_tokens: int = 26
    temperature: float = 0.8
    fractions: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    students_per_seed: int = 2
    n_teachers: int = 9
    seeds: tuple[int, ...] = tuple(range(9))
    alpha: float = 0.01
    identity: bool = True
    orphans: bool = True
    learning_rate: float = 3e-3
    finetune_rate: float = 3e-3
    teacher_sources: tuple[str, ...] | None = None
    own_sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise InputError("fractions must be in (0, 1]")
        if not self.seeds:
            raise InputError("the lab needs at least one seed")
        if self.n_teachers < 6:
            raise InputError(
                "the lab needs at least 6 teachers (a held-out teacher's test needs 4 in its null)"
            )
        if not 0.0 < self.alpha < 1.0:
            raise InputError("alpha must be in (0, 1)")
        if self.n_probe < 10 or self.n_finetune < 10 or self.seq_len < 16:
            raise InputError("lab sizes too small to mean anything")
        if self.prompt_words + 4 > self.seq_len:
            raise InputError("seq_len must leave room for an answer after the prompt")

    @classmethod
    def tiny(cls) -> LineageConfig:
        """Seconds: the smallest lab that exercises every step (unit tests)."""
        return cls(
            vocab_size=200,
            seq_len=24,
            prompt_words=6,
            width=16,
            heads=2,
            base_steps=15,
            teacher_steps=10,
            student_steps=10,
            batch_size=8,
            n_probe=30,
            n_finetune=20,
            answer_tokens=10,
            fractions=(0.5, 1.0),
            students_per_seed=1,
            n_teachers=6,
            seeds=(0,),
        )

    @classmethod
    def quick(cls) -> LineageConfig:
        """Two seeds of :meth:`full` (about ten minutes on a quiet core)."""
        return replace(cls.full(), seeds=(0, 1))

    @classmethod
    def full(cls) -> LineageConfig:
        """The documented figures: 9 teachers, 9 seeds, 2 teachers distilled per seed at 3, 10,
        30 and 100% of the students' data, 3 independent models per seed, 300 probe prompts."""
        return cls()

    def train_config(self) -> LabConfig:
        """The radioactivity lab's configuration that its training and generation helpers read
        (shape, sequence length, batch, answer length, temperature)."""
        return replace(
            LabConfig.tiny(),
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
            width=self.width,
            layers=self.layers,
            heads=self.heads,
            batch_size=self.batch_size,
            answer_tokens=self.answer_tokens,
            temperature=self.temperature,
            learning_rate=self.learning_rate,
            finetune_rate=self.finetune_rate,
        )


@dataclass(frozen=True)
class LineageRun:
    """One test of one model in the lab.

    Attributes:
        seed: the repetition.
        model: ``student-<teacher>-10%``, ``independent-<source>``, ``holdout-<teacher>``.
        kind: ``"student"``, ``"independent"``, ``"holdout"`` (a teacher held out) or
            ``"orphan"`` (a student tested against the library without its teacher).
        truth: the family the model learned from (students), else ``None``.
        fraction: the fraction of its fine-tuning data from ``truth`` (students), else ``None``.
        test: ``"attribute"`` (which family, if any) or ``"teacher"`` (one-vs-rest for
            ``target``).
        target: the family named (``attribute``: the verdict, or ``None``; ``teacher``: the
            family tested).
        p_value: ``attribute``: the top family's Holm-adjusted p-value; ``teacher``: the
            family's one-vs-rest p-value.
        positive: the test named ``target`` (a verdict, or "learned").
        top_family: ``attribute``: the best-ranked family (verdict or not).
        p_style, p_identity: the stylometric and identity p-values behind ``p_value``
            (``p_identity`` ``None`` when the identity channel is off or had no signature).
    """

    seed: int
    model: str
    kind: str
    truth: str | None
    fraction: float | None
    test: str
    target: str | None
    p_value: float
    positive: bool
    top_family: str | None = None
    p_style: float | None = None
    p_identity: float | None = None

    @property
    def is_null(self) -> bool:
        """True when the hypothesis the test rejects holds by construction (a verdict would be
        a false accusation): every ``teacher`` test of a family the model did not learn from,
        and every ``attribute`` test of a model that learned from no reference."""
        if self.test == "teacher":
            return self.target != self.truth
        return self.truth is None

    @property
    def false_accusation(self) -> bool:
        """The test named a family the model did not learn from."""
        return self.positive and self.target != self.truth

    @property
    def hit(self) -> bool:
        """A student attributed to its own teacher."""
        return self.positive and self.truth is not None and self.target == self.truth


@dataclass(frozen=True)
class LineageResult:
    """Everything the lab measured, and where it wrote it."""

    config: LineageConfig
    runs: tuple[LineageRun, ...]
    teachers: tuple[str, ...]
    own_sources: tuple[str, ...]
    timings_s: dict[str, float]
    corpus: str
    json_path: Path | None = None
    table_path: Path | None = None

    def power(self, test: str, fraction: float) -> tuple[int, int]:
        """(students attributed to their teacher, students) at ``fraction``."""
        runs = [
            r
            for r in self.runs
            if r.kind == "student"
            and r.fraction == fraction
            and r.test == test
            and (test == "attribute" or r.target == r.truth)
        ]
        return sum(r.hit for r in runs), len(runs)

    def nulls(self, test: str | None = None, kind: str | None = None) -> list[LineageRun]:
        """The null runs (see :attr:`LineageRun.is_null`)."""
        return [
            r
            for r in self.runs
            if r.is_null and (test is None or r.test == test) and (kind is None or r.kind == kind)
        ]

    def wrong_family(self) -> tuple[int, int]:
        """(students whose ``attribute`` verdict names another family, students)."""
        runs = [r for r in self.runs if r.kind == "student" and r.test == "attribute"]
        return sum(r.false_accusation for r in runs), len(runs)

    def summary(self) -> list[dict[str, Any]]:
        """Power per test and fraction."""
        out: list[dict[str, Any]] = []
        for test in ("attribute", "teacher"):
            for f in self.config.fractions:
                hits, n = self.power(test, f)
                ps = [
                    r.p_value
                    for r in self.runs
                    if r.kind == "student"
                    and r.fraction == f
                    and r.test == test
                    and (test == "attribute" or r.target == r.truth)
                ]
                out.append(
                    {
                        "test": test,
                        "fraction": f,
                        "students": n,
                        "attributed": hits,
                        "power": hits / n if n else None,
                        "median_p": float(np.median(ps)) if ps else None,
                        "max_p": max(ps) if ps else None,
                    }
                )
        return out

    def targets(self) -> dict[str, Any]:
        """The issue's targets, checked on these runs: at ``alpha``, >= 90% of students with
        >= 10% of their data from one teacher attributed to it, false accusations <= 2% over
        >= 50 null runs (each test separately, and both together)."""
        out: dict[str, Any] = {"alpha": self.config.alpha}
        for test in ("attribute", "teacher"):
            hits = n = 0
            for f in self.config.fractions:
                if f >= 0.1:
                    h, k = self.power(test, f)
                    hits, n = hits + h, n + k
            nulls = self.nulls(test)
            false = sum(r.false_accusation for r in nulls)
            out[test] = {
                "students_10pct_or_more": n,
                "attributed": hits,
                "power": hits / n if n else None,
                "power_met": n > 0 and hits >= 0.9 * n,
                "null_runs": len(nulls),
                "false_accusations": false,
                "false_rate": false / len(nulls) if nulls else None,
                "false_met": len(nulls) >= 50 and false <= 0.02 * len(nulls),
            }
        nulls = self.nulls()
        false = sum(r.false_accusation for r in nulls)
        wrong, students = self.wrong_family()
        out["all_null_runs"] = len(nulls)
        out["all_false_accusations"] = false
        out["all_false_rate"] = false / len(nulls) if nulls else None
        out["students_named_to_wrong_family"] = wrong
        out["students_tested"] = students
        return out

    def rescored(self, factor: float) -> LineageResult:
        """The runs judged with every p-value that has no identity test multiplied by
        ``factor`` (capped at 1): e.g. ``2`` turns runs made while families without identity
        signatures skipped the two-channel Bonferroni factor (commit 020f1ac, reverted in
        f4d691c) into the package's current rule. Holm's adjusted p-values scale the same way
        (before the cap), so ``attribute``'s verdict is rescored exactly too."""
        if factor < 1.0:
            raise InputError("the factor must be at least 1")
        a = self.config.alpha
        runs = []
        for r in self.runs:
            if r.p_identity is not None:
                runs.append(r)
                continue
            p = min(1.0, factor * r.p_value)
            if r.test == "attribute":
                target = r.top_family if p < a else None
                runs.append(replace(r, p_value=p, positive=target is not None, target=target))
            else:
                runs.append(replace(r, p_value=p, positive=p < a))
        return replace(self, runs=tuple(runs), json_path=None, table_path=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``lineage.json``)."""
        return {
            "format": "distillguard-lineage-lab/1",
            "config": asdict(self.config),
            "corpus": self.corpus,
            "teachers": list(self.teachers),
            "own_sources": list(self.own_sources),
            "timings_s": self.timings_s,
            "targets": self.targets(),
            "summary": self.summary(),
            "runs": [asdict(r) for r in self.runs],
            "null_runs_explained": (
                "null runs: attribute of every independent model, every held-out teacher and "
                "every student tested without its teacher in the library ('orphan') (any "
                "verdict is false); teacher tests of every model against every family it "
                "did not learn from (students against the other teachers, independent models "
                "and held-out teachers against all); one seed's runs share its models"
            ),
        }


# --- data ------------------------------------------------------------------------------------


def choose_sources(corpus: Path, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The teacher sources and the students' own-data sources.

    With the ``lineage.json`` beside the corpus folder: the first reference model of each
    provider (file order), and the suspects whose cards document no teacher (human data). Without
    it: the own-data sources are the last third of ``names`` (sorted), the teachers the rest.
    """
    lineage = corpus.parent / "lineage.json" if corpus.is_dir() else None
    available = set(names)
    if lineage is not None and lineage.is_file():
        data = json.loads(lineage.read_text(encoding="utf-8"))
        teachers: list[str] = []
        seen: set[str] = set()
        for name, info in data.get("reference_models", {}).items():
            provider = info.get("provider") if isinstance(info, dict) else None
            if name in available and provider not in seen:
                teachers.append(name)
                seen.add(str(provider))
        own = [
            name
            for name, info in data.get("suspects", {}).items()
            if name in available
            and isinstance(info, dict)
            and info.get("trained_on_outputs_of") is None
        ]
        if len(teachers) >= 6 and own:
            return teachers, own
    ordered = sorted(names)
    k = max(1, len(ordered) // 3)
    return ordered[:-k], ordered[-k:]


def detokenize(words: Sequence[str]) -> str:
    """The lab's tokens as text (punctuation attached), as a reference file would hold it."""
    text = " ".join(words)
    text = _DETOK_BEFORE.sub(r"\1", text)
    text = _DETOK_AFTER.sub(r"\1", text)
    return _DETOK_APOS.sub("'", text)


@dataclass
class _Data:
    corpus: _Corpus
    vocab: _Vocab
    tok: _LabTokenizer
    pre_ids: I64
    ft_ids: I64
    probe_ids: I64
    cfg: LineageConfig
    train_cfg: LabConfig = field(init=False)

    def __post_init__(self) -> None:
        self.train_cfg = self.cfg.train_config()

    def prompt_ids(self, pid: int) -> I64:
        ids = self.vocab.encode(self.corpus.instructions[pid])
        return np.append(ids[ids > 3][: self.cfg.prompt_words], 3)

    def prompt_text(self, pid: int) -> str:
        return " ".join(self.vocab.itos[i] for i in self.prompt_ids(pid))

    def answer_seq(self, pid: int, answer: I64) -> I64:
        return np.concatenate([self.prompt_ids(pid), answer[: self.cfg.seq_len], [2]])

    def source_seqs(self, srcs: Sequence[str], ids: I64) -> list[I64]:
        out: list[I64] = []
        for pid in ids:
            for src in srcs:
                a = self.corpus.answers[src][int(pid)]
                if a:
                    enc = self.vocab.encode(a)
                    out.append(self.answer_seq(int(pid), enc[enc > 3]))
        return out


def _answers(model: Any, data: _Data, ids: I64, *, seed: int) -> list[I64]:
    """The model's sampled answer (token ids, no prompt, no end) to each prompt in ``ids``."""
    prompts = [data.prompt_text(int(p)) for p in ids]
    texts = _teacher_answers(model, data.tok, prompts, None, cfg=data.train_cfg, seed=seed)
    out = []
    for t in texts:
        body = np.asarray(t.tokens[t.prompt_len :], dtype=np.int64)
        out.append(body[body > 3])
    return out


def _outputs(name: str, data: _Data, answers: Sequence[I64]) -> ModelOutputs:
    return ModelOutputs(
        name=name,
        prompt_ids=tuple(int(p) for p in data.probe_ids),
        instructions=tuple(data.corpus.instructions[int(p)] for p in data.probe_ids),
        texts=tuple(detokenize([data.vocab.itos[i] for i in a]) for a in answers),
        source="lineage-lab",
    )


# --- the lab ---------------------------------------------------------------------------------


def run_lineage_lab(
    config: LineageConfig,
    *,
    out_dir: Path | None = None,
    corpus: Path | None = None,
    progress: Progress | None = None,
    threads: int = 1,
    workers: int = 1,
) -> LineageResult:
    """Run the lab; writes ``lineage.json`` and ``lineage.md`` to ``out_dir`` when given.

    ``threads``: torch intra-op threads; ``workers``: seeds run in that many processes at once.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the ml extra is installed in dev
        from distillguard.errors import DependencyMissingError

        raise DependencyMissingError(
            "the lab trains models with torch", hint="pip install 'distillguard[ml]'"
        ) from exc
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    source = corpus or find_corpus()
    data_corpus = _load_corpus(source)
    names = list(data_corpus.answers)
    teacher_src, own_src = choose_sources(source, names)
    if config.teacher_sources is not None:
        teacher_src = list(config.teacher_sources)
    if config.own_sources is not None:
        own_src = list(config.own_sources)
    missing = [s for s in [*teacher_src, *own_src] if s not in data_corpus.answers]
    if missing:
        raise InputError(f"sources not in the corpus: {', '.join(missing)}")
    teacher_src = teacher_src[: config.n_teachers]
    if len(teacher_src) < 6 or not own_src:
        raise InputError("the lab needs at least 6 teacher sources and 1 own-data source")
    n = len(data_corpus.instructions)
    order = np.random.default_rng(54321).permutation(n)
    if config.n_probe + config.n_finetune + 10 > n:
        raise InputError(f"the corpus has {n} prompts: too few for the probe and fine-tuning sets")
    probe_ids = np.sort(order[: config.n_probe])
    ft_ids = order[config.n_probe : config.n_probe + config.n_finetune]
    pre_ids = order[config.n_probe + config.n_finetune :]
    counts: Counter[str] = Counter()
    for src in [*teacher_src, *own_src]:
        for pid in order[config.n_probe :]:
            if a := data_corpus.answers[src][int(pid)]:
                counts.update(_words(a))
    vocab = _Vocab([w for w, _ in counts.most_common(config.vocab_size)])
    data = _Data(
        corpus=data_corpus,
        vocab=vocab,
        tok=_LabTokenizer(vocab),
        pre_ids=pre_ids,
        ft_ids=ft_ids,
        probe_ids=probe_ids,
        cfg=config,
    )
    say(
        f"corpus {source}: teachers {', '.join(teacher_src)}; own data {', '.join(own_src)}; "
        f"vocabulary {len(vocab.itos)}, {len(pre_ids)} pre-training, {len(ft_ids)} fine-tuning, "
        f"{len(probe_ids)} probe prompts"
    )
    timings: dict[str, float] = {"data": time.perf_counter() - t0}
    runs: list[LineageRun] = []
    if workers > 1 and len(config.seeds) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(config.seeds)), mp_context=ctx) as ex:
            futures = [
                ex.submit(_one_seed, data, seed, teacher_src, own_src, threads, None)
                for seed in config.seeds
            ]
            for seed, fut in zip(config.seeds, futures, strict=True):
                seed_runs, seed_t = fut.result()
                runs.extend(seed_runs)
                for k, v in seed_t.items():
                    timings[k] = timings.get(k, 0.0) + v
                say(f"seed {seed} done: {_seed_line(seed_runs)}")
    else:
        torch.set_num_threads(threads)
        for seed in config.seeds:
            seed_runs, seed_t = _one_seed(data, seed, teacher_src, own_src, threads, say)
            runs.extend(seed_runs)
            for k, v in seed_t.items():
                timings[k] = timings.get(k, 0.0) + v
            say(f"seed {seed} done: {_seed_line(seed_runs)}")
    timings["total"] = time.perf_counter() - t0
    result = LineageResult(
        config=config,
        runs=tuple(runs),
        teachers=tuple(teacher_src),
        own_sources=tuple(own_src),
        timings_s={k: round(v, 2) for k, v in timings.items()},
        corpus=str(source),
    )
    if out_dir is not None:
        result = _write(result, out_dir)
    return result


def _seed_line(runs: Sequence[LineageRun]) -> str:
    att = [r for r in runs if r.kind == "student" and r.test == "attribute"]
    tea = [r for r in runs if r.kind == "student" and r.test == "teacher" and r.target == r.truth]
    nulls = [r for r in runs if r.is_null]
    return (
        f"students attributed {sum(r.hit for r in att)}/{len(att)} (attribute), "
        f"{sum(r.hit for r in tea)}/{len(tea)} (--teacher); false accusations "
        f"{sum(r.false_accusation for r in nulls)}/{len(nulls)} null runs"
    )


def _family(source: str) -> str:
    return f"lab-{source}"


def _one_seed(
    data: _Data,
    seed: int,
    teacher_src: Sequence[str],
    own_src: Sequence[str],
    threads: int,
    progress: Progress | None,
) -> tuple[list[LineageRun], dict[str, float]]:
    import torch

    from distillguard.watermark.hf import build_tiny_model

    torch.set_num_threads(threads)
    cfg, tcfg = data.cfg, data.train_cfg
    say = progress or (lambda m: logger.info("lineage lab: %s", m))
    timings: dict[str, float] = {}
    vocab_n = len(data.tok.hf)
    rng = np.random.default_rng(seed)

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - since
        return now

    def new(seed_: int) -> Any:
        return build_tiny_model(
            vocab_n, layers=cfg.layers, width=cfg.width, heads=cfg.heads, seed=seed_
        )

    t = time.perf_counter()
    ref_base = new(seed * 101 + 1)
    loss = _train(
        ref_base,
        data.source_seqs(teacher_src, data.pre_ids),
        steps=cfg.base_steps,
        cfg=tcfg,
        lr=cfg.learning_rate,
        seed=seed,
    )
    say(f"seed {seed}: reference base pre-trained (loss {loss:.2f})")
    teachers: dict[str, Any] = {}
    for i, src in enumerate(teacher_src):
        model = _clone(ref_base)
        loss = _train(
            model,
            data.source_seqs([src], data.ft_ids),
            steps=cfg.teacher_steps,
            cfg=tcfg,
            lr=cfg.finetune_rate,
            seed=seed * 1000 + i,
        )
        teachers[src] = model
        say(f"seed {seed}: teacher {src} fine-tuned (loss {loss:.2f})")
    student_base = new(seed * 101 + 2)
    loss = _train(
        student_base,
        data.source_seqs(own_src, data.pre_ids),
        steps=cfg.base_steps,
        cfg=tcfg,
        lr=cfg.learning_rate,
        seed=seed + 17,
    )
    say(f"seed {seed}: student base pre-trained on the own-data sources (loss {loss:.2f})")
    t = tick("train_teachers_and_bases", t)

    # which teachers are distilled in this seed: rotating, so every teacher gets students
    k = min(cfg.students_per_seed, len(teacher_src))
    start = (seed * k) % len(teacher_src)
    distilled = [teacher_src[(start + j) % len(teacher_src)] for j in range(k)]
    harvest = {
        src: _answers(teachers[src], data, data.ft_ids, seed=seed * 7919 + i)
        for i, src in enumerate(distilled)
    }
    t = tick("generate_harvest", t)

    suspects: list[tuple[str, str, str | None, float | None, Any]] = []
    own_answers = {
        src: [
            (lambda a: a[a > 3])(data.vocab.encode(data.corpus.answers[src][int(p)] or ""))
            for p in data.ft_ids
        ]
        for src in own_src
    }
    for j, src in enumerate(distilled):
        for fi, frac in enumerate(cfg.fractions):
            own = own_src[(seed + j + fi) % len(own_src)]
            n_ft = len(data.ft_ids)
            chosen = np.zeros(n_ft, dtype=bool)
            chosen[rng.choice(n_ft, size=max(1, round(frac * n_ft)), replace=False)] = True
            seqs = [
                data.answer_seq(int(p), harvest[src][i] if chosen[i] else own_answers[own][i])
                for i, p in enumerate(data.ft_ids)
                if chosen[i] or own_answers[own][i].shape[0]
            ]
            model = _clone(student_base)
            loss = _train(
                model,
                seqs,
                steps=cfg.student_steps,
                cfg=tcfg,
                lr=cfg.finetune_rate,
                seed=seed * 1000 + 500 + j * 10 + fi,
            )
            name = f"student-{src}-{frac * 100:g}%"
            say(
                f"seed {seed}: {name} fine-tuned ({int(chosen.sum())} teacher answers, "
                f"loss {loss:.2f})"
            )
            suspects.append((name, "student", _family(src), frac, model))
    for j, src in enumerate(own_src):
        model = _clone(student_base)
        _train(
            model,
            data.source_seqs([src], data.ft_ids),
            steps=cfg.student_steps,
            cfg=tcfg,
            lr=cfg.finetune_rate,
            seed=seed * 1000 + 900 + j,
        )
        suspects.append((f"independent-{src}", "independent", None, None, model))
    say(f"seed {seed}: {len(suspects)} students and independent models fine-tuned")
    t = tick("train_students", t)

    def probe_outputs(name: str, model: Any, s: int) -> ModelOutputs:
        return _outputs(name, data, _answers(model, data, data.probe_ids, seed=s))

    ref_outputs = [
        probe_outputs(f"teacher-{src}", teachers[src], seed * 7919 + 100 + i)
        for i, src in enumerate(teacher_src)
    ]
    sus_outputs = [
        probe_outputs(name, model, seed * 7919 + 300 + i)
        for i, (name, *_rest, model) in enumerate(suspects)
    ]
    t = tick("generate_probe_answers", t)
    ref_fps = [compute_fingerprint(o) for o in ref_outputs]
    ref_id = {o.name: identity_profile(o) for o in ref_outputs} if cfg.identity else None
    families = FamilyMap(
        families={f"teacher-{s}": _family(s) for s in teacher_src},
        providers={f"teacher-{s}": f"lab-provider-{s}" for s in teacher_src},
    )
    documented = tuple(families.providers.values())
    t = tick("fingerprints", t)

    runs: list[LineageRun] = []

    def without(ref: str, name: str, kind: str, fp: Fingerprint, prof: Any) -> list[LineageRun]:
        """``fp`` tested against every teacher but ``ref`` (it learned from none of them)."""
        i = [o.name for o in ref_outputs].index(ref)
        fam = FamilyMap(
            families={k: v for k, v in families.families.items() if k != ref},
            providers={k: v for k, v in families.providers.items() if k != ref},
        )
        return _test(
            seed,
            name,
            kind,
            None,
            None,
            replace(fp, name=name),
            prof,
            [f for j, f in enumerate(ref_fps) if j != i],
            {k: v for k, v in ref_id.items() if k != ref} if ref_id else None,
            fam,
            tuple(fam.providers.values()),
            cfg,
        )

    for (name, kind, truth, share, _m), outputs in zip(suspects, sus_outputs, strict=True):
        fp = compute_fingerprint(outputs)
        prof = identity_profile(outputs) if cfg.identity else None
        runs += _test(
            seed, name, kind, truth, share, fp, prof, ref_fps, ref_id, families, documented, cfg
        )
        if kind == "student" and cfg.orphans:
            # the student of a teacher the library does not hold: it learned from no reference
            teacher_ref = f"teacher-{str(truth).removeprefix('lab-')}"
            runs += without(teacher_ref, f"orphan-{name}", "orphan", fp, prof)
    # each teacher held out: attributed against the other teachers (it learned from none)
    for i, outputs in enumerate(ref_outputs):
        prof = identity_profile(outputs) if cfg.identity else None
        runs += without(outputs.name, f"holdout-{teacher_src[i]}", "holdout", ref_fps[i], prof)
    tick("tests", t)
    return runs, timings


def _test(
    seed: int,
    name: str,
    kind: str,
    truth: str | None,
    frac: float | None,
    fp: Fingerprint,
    prof: IdentityProfile | None,
    refs: Sequence[Fingerprint],
    ref_id: dict[str, IdentityProfile] | None,
    families: FamilyMap,
    documented: tuple[str, ...],
    cfg: LineageConfig,
) -> list[LineageRun]:
    prepared = prepare_statistics(fp, refs, families)
    ident = {"suspect_identity": prof, "reference_identity": ref_id} if prof is not None else {}
    res = attribute(fp, refs, families, alpha=cfg.alpha, prepared=prepared, **ident)  # type: ignore[arg-type]
    top = res.ranking[0]
    runs = [
        LineageRun(
            seed=seed,
            model=name,
            kind=kind,
            truth=truth,
            fraction=frac,
            test="attribute",
            target=res.verdict,
            p_value=top.p_value,
            positive=res.verdict is not None,
            top_family=top.family,
            p_style=top.p_style,
            p_identity=(top.identity or {}).get("p_family"),
        )
    ]
    for fam in sorted(set(families.families.values())):
        tr = teacher_test(
            fp,
            refs,
            families,
            fam,
            alpha=cfg.alpha,
            documented_providers=documented,
            prepared=prepared,
            **ident,  # type: ignore[arg-type]
        )
        runs.append(
            LineageRun(
                seed=seed,
                model=name,
                kind=kind,
                truth=truth,
                fraction=frac,
                test="teacher",
                target=fam,
                p_value=tr.family.p_value,
                positive=tr.family.learned,
                p_style=tr.family.p_style,
                p_identity=(tr.family.identity or {}).get("p_family"),
            )
        )
    return runs


# --- output ----------------------------------------------------------------------------------


def read_lineage(path: Path) -> LineageResult:
    """A ``lineage.json`` written by the lab (a file, gzip-compressed or not, or the folder
    holding it)."""
    if path.is_dir():
        path = path / "lineage.json"
    try:
        raw = path.read_bytes()
        doc = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != "distillguard-lineage-lab/1":
        raise InputError(f"{path}: not a lineage lab result")
    cfg = dict(doc["config"])
    for k in ("fractions", "seeds", "teacher_sources", "own_sources"):
        if cfg.get(k) is not None:
            cfg[k] = tuple(cfg[k])
    return LineageResult(
        config=LineageConfig(**cfg),
        runs=tuple(LineageRun(**r) for r in doc["runs"]),
        teachers=tuple(doc["teachers"]),
        own_sources=tuple(doc["own_sources"]),
        timings_s=dict(doc["timings_s"]),
        corpus=str(doc["corpus"]),
        json_path=path,
    )


def merge_results(parts: Sequence[LineageResult], *, out_dir: Path | None = None) -> LineageResult:
    """Results of separate runs (e.g. one seed per process) as one; their configurations must
    agree except for the seeds, and no seed may appear twice."""
    if not parts:
        raise InputError("nothing to merge")
    base = replace(parts[0].config, seeds=(0,))
    seeds: list[int] = []
    for p in parts:
        if replace(p.config, seeds=(0,)) != base or p.teachers != parts[0].teachers:
            raise InputError("the runs to merge were made with different configurations")
        seeds += list(p.config.seeds)
    if len(set(seeds)) != len(seeds):
        raise InputError(f"a seed appears twice among the runs to merge: {sorted(seeds)}")
    timings: dict[str, float] = {}
    for p in parts:
        for k, v in p.timings_s.items():
            timings[k] = round(timings.get(k, 0.0) + v, 2)
    result = LineageResult(
        config=replace(base, seeds=tuple(sorted(seeds))),
        runs=tuple(r for p in parts for r in p.runs),
        teachers=parts[0].teachers,
        own_sources=parts[0].own_sources,
        timings_s=timings,
        corpus=parts[0].corpus,
    )
    return _write(result, out_dir) if out_dir is not None else result


def _write(result: LineageResult, out_dir: Path) -> LineageResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "lineage.json"
    table_path = out_dir / "lineage.md"
    json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    table_path.write_text(lineage_table(result))
    return replace(result, json_path=json_path, table_path=table_path)


def _fmt(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.1e}"


def lineage_table(result: LineageResult) -> str:
    """The lab's results as Markdown: power per fraction and test, the null runs, the targets."""
    a = result.config.alpha
    lines = [
        f"Lineage lab: {len(result.teachers)} teachers, seeds {len(result.config.seeds)}, "
        f"alpha = {a}",
        "",
        "| test | teacher's share of the student's data | students | attributed to their teacher "
        "| power | median p | worst p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result.summary():
        power = "n/a" if row["power"] is None else f"{row['power']:.2f}"
        lines.append(
            f"| {row['test']} | {row['fraction'] * 100:g}% | {row['students']} "
            f"| {row['attributed']} | {power} | {_fmt(row['median_p'])} | {_fmt(row['max_p'])} |"
        )
    lines += ["", "| null runs | test | runs | false accusations | rate |", "|---|---|---|---|---|"]
    for kind in ("student", "orphan", "independent", "holdout"):
        for test in ("attribute", "teacher"):
            runs = result.nulls(test, kind)
            if not runs:
                continue
            false = sum(r.false_accusation for r in runs)
            lines.append(f"| {kind} | {test} | {len(runs)} | {false} | {false / len(runs):.3f} |")
    teachers = sorted({r.truth for r in result.runs if r.truth is not None})
    if teachers:
        lines += [
            "",
            "| teacher | students (>= 10%) | attributed: attribute | attributed: --teacher |",
            "|---|---|---|---|",
        ]
        for fam in teachers:
            mine = [
                r
                for r in result.runs
                if r.kind == "student" and r.truth == fam and (r.fraction or 0.0) >= 0.1
            ]
            att = [r for r in mine if r.test == "attribute"]
            tea = [r for r in mine if r.test == "teacher" and r.target == fam]
            lines.append(
                f"| {fam} | {len(att)} | {sum(r.hit for r in att)} | {sum(r.hit for r in tea)} |"
            )
    pairs = Counter(
        (r.model.split("-", 1)[1] if r.kind == "holdout" else r.kind, r.test, str(r.target))
        for r in result.nulls()
        if r.false_accusation
    )
    if pairs:
        lines += ["", "False accusations (accused model or kind, test, family named):", ""]
        lines += [f"- {m} -> {fam} ({test}): {n}" for (m, test, fam), n in sorted(pairs.items())]
    t = result.targets()
    for test in ("attribute", "teacher"):
        tt = t[test]
        power = "n/a" if tt["power"] is None else f"{tt['power']:.2f}"
        rate = "n/a" if tt["false_rate"] is None else f"{tt['false_rate']:.3f}"
        lines.append("")
        lines.append(
            f"- `{test}`: students with >= 10% teacher data attributed {tt['attributed']} of "
            f"{tt['students_10pct_or_more']} ({power}; target >= 0.90: "
            f"{'met' if tt['power_met'] else 'not met'}); false accusations "
            f"{tt['false_accusations']} of {tt['null_runs']} null runs ({rate}; target <= 0.02 "
            f"over >= 50: {'met' if tt['false_met'] else 'not met'})"
        )
    lines.append(
        f"- students whose `attribute` verdict names another teacher: "
        f"{t['students_named_to_wrong_family']} of {t['students_tested']}"
    )
    return "\n".join(lines) + "\n"

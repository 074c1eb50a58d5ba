"""The radioactivity lab: a teacher, watermarked answers, students, and the test on each, on a CPU.

What it does (``python -m experiments.radioactivity_lab``, or :func:`run_lab`):

1. builds a word-level tokenizer from real answers (the AlpacaEval outputs in
   ``shared/data/alpaca_eval_dev``, or the copy the simulator ships);
2. trains a tiny GPT-2 **teacher** on one group of models' answers, and a **base** model (the
   students' starting point) on another group's;
3. the teacher answers the training prompts twice: with the KGW watermark under the lab's key
   (the harvest) and without it;
4. fine-tunes one **student** per watermarked fraction (0, 1, 5, 10, 100%) from the base on the
   teacher's answers, that fraction watermarked, and an **independent** model on human/other
   models' answers to the same prompts;
5. tests each model with the prompts of its watermarked answers (what the provider's logs show
   the harvesting accounts asked) in **open mode** (reading mode on the model's own answers to
   them, k-gram filter) and **closed mode** (the same prompts through an OpenAI-compatible ASGI
   app, k-gram filter);
6. repeats over seeds, and tests the null models (0% student, independent model) under extra
   keys that were never used, to measure the false-positive rate at alpha = 0.01;
7. writes ``lab.json`` (all runs), ``lab.md`` (the table) and ``lab.png`` (p-value against
   watermarked fraction and against scored tokens).

Sizes are presets (:meth:`LabConfig.quick` for ``make demo`` and tests, :meth:`LabConfig.full`
for the documented figures).

This is an experiment, not part of the installed package: it uses only DistillGuard's public API
(the test itself is :func:`distillguard.radioactivity.score_under_keys`, the protocol the
``distillguard radioactivity`` command runs).
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from distillguard.errors import InputError
from distillguard.keyring import WatermarkKey
from distillguard.radioactivity import (
    KgramFilter,
    ModeResult,
    OpenSubject,
    TextsSubject,
    TokenText,
    answer_plan,
    own_answers,
    score_under_keys,
)
from distillguard.watermark import KGWConfig, KGWWatermark

__all__ = [
    "LabConfig",
    "LabResult",
    "LabRun",
    "find_corpus",
    "lab_table",
    "run_lab",
]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
SEP = "<sep>"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LabConfig:
    """Sizes and parameters of the lab.

    Attributes:
        vocab_size: words in the tokenizer (the most frequent; others become ``<unk>``).
        seq_len: tokens per training sequence.
        width, layers, heads: the GPT-2 shape of every model.
        teacher_steps, base_steps, student_steps: optimizer steps of each training.
        batch_size: sequences per step.
        n_train_prompts: prompts the teacher answers (the harvest); the rest are held out.
        samples_per_prompt: teacher answers per prompt (watermarked, and as many clean).
        answer_tokens: tokens per generated answer.
        fractions: watermarked fractions of the students' fine-tuning data.
        n_probe_texts: unwatermarked answers of sources the students never trained on (the
            probe source and the teacher group's), read in open mode.
        read_teacher: open mode also reads fresh *unwatermarked* teacher answers to the
            harvested prompts (the provider can regenerate its own answers with the watermark
            off; they are independent of the key, so the test stays exact).
        read_samples: fresh teacher answers per harvested prompt read (with ``read_teacher``).
        probes: what each model is tested with. ``"logged"``: the prompts of the watermarked
            answers in its fine-tuning data, i.e. what our logs show the harvesting accounts
            asked (at most ``max_logged_prompts`` of them); open mode reads ``read_samples``
            fresh unwatermarked teacher answers to each (``read_teacher``) and/or the model's
            own answers (``self_read``), closed mode asks each ``closed_samples`` times (and
            once greedily with ``ask_greedy``). The null models (0% student, independent
            model), which have no such log, get a log of ``null_log_fraction`` of the harvested
            prompts drawn at random. ``"all"``: every model reads the fresh answers to all
            harvested prompts and ``n_probe_texts`` other answers, and is asked
            ``n_probe_prompts`` prompts.
        closed_samples: answers asked per logged prompt in closed mode (``"logged"``), at
            ``ask_temperature``.
        ask_greedy: closed mode also asks each logged prompt once at temperature 0 (a student
            that memorised a watermarked answer gives it back most faithfully greedily).
        self_read: open mode (``"logged"``) reads the suspect's *own* answers to the logged
            prompts, generated locally from its weights: one greedy answer and ``read_samples``
            sampled at ``read_temperature`` (key-independent under the null, see
            :func:`distillguard.radioactivity._open_mode.own_answers`).
        read_temperature: sampling temperature of those answers.
        max_logged_prompts: at most this many logged prompts per model (a random subset).
        null_log_fraction: size of the null models' random log, as a fraction of the harvest.
        n_probe_prompts: prompts asked in closed mode (``probes="all"``).
        closed_prompts: ``"harvest"`` (the prompts the harvesters asked, from our logs) or
            ``"held-out"`` (prompts nobody asked); ``probes="all"`` only.
        filter_top: windows kept by the k-gram filter (most frequent in the harvest).
        temperature: the teacher's sampling temperature (harvest, clean and fresh answers).
        ask_temperature: the temperature asked of the suspect in closed mode.
        gamma, delta, context_width: the KGW watermark.
        seeds: one full repetition per seed (teacher, harvest, students, tests).
        null_keys: extra never-used keys each null model is also tested under.
    """

    vocab_size: int = 2000
    seq_len: int = 64
    width: int = 128
    layers: int = 2
    heads: int = 4
    teacher_steps: int = 600
    base_steps: int = 400
    student_steps: int = 300
    batch_size: int = 32
    n_train_prompts: int = 600
    samples_per_prompt: int = 2
    answer_tokens: int = 48
    fractions: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 1.0)
    n_probe_texts: int = 400
    read_teacher: bool = True
    read_samples: int = 1
    probes: str = "all"
    closed_samples: int = 1
    ask_greedy: bool = False
    self_read: bool = False
    read_temperature: float = 0.5
    max_logged_prompts: int = 60
    null_log_fraction: float = 0.1
    n_probe_prompts: int = 200
    closed_prompts: str = "harvest"
    filter_top: int = 400
    temperature: float = 1.0
    ask_temperature: float = 1.0
    gamma: float = 0.25
    delta: float = 4.0
    context_width: int = 1
    seeds: tuple[int, ...] = (0, 1, 2)
    null_keys: int = 9
    learning_rate: float = 3e-3
    finetune_rate: float = 3e-3

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0.0 <= f <= 1.0 for f in self.fractions):
            raise InputError("fractions must be in [0, 1]")
        if not self.seeds:
            raise InputError("the lab needs at least one seed")
        if self.n_train_prompts < 10 or self.answer_tokens < 8 or self.seq_len < 16:
            raise InputError("lab sizes too small to mean anything")
        if self.read_samples < 1 or self.closed_samples < 1:
            raise InputError("read_samples and closed_samples must be at least 1")
        if self.read_temperature <= 0 or self.ask_temperature < 0 or self.temperature <= 0:
            raise InputError("temperatures must be positive (ask_temperature may be 0)")
        if self.probes not in ("logged", "all"):
            raise InputError("probes must be 'logged' or 'all'")
        if self.max_logged_prompts < 1 or not 0.0 < self.null_log_fraction <= 1.0:
            raise InputError("max_logged_prompts must be >= 1, null_log_fraction in (0, 1]")
        if self.closed_prompts not in ("harvest", "held-out"):
            raise InputError("closed_prompts must be 'harvest' or 'held-out'")

    @classmethod
    def quick(cls) -> LabConfig:
        """Seed 0 of :meth:`full` with fractions 0/10/100%, 4 extra null keys and 800 fine-tuning
        steps (about seven minutes on a quiet core; ``make demo``)."""
        return replace(
            cls.full(), seeds=(0,), fractions=(0.0, 0.1, 1.0), null_keys=4, student_steps=800
        )

    @classmethod
    def tiny(cls) -> LabConfig:
        """Seconds: the smallest lab that exercises every step (unit tests)."""
        return cls(
            vocab_size=300,
            seq_len=32,
            width=32,
            heads=2,
            teacher_steps=30,
            base_steps=20,
            student_steps=20,
            batch_size=16,
            n_train_prompts=40,
            samples_per_prompt=1,
            answer_tokens=16,
            fractions=(0.0, 1.0),
            n_probe_texts=24,
            n_probe_prompts=8,
            probes="logged",
            self_read=True,
            read_samples=2,
            closed_samples=2,
            ask_greedy=True,
            filter_top=100,
            seeds=(0,),
            null_keys=1,
        )

    @classmethod
    def full(cls) -> LabConfig:
        """The documented figures: fractions 0/1/5/10/100%, three seeds, 12 extra keys per null
        model (3 x 60 = 180 null runs). 300 harvested prompts answered once (40 tokens),
        students fine-tuned for 1200 steps (about 130 passes over their 300 answers: students that
        memorise their data, as the anchor's do); each model is tested with its log (the
        prompts of its watermarked answers): open mode reads its own answers to them (one
        greedy, 8 sampled at 0.2), closed mode asks them (once greedily, 8 times at 0.2)."""
        return cls(
            vocab_size=1200,
            width=96,
            teacher_steps=250,
            base_steps=150,
            student_steps=1200,
            finetune_rate=5e-3,
            n_train_prompts=300,
            samples_per_prompt=1,
            answer_tokens=40,
            fractions=(0.0, 0.01, 0.05, 0.1, 1.0),
            n_probe_texts=2000,
            n_probe_prompts=300,
            probes="logged",
            read_teacher=False,
            self_read=True,
            read_samples=8,
            read_temperature=0.2,
            closed_samples=8,
            ask_temperature=0.2,
            ask_greedy=True,
            filter_top=1000,
            seeds=(0, 1, 2),
            null_keys=12,
        )


@dataclass(frozen=True)
class LabRun:
    """One test in the lab.

    Attributes:
        seed: the repetition.
        model: ``"student-5%"``, ``"independent"``, ...
        fraction: watermarked fraction of its fine-tuning data (``None`` for the independent one).
        mode: ``"open"`` or ``"closed"``.
        key: ``"watermark"`` (the key the teacher used) or ``"other-<i>"`` (never used).
        p_value, n_scored, green_fraction: the pooled test.
        logged_prompts: prompts of the log the model was tested with (``probes="logged"``;
            0 with ``probes="all"``).
    """

    seed: int
    model: str
    fraction: float | None
    mode: str
    key: str
    p_value: float
    n_scored: int
    green_fraction: float
    logged_prompts: int = 0

    @property
    def is_null(self) -> bool:
        """True when the null hypothesis holds by construction (no watermarked training data
        under this key)."""
        return self.key != "watermark" or self.fraction in (None, 0.0)


@dataclass(frozen=True)
class LabResult:
    """Everything the lab measured, and where it wrote it."""

    config: LabConfig
    runs: tuple[LabRun, ...]
    curves: tuple[ModeResult, ...]
    timings_s: dict[str, float]
    corpus: str
    json_path: Path | None = None
    table_path: Path | None = None
    plot_path: Path | None = None

    def null_runs(self, mode: str | None = None) -> list[LabRun]:
        """The runs where the null hypothesis holds by construction."""
        return [r for r in self.runs if r.is_null and (mode is None or r.mode == mode)]

    def false_positive_rate(self, *, alpha: float = 0.01, mode: str | None = None) -> float:
        """Fraction of null runs rejecting at ``alpha``."""
        runs = self.null_runs(mode)
        return sum(r.p_value <= alpha for r in runs) / len(runs) if runs else float("nan")

    def summary(self) -> list[dict[str, Any]]:
        """Per (model, mode) under the watermark key: median, max and min p-value over seeds."""
        rows: dict[tuple[str, str], list[LabRun]] = {}
        for r in self.runs:
            if r.key == "watermark":
                rows.setdefault((r.model, r.mode), []).append(r)
        out = []
        for (model, mode), runs in rows.items():
            ps = [r.p_value for r in runs]
            out.append(
                {
                    "model": model,
                    "fraction": runs[0].fraction,
                    "mode": mode,
                    "seeds": len(runs),
                    "median_p": float(np.median(ps)),
                    "max_p": max(ps),
                    "min_p": min(ps),
                    "median_scored": int(np.median([r.n_scored for r in runs])),
                    "median_green": float(np.median([r.green_fraction for r in runs])),
                }
            )
        return out

    def targets(self) -> dict[str, Any]:
        """The issue's targets, checked on these runs (``None`` where the lab did not run it)."""

        def worst(mode: str, min_fraction: float) -> float | None:
            ps = [
                r.p_value
                for r in self.runs
                if r.key == "watermark"
                and r.mode == mode
                and r.fraction is not None
                and r.fraction >= min_fraction
            ]
            return max(ps) if ps else None

        open5 = worst("open", 0.05)
        closed10 = worst("closed", 0.10)
        nulls = self.null_runs()
        rate = self.false_positive_rate(alpha=0.01)
        return {
            "open_5pct_worst_p": open5,
            "open_5pct_met": open5 is not None and open5 < 1e-5,
            "closed_10pct_worst_p": closed10,
            "closed_10pct_met": closed10 is not None and closed10 < 1e-3,
            "null_runs": len(nulls),
            "null_rejections_at_0.01": sum(r.p_value <= 0.01 for r in nulls),
            "null_rate_at_0.01": rate,
            "null_met": len(nulls) >= 50 and rate <= 0.02,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``lab.json``)."""
        return {
            "format": "distillguard-radioactivity-lab/1",
            "config": asdict(self.config),
            "corpus": self.corpus,
            "timings_s": self.timings_s,
            "targets": self.targets(),
            "summary": self.summary(),
            "runs": [asdict(r) for r in self.runs],
            "curves": [c.to_dict() for c in self.curves],
            "null_runs_explained": (
                "null runs: per seed, the 0% student and the independent model, each tested in "
                "both modes under the teacher's key and under null_keys extra keys never used "
                "for generation; the models, probe texts and probe prompts are shared by the "
                "keys of one seed (only the key changes), and students trained with watermarked "
                "data count as null runs under the extra keys"
            ),
        }


# --- data ------------------------------------------------------------------------------------


def find_corpus(root: Path | None = None) -> Path:
    """The folder of AlpacaEval outputs (``shared/data/alpaca_eval_dev/outputs``) if present,
    looking in ``root``, its parents and ``/work/shared``; else the simulator's shipped copy."""
    candidates: list[Path] = []
    base = (root or Path.cwd()).resolve()
    for parent in (base, *base.parents):
        candidates.append(parent / "shared" / "data" / "alpaca_eval_dev" / "outputs")
    candidates.append(Path("/work/shared/data/alpaca_eval_dev/outputs"))
    for c in candidates:
        if c.is_dir() and any(c.glob("*.jsonl.gz")):
            return c
    shipped = Path(str(files("distillguard.sim.data") / "alpaca_instructions.jsonl.gz"))
    if shipped.is_file():
        return shipped
    raise InputError(
        "no offline text for the lab",
        hint="put shared/data/alpaca_eval_dev/outputs next to the repository",
    )


@dataclass(frozen=True)
class _Corpus:
    instructions: list[str]  # by prompt id
    answers: dict[str, list[str | None]]  # source name -> answer per prompt id


def _load_corpus(path: Path) -> _Corpus:
    instructions: dict[int, str] = {}
    answers: dict[str, dict[int, str | None]] = {}
    files = sorted(path.glob("*.jsonl.gz")) if path.is_dir() else [path]
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                pid = int(rec["prompt_id"])
                instructions[pid] = rec["instruction"]
                if "answers" in rec:  # the simulator's copy: several answers per line
                    for j, a in enumerate(rec["answers"]):
                        answers.setdefault(f"shipped-{j}", {})[pid] = a
                else:
                    answers.setdefault(f.name.removesuffix(".jsonl.gz"), {})[pid] = rec["output"]
    n = max(instructions) + 1
    return _Corpus(
        instructions=[instructions.get(i, "") for i in range(n)],
        answers={k: [v.get(i) for i in range(n)] for k, v in sorted(answers.items())},
    )


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


class _Vocab:
    def __init__(self, words: Sequence[str]) -> None:
        self.itos = ["<unk>", "<pad>", "<eos>", SEP, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def encode(self, text: str) -> I64:
        get = self.stoi.get
        return np.fromiter((get(w, 0) for w in _words(text)), dtype=np.int64)

    def normal(self, text: str) -> str:
        """Text as the lab's models see it (vocabulary words only, space separated)."""
        return " ".join(self.itos[i] for i in self.encode(text) if i > 3)


# --- models ----------------------------------------------------------------------------------


def _new_model(cfg: LabConfig, vocab: int, seed: int) -> Any:
    from distillguard.watermark.hf import build_tiny_model

    return build_tiny_model(vocab, layers=cfg.layers, width=cfg.width, heads=cfg.heads, seed=seed)


def _train(
    model: Any,
    sequences: Sequence[I64],
    *,
    steps: int,
    cfg: LabConfig,
    lr: float,
    seed: int,
) -> float:
    """Next-token training on random sequences (padded to ``seq_len``); returns the last loss."""
    import torch

    if not sequences:
        raise InputError("no training sequences")
    rng = np.random.default_rng(seed)
    data = np.full((len(sequences), cfg.seq_len), 1, dtype=np.int64)
    att = np.zeros_like(data)
    for i, s in enumerate(sequences):
        s = s[: cfg.seq_len]
        data[i, : s.shape[0]] = s
        att[i, : s.shape[0]] = 1
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(1, steps))
    )
    loss_value = float("nan")
    for _ in range(steps):
        idx = rng.integers(0, len(sequences), cfg.batch_size)
        ids = torch.from_numpy(data[idx])
        mask = torch.from_numpy(att[idx])
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
    model.eval()
    return loss_value


def _clone(model: Any) -> Any:
    import copy

    return copy.deepcopy(model)


class _LabTokenizer:
    """The HF tokenizer of the lab's vocabulary (for generation and the ASGI app)."""

    def __init__(self, vocab: _Vocab) -> None:
        from distillguard.watermark.hf import build_word_tokenizer

        self.hf = build_word_tokenizer(vocab.itos[3:])
        # build_word_tokenizer puts <unk>, <pad>, <eos> at 0..2 and then the words in order
        assert self.hf.convert_tokens_to_ids(SEP) == 3


def _key(seed: int, name: str) -> WatermarkKey:
    import hashlib

    secret = hashlib.sha256(f"distillguard-lab/{seed}/{name}".encode()).digest()
    return WatermarkKey(kid=f"lab-{seed}-{name}", created_at=datetime.now(UTC), secret=secret)


# --- the lab ---------------------------------------------------------------------------------


def run_lab(
    config: LabConfig,
    *,
    out_dir: Path | None = None,
    corpus: Path | None = None,
    progress: Progress | None = None,
    threads: int = 1,
    workers: int = 1,
) -> LabResult:
    """Run the lab; writes ``lab.json``, ``lab.md`` and ``lab.png`` to ``out_dir`` when given.

    ``threads``: torch intra-op threads (1 is fastest for these tiny models on a shared machine:
    more threads spin against other processes). ``workers``: seeds run in that many processes
    at once (each seed is independent: its own teacher, base, harvest and students).
    """
    if workers > 1 and len(config.seeds) > 1:
        return _run_parallel(
            config,
            out_dir=out_dir,
            corpus=corpus,
            progress=progress,
            threads=threads,
            workers=workers,
        )
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the ml extra is installed in dev
        from distillguard.errors import DependencyMissingError

        raise DependencyMissingError(
            "the lab trains models with torch", hint="pip install 'distillguard[ml]'"
        ) from exc
    say = progress or (lambda _m: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = corpus or find_corpus()
    data = _load_corpus(source)
    sources = list(data.answers)
    if len(sources) < 2:
        raise InputError(f"the lab needs answers from at least two sources in {source}")
    # teacher group, student-base group, and a held-out source for the probe texts
    probe_src = sources[-1]
    pool = sources[:-1] if len(sources) > 2 else sources
    teacher_src = pool[0::2]
    base_src = pool[1::2] or pool
    n_prompts = len(data.instructions)
    order = np.random.default_rng(12345).permutation(n_prompts)
    train_ids = order[: min(config.n_train_prompts, n_prompts - 20)]
    held_ids = order[len(train_ids) :]

    counts: Counter[str] = Counter()
    for src in sources[:: max(1, len(sources) // 8)]:  # a sample of sources is plenty
        for a in data.answers[src]:
            if a:
                counts.update(_words(a))
    vocab = _Vocab([w for w, _ in counts.most_common(config.vocab_size)])
    tok = _LabTokenizer(vocab)
    prompt_words = 24

    def prompt_ids(pid: int) -> I64:
        ids = vocab.encode(data.instructions[pid])
        return np.append(ids[ids > 3][:prompt_words], 3)

    def prompt_text(pid: int) -> str:
        return " ".join(vocab.itos[i] for i in prompt_ids(pid))

    def answer_ids(text: str) -> I64:
        ids = vocab.encode(text)
        return ids[ids > 3]

    def sequences(
        srcs: Sequence[str], ids: Sequence[int] | I64 | None = None, *, limit: int
    ) -> list[I64]:
        """Training sequences (prompt, <sep>, answer, <eos>); at most ``limit`` of them, taken
        round-robin over the sources (a step sees ``batch_size``: more is never used)."""
        seqs: list[I64] = []
        pids = list(order if ids is None else ids)
        for pid, src in ((p, s) for p in pids for s in srcs):
            if len(seqs) >= limit:
                break
            a = data.answers[src][int(pid)]
            if a:
                body = answer_ids(a)[: config.seq_len]
                seqs.append(np.concatenate([prompt_ids(int(pid)), body, [2]]))
        return seqs

    # open mode reads answers of sources the students never trained on (key-independent text):
    # the probe source first, then the teacher group's, held-out prompts before harvested ones
    probe_texts: list[TokenText] = []
    for src in [probe_src, *[s for s in teacher_src if s != probe_src]]:
        for pid in [*held_ids, *train_ids]:
            if len(probe_texts) >= config.n_probe_texts:
                break
            if a := data.answers[src][int(pid)]:
                ids = answer_ids(a)[: config.seq_len]
                if ids.shape[0] > config.context_width:
                    probe_texts.append(TokenText.of(ids))
    closed_ids = train_ids if config.closed_prompts == "harvest" else held_ids
    probe_prompts = [prompt_text(int(pid))[: -len(SEP) - 1] for pid in closed_ids][
        : config.n_probe_prompts
    ]
    timings["data"] = time.perf_counter() - t0
    say(
        f"corpus {source.name}: {len(sources)} sources, vocabulary {len(vocab.itos)}, "
        f"{len(train_ids)} training prompts, {len(probe_texts)} probe texts"
    )

    runs: list[LabRun] = []
    curves: list[ModeResult] = []
    torch.set_num_threads(threads)
    for seed in config.seeds:
        seed_runs, seed_curves = _one_seed(
            config,
            seed=seed,
            tok=tok,
            teacher_seqs=sequences(teacher_src, limit=config.teacher_steps * config.batch_size),
            base_seqs=sequences(base_src, held_ids, limit=config.base_steps * config.batch_size),
            other_seqs=sequences(
                base_src, train_ids, limit=len(train_ids) * config.samples_per_prompt
            ),
            train_prompts=[prompt_text(int(p)) for p in train_ids],
            probe_texts=probe_texts,
            probe_prompts=probe_prompts,
            timings=timings,
            say=say,
        )
        runs.extend(seed_runs)
        if seed == config.seeds[0]:
            curves.extend(seed_curves)
    timings["total"] = time.perf_counter() - t0
    result = LabResult(
        config=config,
        runs=tuple(runs),
        curves=tuple(curves),
        timings_s={k: round(v, 2) for k, v in timings.items()},
        corpus=str(source),
    )
    if out_dir is not None:
        result = _write(result, out_dir)
    return result


def _seed_job(config: LabConfig, corpus: Path | None, threads: int) -> LabResult:
    return run_lab(
        config, corpus=corpus, threads=threads, progress=lambda m: logger.info("lab: %s", m)
    )


def _run_parallel(
    config: LabConfig,
    *,
    out_dir: Path | None,
    corpus: Path | None,
    progress: Progress | None,
    threads: int,
    workers: int,
) -> LabResult:
    """The seeds in a process pool; the results merged in seed order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    source = corpus or find_corpus()
    ctx = multiprocessing.get_context("fork")  # scripts without a __main__ guard work too
    with ProcessPoolExecutor(max_workers=min(workers, len(config.seeds)), mp_context=ctx) as ex:
        futures = [
            ex.submit(_seed_job, replace(config, seeds=(seed,)), source, threads)
            for seed in config.seeds
        ]
        parts: list[LabResult] = []
        for seed, fut in zip(config.seeds, futures, strict=True):
            part = fut.result()
            say(
                f"seed {seed} done in {part.timings_s.get('total', 0.0):.0f} s: "
                + ", ".join(
                    f"{r.model} {r.mode} p={r.p_value:.1e}"
                    for r in part.runs
                    if r.key == "watermark"
                )
            )
            parts.append(part)
    timings: dict[str, float] = {}
    for part in parts:
        for k, v in part.timings_s.items():
            timings[f"seed{part.config.seeds[0]}_{k}"] = v
    timings["total"] = round(time.perf_counter() - t0, 2)
    result = LabResult(
        config=config,
        runs=tuple(r for part in parts for r in part.runs),
        curves=parts[0].curves,
        timings_s=timings,
        corpus=str(source),
    )
    if out_dir is not None:
        result = _write(result, out_dir)
    return result


def _one_seed(
    cfg: LabConfig,
    *,
    seed: int,
    tok: _LabTokenizer,
    teacher_seqs: list[I64],
    base_seqs: list[I64],
    other_seqs: list[I64],
    train_prompts: list[str],
    probe_texts: list[TokenText],
    probe_prompts: list[str],
    timings: dict[str, float],
    say: Progress,
) -> tuple[list[LabRun], list[ModeResult]]:

    vocab_n = len(tok.hf)
    key = _key(seed, "watermark")
    wm_cfg = KGWConfig(gamma=cfg.gamma, delta=cfg.delta, context_width=cfg.context_width)
    scheme = KGWWatermark(wm_cfg, key=key)

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - since
        return now

    t = time.perf_counter()
    teacher = _new_model(cfg, vocab_n, seed)
    loss = _train(
        teacher, teacher_seqs, steps=cfg.teacher_steps, cfg=cfg, lr=cfg.learning_rate, seed=seed
    )
    say(f"seed {seed}: teacher trained (loss {loss:.2f})")
    base = _new_model(cfg, vocab_n, seed + 1000)
    loss = _train(
        base, base_seqs, steps=cfg.base_steps, cfg=cfg, lr=cfg.learning_rate, seed=seed + 1
    )
    say(f"seed {seed}: student base trained (loss {loss:.2f})")
    t = tick("train_teacher_and_base", t)

    prompts = [p for p in train_prompts for _ in range(cfg.samples_per_prompt)]
    # each batch seeds its own generation, so the two passes are independent of their order
    harvest_texts = _teacher_answers(teacher, tok, prompts, scheme, cfg=cfg, seed=seed * 7919)
    clean = [
        t.tokens
        for t in _teacher_answers(teacher, tok, prompts, None, cfg=cfg, seed=seed * 7919 + 1)
    ]
    harvest = [t.tokens for t in harvest_texts]
    wm_check = scheme.test(
        _pool([scheme.score_tokens(t.tokens, prompt_len=t.prompt_len) for t in harvest_texts])
    )
    say(
        f"seed {seed}: teacher answered {len(prompts)} prompts with and without the watermark "
        f"(harvest green fraction {wm_check.details['green_fraction']:.2f})"
    )
    flt = KgramFilter.from_texts(harvest_texts, width=cfg.context_width, top=cfg.filter_top)
    t = tick("generate_harvest", t)

    rng = np.random.default_rng(seed)
    models: list[tuple[str, float | None, Any, I64]] = []
    n = len(harvest)
    spp = cfg.samples_per_prompt
    for fraction in cfg.fractions:
        frac: float | None = fraction
        k = round(fraction * n)
        wm_idx = rng.choice(n, size=k, replace=False) if k else np.zeros(0, dtype=np.int64)
        chosen = np.zeros(n, dtype=bool)
        chosen[wm_idx] = True
        data = [harvest[i] if chosen[i] else clean[i] for i in range(n)]
        student = _clone(base)
        loss = _train(
            student, data, steps=cfg.student_steps, cfg=cfg, lr=cfg.finetune_rate, seed=seed + 7
        )
        name = f"student-{_pct(fraction)}"
        say(f"seed {seed}: {name} fine-tuned ({k} of {n} answers watermarked, loss {loss:.2f})")
        # what our logs show the harvesting accounts asked: the prompts of the watermarked answers
        models.append((name, frac, student, _subset(np.unique(wm_idx // spp), cfg, rng)))
    independent = _clone(base)
    _train(
        independent,
        other_seqs,
        steps=cfg.student_steps,
        cfg=cfg,
        lr=cfg.finetune_rate,
        seed=seed + 7,
    )
    # the null models have no log of their own: a random one, drawn independently of the key
    null_log = _subset(
        rng.choice(
            len(train_prompts),
            size=max(1, round(cfg.null_log_fraction * len(train_prompts))),
            replace=False,
        ),
        cfg,
        rng,
    )
    models = [(m, f, mdl, null_log if f == 0.0 else lg) for m, f, mdl, lg in models]
    models.append(("independent", None, independent, null_log))
    say(f"seed {seed}: independent model fine-tuned on other sources' answers")
    t = tick("train_students", t)

    # open mode can read fresh *unwatermarked* teacher answers (independent of the key): to the
    # logged prompts of each model, or to every harvested prompt
    if not cfg.read_teacher:
        to_read_ids = np.zeros(0, np.int64)
    elif cfg.probes == "logged":
        to_read_ids = np.unique(np.concatenate([lg for *_, lg in models]))
    else:
        to_read_ids = np.arange(len(train_prompts))
    reread = _fresh_answers(teacher, tok, train_prompts, to_read_ids, cfg=cfg, seed=seed)
    t = tick("generate_reading_texts", t)

    keys = [("watermark", key)] + [
        (f"other-{i}", _key(seed, f"other-{i}")) for i in range(cfg.null_keys)
    ]
    runs: list[LabRun] = []
    curves: list[ModeResult] = []
    for name, frac, model, log in models:
        null_model = frac in (None, 0.0)
        test_keys = keys if null_model else keys[:1] + keys[1:2]
        asks: list[tuple[list[str], float]]
        if cfg.probes == "logged":
            logged = [train_prompts[int(i)] for i in log]
            texts = [x for i in log if int(i) in reread for x in reread[int(i)]]
            if cfg.self_read:
                texts += own_answers(
                    model,
                    tok.hf,
                    logged,
                    samples=cfg.read_samples,
                    temperature=cfg.read_temperature,
                    max_new_tokens=cfg.answer_tokens,
                    seed=seed * 7919 + 700_001,
                )
            bare = [p[: -len(SEP) - 1] for p in logged]  # the app appends <sep> itself
            asks = answer_plan(
                bare,
                samples=cfg.closed_samples,
                temperature=cfg.ask_temperature,
                greedy=cfg.ask_greedy,
            )
            n_logged = len(logged)
        else:
            texts = [x for i in to_read_ids for x in reread[int(i)]] + probe_texts
            asks, n_logged = [(probe_prompts, cfg.ask_temperature)], 0
        for mode in ("open", "closed"):
            results = _test_model(
                cfg,
                model=model,
                tok=tok,
                mode=mode,
                keys=test_keys,
                flt=flt,
                probe_texts=texts,
                asks=asks,
                subject_name=name,
                seed=seed,
            )
            for key_name, res in results:
                runs.append(
                    LabRun(
                        seed=seed,
                        model=name,
                        fraction=frac,
                        mode=mode,
                        key=key_name,
                        p_value=res.p_value,
                        n_scored=res.detection.n_scored,
                        green_fraction=float(res.detection.details.get("green_fraction", math.nan)),
                        logged_prompts=n_logged,
                    )
                )
                if key_name == "watermark":
                    curves.append(res)
            main = results[0][1]
            say(
                f"seed {seed}: {name:>13} {mode:>6} mode: p = {main.p_value:.2e} "
                f"({main.detection.n_scored} tokens scored)"
            )
    tick("tests", t)
    return runs, curves


def _subset(ids: I64, cfg: LabConfig, rng: np.random.Generator) -> I64:
    """At most ``cfg.max_logged_prompts`` of ``ids`` (a random subset), sorted."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape[0] > cfg.max_logged_prompts:
        ids = rng.choice(ids, size=cfg.max_logged_prompts, replace=False)
    return np.sort(ids)


def _teacher_answers(
    teacher: Any,
    tok: _LabTokenizer,
    prompts: Sequence[str],
    scheme: KGWWatermark | None,
    *,
    cfg: LabConfig,
    seed: int,
) -> list[TokenText]:
    """The teacher's answers to ``prompts`` (prompt kept as context), with the watermark
    ``scheme`` or without it (``None``); batch ``j`` is sampled with seed ``seed + j``."""
    from distillguard.watermark.hf import generate_watermarked

    out: list[TokenText] = []
    gen_batch = 128
    for j in range(0, len(prompts), gen_batch):
        gen = generate_watermarked(
            teacher,
            tok.hf,
            prompts[j : j + gen_batch],
            scheme=scheme,
            max_new_tokens=cfg.answer_tokens,
            temperature=cfg.temperature,
            seed=seed + j,
        )
        out.extend(
            TokenText.of(_cut(x, p), p)
            for x, p in zip(gen.token_ids, gen.prompt_lengths, strict=True)
        )
    return out


def _fresh_answers(
    teacher: Any,
    tok: _LabTokenizer,
    prompts: Sequence[str],
    ids: I64,
    *,
    cfg: LabConfig,
    seed: int,
) -> dict[int, list[TokenText]]:
    """``cfg.read_samples`` unwatermarked teacher answers to each prompt in ``ids``, sampled
    afresh (prompt as context, answer scored)."""
    order = [int(i) for i in ids for _ in range(cfg.read_samples)]
    out: dict[int, list[TokenText]] = {int(i): [] for i in ids}
    answers = _teacher_answers(
        teacher, tok, [prompts[i] for i in order], None, cfg=cfg, seed=seed * 7919 + 500_009
    )
    for i, text in zip(order, answers, strict=True):
        out[i].append(text)
    return out


def _cut(ids: Sequence[int], prompt_len: int) -> I64:
    """A generated row up to and including its first end-of-text (padding after it dropped)."""
    arr = np.asarray(ids, dtype=np.int64)
    tail = arr[prompt_len:]
    stops = np.flatnonzero((tail == 1) | (tail == 2))  # <pad> 1, <eos> 2
    if stops.shape[0]:
        arr = arr[: prompt_len + int(stops[0]) + 1]
        if arr[-1] == 1:
            arr[-1] = 2
    return arr


def _pool(parts: Sequence[Any]) -> Any:
    out = parts[0]
    for p in parts[1:]:
        out = out.concat(p)
    return out


def _pct(frac: float) -> str:
    return f"{frac * 100:g}%"


def _test_model(
    cfg: LabConfig,
    *,
    model: Any,
    tok: _LabTokenizer,
    mode: str,
    keys: list[tuple[str, WatermarkKey]],
    flt: KgramFilter,
    probe_texts: list[TokenText],
    asks: list[tuple[list[str], float]],
    subject_name: str,
    seed: int,
) -> list[tuple[str, ModeResult]]:
    """Test one model under several keys with the shared protocol
    (:func:`~distillguard.radioactivity.score_under_keys`): the model is queried once, the
    answers (or the predictions) are scored under each key."""
    wm_cfg = KGWConfig(gamma=cfg.gamma, delta=cfg.delta, context_width=cfg.context_width)
    subject: OpenSubject | TextsSubject
    if mode == "open":
        subject = OpenSubject(
            name=subject_name, model=model, texts=probe_texts, batch_size=32, pad_id=1
        )
    else:
        answers = [
            a
            for prompts, temperature in asks
            for a in _ask_endpoint(model, tok, prompts, cfg=cfg, seed=seed, temperature=temperature)
        ]
        texts = [TokenText.of(np.asarray(tok.hf.encode(a), dtype=np.int64)) for a in answers]
        # answers asked through the lab's ASGI endpoint, scored in one batch
        subject = TextsSubject(name=subject_name, texts=texts, batch_size=None, mode="closed")
    results = score_under_keys(
        subject,
        [KGWWatermark(wm_cfg, key=k) for _, k in keys],
        kgram_filter=flt,
        roles=["suspect" if name == "watermark" else "control" for name, _ in keys],
        notes=[[f"key: {name}"] for name, _ in keys],
    )
    return [(name, r) for (name, _), r in zip(keys, results, strict=True)]


def _ask_endpoint(
    model: Any,
    tok: _LabTokenizer,
    prompts: list[str],
    *,
    cfg: LabConfig,
    seed: int,
    temperature: float,
) -> list[str]:
    """The model's answers to ``prompts`` through the OpenAI-compatible ASGI app (closed mode)."""
    import httpx

    from distillguard.radioactivity import EndpointConfig, SuspectClient

    from .serve import model_app

    app = model_app(model, tok.hf, format_prompt=lambda p: f"{p} {SEP}", seed=seed, max_batch=64)
    client = SuspectClient(
        EndpointConfig(
            url="http://suspect.lab/v1",
            max_tokens=cfg.answer_tokens,
            temperature=temperature,
            concurrency=64,
            retries=0,
        ),
        transport=httpx.ASGITransport(app=app),
    )
    return client.complete(prompts)


# --- output ----------------------------------------------------------------------------------


def _write(result: LabResult, out_dir: Path) -> LabResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "lab.json"
    table_path = out_dir / "lab.md"
    plot_path = out_dir / "lab.png"
    json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    table_path.write_text(lab_table(result))
    _plot(result, plot_path)
    return replace(result, json_path=json_path, table_path=table_path, plot_path=plot_path)


def lab_table(result: LabResult) -> str:
    """The lab's results as a Markdown table, with the targets and the null runs."""
    lines = [
        "| model | watermarked fraction | mode | seeds | median p | worst p | tokens scored "
        "| green fraction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(
        result.summary(),
        key=lambda r: (r["mode"], r["fraction"] if r["fraction"] is not None else -1.0),
    ):
        frac = "independent" if row["fraction"] is None else _pct(row["fraction"])
        lines.append(
            f"| {row['model']} | {frac} | {row['mode']} | {row['seeds']} | {row['median_p']:.1e} "
            f"| {row['max_p']:.1e} | {row['median_scored']} | {row['median_green']:.3f} |"
        )
    seeds = sorted({r.seed for r in result.runs})
    if len(seeds) > 1:
        lines += [
            "",
            "p-value per seed (teacher's key):",
            "",
            "| model | mode | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|---|" + "---|" * len(seeds),
        ]
        by: dict[tuple[str, str], dict[int, float]] = {}
        order: dict[str, float] = {}
        for r in result.runs:
            if r.key == "watermark":
                by.setdefault((r.mode, r.model), {})[r.seed] = r.p_value
                order[r.model] = -1.0 if r.fraction is None else r.fraction
        for mode, model in sorted(by, key=lambda k: (k[0], order[k[1]])):
            cells = [_fmt(by[(mode, model)].get(s)) for s in seeds]
            lines.append(f"| {model} | {mode} | " + " | ".join(cells) + " |")
    t = result.targets()
    lines += [
        "",
        f"- open mode, >= 5% watermarked: worst p = {_fmt(t['open_5pct_worst_p'])} "
        f"(target < 1e-5: {'met' if t['open_5pct_met'] else 'not met'})",
        f"- closed mode, >= 10% watermarked: worst p = {_fmt(t['closed_10pct_worst_p'])} "
        f"(target < 1e-3: {'met' if t['closed_10pct_met'] else 'not met'})",
        f"- null runs: {t['null_rejections_at_0.01']} of {t['null_runs']} reject at 0.01 "
        f"(rate {t['null_rate_at_0.01']:.3f}; target <= 0.02 over >= 50 runs: "
        f"{'met' if t['null_met'] else 'not met'})",
    ]
    return "\n".join(lines) + "\n"


def _fmt(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.1e}"


_FLOOR = 1e-30  # the plots' lower limit: the region of the targets stays readable


def _plot(result: LabResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for mode, marker in (("open", "o"), ("closed", "s")):
        pts = [
            r
            for r in result.runs
            if r.key == "watermark" and r.mode == mode and r.fraction is not None
        ]
        xs = [max(r.fraction or 0.0, 0.003) * 100 for r in pts]
        ys = [max(r.p_value, _FLOOR) for r in pts]
        ax1.scatter(xs, ys, marker=marker, label=f"{mode} mode (each seed)", alpha=0.8)
        ind = [
            r for r in result.runs if r.key == "watermark" and r.mode == mode and r.fraction is None
        ]
        if ind:
            ax1.scatter(
                [0.15] * len(ind),
                [max(r.p_value, _FLOOR) for r in ind],
                marker="x",
                label=f"independent model ({mode})",
            )
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.axhline(1e-5, color="grey", linestyle=":", linewidth=0.8, label="1e-5")
    ax1.axhline(1e-3, color="grey", linestyle="--", linewidth=0.8, label="1e-3")
    ax1.set_xlabel("watermarked fraction of fine-tuning data (%) (0% drawn at 0.3%)")
    ax1.set_ylabel(f"p-value (below {_FLOOR:.0e} drawn at {_FLOOR:.0e})")
    ax1.set_ylim(_FLOOR / 3, 3.0)
    ax1.set_title("radioactivity against watermarked fraction")
    ax1.legend(fontsize=7)
    subjects = list(dict.fromkeys(c.subject for c in result.curves))
    palette = plt.get_cmap("tab10")
    for c in result.curves:  # one colour per model, the line style says the mode
        xs = [p.n_scored for p in c.curve]
        ys = [max(p.p_value, _FLOOR) for p in c.curve]
        ax2.plot(
            xs,
            ys,
            "-" if c.mode == "open" else "--",
            color=palette(subjects.index(c.subject) % 10),
            label=f"{c.subject} ({c.mode})",
        )
    ax2.set_yscale("log")
    ax2.set_xscale("log")
    ax2.set_xlabel("scored tokens (filter + dedup)")
    ax2.set_ylabel(f"pooled p-value (floor {_FLOOR:.0e})")
    ax2.set_ylim(_FLOOR / 3, 3.0)
    ax2.set_title(f"p-value against scored tokens (seed {result.config.seeds[0]})")
    ax2.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

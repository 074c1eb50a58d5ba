"""The radioactivity lab: a teacher, its watermarked answers harvested, students fine-tuned on
them, and the radioactivity test of each, on a CPU (``python -m experiments.radioactivity_lab``).

See :mod:`experiments.radioactivity_lab.lab` and ``docs/radioactivity.md``.
"""

from __future__ import annotations

from .lab import LabConfig, LabResult, LabRun, find_corpus, lab_table, run_lab
from .serve import model_app

__all__ = ["LabConfig", "LabResult", "LabRun", "find_corpus", "lab_table", "model_app", "run_lab"]

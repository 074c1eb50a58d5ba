"""Experiments: studies that measure DistillGuard's methods, kept out of the installed package.

Each experiment uses only the package's public API, is run from a source checkout
(``python -m experiments.NAME``) and is tested in ``tests/experiments``. See ``README.md``.
"""

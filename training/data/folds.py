"""Deterministic k-fold split by case id."""

from __future__ import annotations

import hashlib


def fold_of(case_ids: list[str], folds: int = 5) -> dict[str, int]:
    """Assign each case to a fold: cases ordered by a hash of their id, dealt round-robin.

    The same ids always give the same folds, whatever their order, and fold sizes differ by
    at most one.
    """
    ordered = sorted(set(case_ids), key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    return {case: i % folds for i, case in enumerate(ordered)}


def split(case_ids: list[str], fold: int, folds: int = 5) -> tuple[list[str], list[str]]:
    """(training ids, validation ids) for ``fold``; fold -1 trains on everything."""
    if fold == -1:
        return list(case_ids), []
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1} or -1 (all data), got {fold}")
    assignment = fold_of(case_ids, folds)
    return ([c for c in case_ids if assignment[c] != fold], [c for c in case_ids if assignment[c] == fold])

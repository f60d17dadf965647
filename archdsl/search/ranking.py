"""NSGA-II's ranking of multi-objective results: non-dominated sorting, then crowding distance.

    order = nsga2_order(values, directions)   # indices of ``values`` (one row per trial), best first

Rank 0 is the Pareto front; within a rank, a larger crowding distance (a lonelier point, the ends of
the front first) comes first, as in Deb et al. 2002. Used by successive halving (which trials go on
to the next rung) and by the fidelity check (which trials to re-train).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["non_dominated_ranks", "crowding_distance", "nsga2_order"]


def _as_max(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """``[n, m]`` values with every objective turned into one to maximise."""
    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    arr = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    return arr * signs


def non_dominated_ranks(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """``ranks[n]``: 0 for the non-dominated rows, 1 for those dominated only by rank 0, ..."""
    v = _as_max(values, directions)
    n = len(v)
    ge = (v[:, None, :] >= v[None, :, :]).all(-1)
    gt = (v[:, None, :] > v[None, :, :]).any(-1)
    dominates = ge & gt                                  # dominates[i, j]: i dominates j
    ranks = np.full(n, -1)
    left = np.ones(n, dtype=bool)
    rank = 0
    while left.any():
        dominated = (dominates[left][:, left]).any(0)    # dominated by someone still left
        idx = np.flatnonzero(left)[~dominated]
        ranks[idx] = rank
        left[idx] = False
        rank += 1
    return ranks


def crowding_distance(values: Sequence[Sequence[float]]) -> np.ndarray:
    """Deb's crowding distance of the rows of one rank (``inf`` at each objective's extremes)."""
    v = np.asarray(values, dtype=float)
    n, m = v.shape if v.ndim == 2 else (len(v), 0)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(v[:, k], kind="stable")
        span = v[order[-1], k] - v[order[0], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (v[order[2:], k] - v[order[:-2], k]) / span
    return dist


def nsga2_order(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Row indices best first: by non-dominated rank, then by crowding distance (larger first), then
    by row index (so the order is deterministic)."""
    if len(values) == 0:
        return []
    ranks = non_dominated_ranks(values, directions)
    v = _as_max(values, directions)
    crowd = np.zeros(len(v))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        crowd[idx] = crowding_distance(v[idx])
    return sorted(range(len(v)), key=lambda i: (ranks[i], -crowd[i], i))

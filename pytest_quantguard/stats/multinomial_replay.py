"""The resampled counts of many classes' 0/1 bootstraps at once, draw for draw the same as
``numpy.random.Generator.multinomial`` would give each class from its own stream.

``paired_binary_interval`` draws ``rng.multinomial(n, [b/n, c/n, 1 - (b+c)/n], size=R)``: per row,
numpy draws ``x0 ~ Binomial(n, b/n)`` then ``x1 ~ Binomial(n - x0, (c/n) / (1 - b/n))``. Where a
binomial's mean is at most 30 (and p <= 0.5), numpy draws it by inversion from ONE uniform
``U = rng.random()``: X is the first k with ``U - px_0 - ... - px_{k-1} <= px_k`` (px the binomial's
probabilities, computed by a fixed recurrence). X is a step function of U, so it is found for all
rows at once from the cumulative sums, and every row within 1e-12 of a step is replayed
sequentially, exactly as numpy's C loop does. A class outside that case (a larger mean, a
restart of the inversion, a row with x0 = n) is drawn by ``rng.multinomial`` itself; a canary class
is checked against ``rng.multinomial`` so that a numpy whose sampler differs falls back entirely
(docs/intervals.md, "0/1 metrics").
"""

from __future__ import annotations

import math

import numpy as np

_TOL = 1e-12  # far above the ~2e-14 the cumulative sums can differ from numpy's running U
_GRID = 2048  # cells of U's lookup tables (a power of two)
_INVERSION_MEAN = 30.0  # numpy's binomial switches from inversion to BTPE above this mean


def replay_eligible(b: np.ndarray, c: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Classes whose two binomials numpy draws by inversion (and b + c > 0)."""
    p0 = b / n
    with np.errstate(divide="ignore", invalid="ignore"):  # b = n: no second binomial
        p1 = (c / n) / (1.0 - p0)
    first = (b == 0) | ((p0 <= 0.5) & (p0 * n <= _INVERSION_MEAN))
    second = (c == 0) | ((p1 <= 0.5) & (p1 * n <= _INVERSION_MEAN))
    return first & second & (b + c > 0)


def _tables(nn: np.ndarray, p: np.ndarray):
    """numpy's inversion constants per (n, p) key, as its C code computes them: the cumulative
    probabilities (column 0 = -1, then C_0 .. C_bound, then 2.0 sentinels), the probabilities and
    the bound past which the inversion restarts."""
    q = 1.0 - p
    qn = np.array([math.exp(int(k) * math.log(float(v))) for k, v in zip(nn, q, strict=True)])
    mean = nn * p
    bound = np.minimum(nn, mean + 10.0 * np.sqrt(mean * q + 1)).astype(np.int64)
    width = int(bound.max()) + 3
    px = np.zeros((len(nn), width - 2))
    px[:, 0] = qn
    for x in range(1, width - 2):
        px[:, x] = ((nn - x + 1) * p * px[:, x - 1]) / (x * q)
    cumulative = np.full((len(nn), width), 2.0)
    cumulative[:, 0] = -1.0
    cumulative[:, 1:-1] = np.cumsum(px, axis=1)
    beyond = np.arange(width - 2)[None, :] > bound[:, None]
    cumulative[:, 1:-1][beyond] = 2.0
    return cumulative, px, bound


def _exact(u: float, px: np.ndarray, bound: int) -> int:
    """numpy's inversion loop for one uniform; -1 where it would restart (draw another)."""
    x, p = 0, float(px[0])
    while u > p:
        x += 1
        if x > bound:
            return -1
        u -= p
        p = float(px[x])
    return x


def _lookup(tables, grid: int) -> np.ndarray:
    """Per key and cell ``[g/grid, (g+1)/grid)`` of U: the X every U of the cell gives, or 255
    where a step lies within 1e-12 of the cell (or past the bound): those are decided exactly."""
    cumulative, _, bound = tables
    steps = cumulative[:, 1:-1]
    k = len(steps)
    inside = steps < 2.0
    rows = np.broadcast_to(np.arange(k)[:, None], steps.shape)[inside]
    # C_j < g/grid  <=>  g >= floor(C_j * grid) + 1 (a power of two: the products are exact)
    first = np.minimum(np.floor(steps[inside] * grid).astype(np.intp) + 1, grid)
    counts = np.bincount(rows * (grid + 1) + first, minlength=k * (grid + 1))
    lookup = np.cumsum(counts.reshape(k, grid + 1)[:, :grid], axis=1).astype(np.uint8)
    lookup[lookup > bound[:, None]] = 255
    flat = lookup.ravel()
    for shift in (-_TOL, _TOL):
        cells = np.clip(np.floor((steps[inside] + shift) * grid).astype(np.intp), 0, grid - 1)
        flat[rows * grid + cells] = 255
    return lookup


def _invert(u: np.ndarray, keys: np.ndarray, tables, grid: int) -> np.ndarray:
    """X for each uniform ``u`` under its key's table; -1 where numpy would restart."""
    x = _lookup(tables, grid).ravel()[keys * grid + (u * grid).astype(np.intp)].astype(np.intp)
    unsure = np.flatnonzero(x == 255)
    x[unsure] = _decided(u[unsure], keys[unsure], tables)
    return x


def _decided(u: np.ndarray, keys: np.ndarray, tables) -> np.ndarray:
    """X from the count of steps below each U; the few U within 1e-12 of a step replayed by
    numpy's own loop; -1 past the bound."""
    cumulative, px, bound = tables
    rows = cumulative[keys]
    x = (rows[:, 1:-1] < u[:, None]).sum(axis=1)
    at = np.arange(len(u))
    low, high = rows[at, x], rows[at, x + 1]
    restart = x > bound[keys]
    for i in np.flatnonzero(~restart & (np.minimum(u - low, high - u) < _TOL)):
        x[i] = _exact(float(u[i]), px[keys[i]], int(bound[keys[i]]))
    x[restart] = -1
    return x


def replay_differences(b: np.ndarray, c: np.ndarray, n: np.ndarray, seeds: np.ndarray,
                       resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """``x0 - x1`` of each resample (rows: classes, all ``replay_eligible``) and a mask of the
    classes it could not replay (their rows are to be drawn by ``rng.multinomial``)."""
    k, r = len(b), int(resamples)
    uniforms = [np.random.default_rng(int(s)).random(r * (int(bi > 0) + int(ci > 0)))
                for s, bi, ci in zip(seeds, b, c, strict=True)]
    first = np.zeros((k, r), dtype=np.intp)
    second = np.zeros((k, r), dtype=np.intp)
    both = (b > 0) & (c > 0)
    u0 = [u[0::2] if two else u for u, two in zip(uniforms, both, strict=True)]
    u1 = [u[1::2] if two else u for u, two in zip(uniforms, both, strict=True)]
    has_b = np.flatnonzero(b > 0)
    if len(has_b):
        tables = _tables(n[has_b], b[has_b] / n[has_b])
        keys = np.repeat(np.arange(len(has_b)), r)
        first[has_b] = _invert(np.concatenate([u0[i] for i in has_b]), keys, tables,
                               _GRID).reshape(len(has_b), r)
    failed = (first < 0).any(axis=1) | ((first == n[:, None]) & (c > 0)[:, None]).any(axis=1)
    has_c = np.flatnonzero((c > 0) & ~failed)
    if len(has_c):
        x0 = first[has_c].ravel()
        span = first[has_c].max(axis=1) + 1
        offsets = np.concatenate([[0], np.cumsum(span)[:-1]])
        key_class = np.repeat(np.arange(len(has_c)), span)
        key_x0 = np.arange(int(span.sum())) - np.repeat(offsets, span)
        nn = n[has_c][key_class] - key_x0
        p1 = (c[has_c] / n[has_c]) / (1.0 - b[has_c] / n[has_c])
        tables = _tables(nn, p1[key_class])
        local = np.repeat(np.arange(len(has_c)), r)
        keys = offsets[local] + x0
        draws = _invert(np.concatenate([u1[i] for i in has_c]), keys, tables, _GRID)
        second[has_c] = draws.reshape(len(has_c), r)
        failed[has_c] |= (second[has_c] < 0).any(axis=1)
    return first - second, failed


def replay_matches_numpy(b: int, c: int, n: int, seed: int, resamples: int) -> bool:
    """Whether the replay gives ``rng.multinomial``'s draws for one class (the canary)."""
    differences, failed = replay_differences(np.array([b]), np.array([c]), np.array([n]),
                                             np.array([seed]), resamples)
    draws = np.random.default_rng(int(seed)).multinomial(
        int(n), [b / n, c / n, 1.0 - (b + c) / n], size=int(resamples))
    return bool(failed[0]) or np.array_equal(differences[0], draws[:, 0] - draws[:, 1])

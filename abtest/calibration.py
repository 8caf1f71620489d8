"""A/A calibration: re-split the logged users many times and check the statistics against known truth.

Each run re-assigns the same users to two arms by re-salting the assignment hash
(`abtest.hashing`), so there is no true effect: the share of significant results estimates the
false-positive rate, which should be alpha, and the p-values should be uniform (Kolmogorov-
Smirnov test). With `inject`, every value of one arm's metric numerator is multiplied by
1 + inject, so the true relative effect is exactly `inject`: the share of intervals covering it
estimates coverage (should be 1 - alpha) and the share of significant results the power.

Runs are vectorised: per-arm sums for all runs come from one matrix product of the 0/1 split
matrix with the per-user values, and the tests run on arrays. Runs re-use the same users, so
they are not quite independent; the binomial intervals treat them as if they were.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from abtest import stats
from abtest.config import resolve
from abtest.errors import AbtestError
from abtest.hashing import aa_salts, iter_resalted_buckets
from abtest.metrics import RatioOfSums

# Split matrix entries per chunk of runs (runs x users), to bound memory.
CHUNK_CELLS = 4_000_000


class AAResult(NamedTuple):
    """Calibration of one metric.

    Attributes:
        runs: Number of re-splits that gave a p-value.
        users: Users re-split in each run.
        false_positive_rate: Share of runs significant at alpha without any effect.
        fpr_lower: Lower bound of its exact binomial (1 - alpha) interval.
        fpr_upper: Upper bound of that interval.
        ks_statistic: Kolmogorov-Smirnov distance of the p-values from Uniform(0, 1).
        ks_p_value: p-value of that KS test (small: p-values are not uniform).
        inject: Injected relative effect (NaN when none).
        coverage: Share of runs whose relative interval covers `inject`.
        coverage_lower: Lower bound of its binomial interval.
        coverage_upper: Upper bound of its binomial interval.
        power: Share of runs significant with the injected effect.
        false_positives: Runs significant at alpha without any effect (of `runs`).
        covered: Runs whose interval covered `inject` (of `coverage_runs`; 0 without inject).
        coverage_runs: Runs the coverage is counted over (every re-split; 0 without inject).
    """

    runs: int
    users: int
    false_positive_rate: float
    fpr_lower: float
    fpr_upper: float
    ks_statistic: float
    ks_p_value: float
    inject: float
    coverage: float
    coverage_lower: float
    coverage_upper: float
    power: float
    false_positives: int
    covered: int
    coverage_runs: int


@dataclass(frozen=True)
class _ArmSums:
    n: np.ndarray
    mean: dict[str, np.ndarray]
    var: dict[str, np.ndarray]
    cov: np.ndarray | None


def _arm_moments(
    split: np.ndarray, cols: dict[str, np.ndarray], pair: tuple[str, str] | None
) -> tuple[_ArmSums, _ArmSums]:
    """Means, variances (and the pair's covariance) of both arms for every run, from centred sums."""
    names = list(cols)
    centred = {name: values - values.mean() for name, values in cols.items()}
    columns = [centred[n] for n in names] + [centred[n] ** 2 for n in names]
    if pair is not None:
        columns.append(centred[pair[0]] * centred[pair[1]])
    z = np.column_stack(columns)
    b = split.astype(np.float64)
    sums_b = b @ z
    sums_a = z.sum(axis=0)[None, :] - sums_b
    n_b = b.sum(axis=1)
    n_a = split.shape[1] - n_b
    arms = []
    k = len(names)
    for sums, n in ((sums_a, n_a), (sums_b, n_b)):
        with np.errstate(divide="ignore", invalid="ignore"):
            m = {name: sums[:, i] / n for i, name in enumerate(names)}
            v = {name: (sums[:, k + i] - n * m[name] ** 2) / (n - 1) for i, name in enumerate(names)}
            c = (sums[:, 2 * k] - n * m[pair[0]] * m[pair[1]]) / (n - 1) if pair is not None else None
        means = {name: m[name] + cols[name].mean() for name in names}
        arms.append(_ArmSums(n=n, mean=means, var=v, cov=c))
    return arms[0], arms[1]


def _estimate(arm: _ArmSums, metric: RatioOfSums, scale: float) -> stats.Estimate:
    """The metric's estimate in one arm, with the numerator multiplied by `scale`."""
    mx, vx = scale * arm.mean[metric.numer], scale**2 * arm.var[metric.numer]
    if metric.denom is None:
        return stats.Estimate(mx, vx / arm.n, arm.n - 1)
    my, vy = arm.mean[metric.denom], arm.var[metric.denom]
    cxy = scale * arm.cov  # type: ignore[operator]
    return stats.Estimate(mx / my, stats.ratio_variance(mx, my, vx, vy, cxy) / arm.n, arm.n - 1)


def run_aa(
    users: np.ndarray,
    values: dict[str, np.ndarray],
    metrics: dict[str, RatioOfSums],
    *,
    runs: int = 1000,
    inject: float | None = None,
    alpha: float | None = None,
    relative: str | None = None,
    salt: str = "aa",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, AAResult]:
    """Re-split `users` `runs` times (two arms by re-salted MurmurHash3) and calibrate each metric.

    Args:
        users: User ids (the hash input), one per row of `values`.
        values: Per-user columns named by the metrics' numer/denom.
        metrics: Metric name -> `RatioOfSums` or `Mean` metric.
        runs: Number of re-splits.
        inject: Relative effect added to the second arm (e.g. 0.05), or None for A/A only.
        alpha: Significance level.
        relative: Relative interval method ('fieller' or 'delta').
        salt: Salt base (usually the experiment name); runs use salts derived from it and `seed`.
        seed: Picks another family of re-splits.
        progress: Called with the number of runs finished after each chunk.
    """
    from scipy.stats import kstest

    alpha = resolve("alpha", alpha)
    relative = resolve("relative", relative)
    users = np.asarray(users)
    if runs < 1:
        raise AbtestError(f"runs == {runs}, must be >= 1")
    if len(users) < 4:
        raise AbtestError(f"{len(users)} users, an A/A split needs at least 4")
    if inject is not None and not -1 < inject:
        raise AbtestError(f"inject == {inject}, must be > -100%")
    for name, metric in metrics.items():
        for col in (metric.numer, metric.denom):
            if col is not None and col not in values:
                raise AbtestError(f"metric {name!r} needs per-user column {col!r}")
    chunk = max(1, CHUNK_CELLS // len(users))
    salts = aa_salts(salt, runs, seed)
    collected: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in metrics}
    for split in iter_resalted_buckets(salts, users, 2, chunk=chunk):
        for name, metric in metrics.items():
            cols = {c: np.asarray(values[c], dtype=float) for c in (metric.numer, metric.denom) if c is not None}
            pair = (metric.numer, metric.denom) if metric.denom is not None else None
            arm_a, arm_b = _arm_moments(split, cols, pair)
            control = _estimate(arm_a, metric, 1.0)
            null = stats.compare(control, _estimate(arm_b, metric, 1.0), alpha=alpha, relative=relative)
            out = collected[name]
            out.setdefault("p", []).append(np.asarray(null.p_value))
            if inject is not None:
                alt = stats.compare(control, _estimate(arm_b, metric, 1.0 + inject), alpha=alpha, relative=relative)
                covered = (np.asarray(alt.lower) <= inject) & (inject <= np.asarray(alt.upper))
                out.setdefault("covered", []).append(covered)
                out.setdefault("power", []).append(np.asarray(alt.significant))
        if progress is not None:
            progress(split.shape[0])
    results = {}
    for name, out in collected.items():
        p = np.concatenate(out["p"])
        p = p[~np.isnan(p)]
        if len(p) == 0:
            raise AbtestError(f"metric {name!r}: no run gave a p-value (is the metric constant?)")
        hits = int((p < alpha).sum())
        fpr_lower, fpr_upper = stats.proportion_interval(hits, len(p), alpha)
        ks = kstest(p, "uniform")
        cov = cov_lo = cov_hi = pw = float("nan")
        covered = np.zeros(0, dtype=bool)
        if inject is not None:
            covered = np.concatenate(out["covered"])
            cov = float(covered.mean())
            cov_lo, cov_hi = stats.proportion_interval(int(covered.sum()), len(covered), alpha)
            pw = float(np.concatenate(out["power"]).mean())
        results[name] = AAResult(
            runs=len(p),
            users=len(users),
            false_positive_rate=hits / len(p),
            fpr_lower=fpr_lower,
            fpr_upper=fpr_upper,
            ks_statistic=float(ks.statistic),
            ks_p_value=float(ks.pvalue),
            inject=float("nan") if inject is None else float(inject),
            coverage=cov,
            coverage_lower=cov_lo,
            coverage_upper=cov_hi,
            power=pw,
            false_positives=hits,
            covered=int(covered.sum()),
            coverage_runs=len(covered),
        )
    return results


@dataclass
class Calibration:
    """The result of `abtest aa`: every metric's calibration; render it with `to_dicts` or `to_string(format)`.

    Attributes:
        experiment: Experiment name.
        population: Whose users were re-split ('all arms' or 'treatment I').
        alpha: Significance level.
        inject: The injected relative effect, or None.
        results: Metric name -> its `AAResult`.
    """

    experiment: str
    population: str
    alpha: float
    inject: float | None
    results: dict[str, AAResult]

    def to_dicts(self) -> list[dict[str, object]]:
        """One dict per metric: `metric` and the fields of `AAResult` (NaN as None)."""
        return [
            {"metric": name, **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result._asdict().items()}}
            for name, result in self.results.items()
        ]

    def to_string(self, format: str = "table") -> str:
        """'table' (one line per metric) or 'json'."""
        if format == "json":
            return json.dumps(self.to_dicts(), indent=2) + "\n"
        if format != "table":
            raise AbtestError(f"format == {format!r}, must be 'table' or 'json'")
        first = next(iter(self.results.values()))
        lines = [
            f"experiment {self.experiment!r}, users of {self.population}: {first.users} users, {first.runs} re-splits, "
            f"alpha {self.alpha:g}, {100 * (1 - self.alpha):g}% binomial intervals"
        ]
        for name, r in self.results.items():
            line = (
                f"{name:<24} FPR {100 * r.false_positive_rate:5.2f}% "
                f"[{100 * r.fpr_lower:.2f}%, {100 * r.fpr_upper:.2f}%]  KS p {r.ks_p_value:.3f}"
            )
            if self.inject is not None:
                line += (
                    f"  coverage {100 * r.coverage:.2f}% [{100 * r.coverage_lower:.2f}%, "
                    f"{100 * r.coverage_upper:.2f}%]  power {100 * r.power:.1f}%"
                )
            lines.append(line)
        return "\n".join(lines) + "\n"

    def problems(self, level: float) -> list[str]:
        """What is off at `level` (exact binomial tests of the rates, KS of the p-values); empty when calibrated."""
        alpha, out = self.alpha, []
        for name, r in self.results.items():
            lower, upper = stats.proportion_interval(r.false_positives, r.runs, level)
            if not lower <= alpha <= upper:
                out.append(
                    f"{name}: false-positive rate {100 * r.false_positive_rate:.2f}% is not {100 * alpha:g}% "
                    f"({100 * (1 - level):g}% interval {100 * lower:.2f}%..{100 * upper:.2f}%)"
                )
            if r.ks_p_value < level:
                out.append(f"{name}: p-values not uniform (KS p = {r.ks_p_value:.2g})")
            if self.inject is not None:
                lower, upper = stats.proportion_interval(r.covered, r.coverage_runs, level)
                if not lower <= 1 - alpha <= upper:
                    out.append(
                        f"{name}: coverage {100 * r.coverage:.2f}% is not {100 * (1 - alpha):g}% "
                        f"({100 * (1 - level):g}% interval {100 * lower:.2f}%..{100 * upper:.2f}%)"
                    )
        return out

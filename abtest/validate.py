"""The statistics checked against the truth: re-randomised experiments over stored potential outcomes.

Each run assigns the experiment's listeners to control or treatment at random (a fair coin per
listener, as the hash does) and gives each the outcome it has under that arm in the truth file
(`abtest.truth`): an experiment that could have happened, whose true effect is known. Over many
runs, per metric and method (Welch, CUPED, CUPAC, the always-valid confidence sequence at the
last look), the bias of the relative effect, the coverage of the true effect by the intervals
(with its exact binomial interval), the power (share of significant runs), the mean interval
width and the mean variance reduction. The daily-peeking check re-splits the control arm's
listeners (an A/A experiment: no effect at all) and looks at the cumulative time per listener
after every day: the naive test stops at the first p < alpha, the confidence sequence at the
first day it excludes zero, the group-sequential test at the first day |z| crosses its
O'Brien-Fleming-type spending boundary; their false-positive rates are reported side by side.

Two designs answer two questions. The finite-population design (the default) keeps the
experiment's listeners and re-draws only the coin: it asks how the intervals cover the effect on
*these* listeners, and Welch's interval is conservative there when individual effects vary
(`randomisation_coverage`). The superpopulation design also re-draws the listeners, with
replacement from the stored ones (their empirical distribution standing in for the world's),
before the coin: it asks how the intervals cover the effect on the population the listeners come
from, which is the variance Welch's interval estimates (Imbens & Rubin 2015, ch. 6.7).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from abtest import cuped, groupseq, sequential, stats
from abtest.errors import AbtestError
from abtest.metrics import MetricBaseAggregated, UserColumns
from abtest.truth import true_effect

METHODS = ("welch", "cuped", "cupac", "sequential")
DESIGNS = ("finite", "superpopulation")


@dataclass(frozen=True)
class MethodCheck:
    """One metric and method over every run.

    Attributes:
        metric: Metric name.
        method: 'welch', 'cuped', 'cupac' or 'sequential'.
        runs: Re-randomisations.
        truth: True relative effect (fraction).
        bias: Mean estimate minus the truth (fraction).
        coverage: Share of runs whose interval holds the truth.
        coverage_lower: Lower bound of the coverage's exact binomial interval.
        coverage_upper: Upper bound of that interval.
        power: Share of runs whose interval excludes zero.
        width: Mean interval width (fraction).
        variance_reduction: Mean variance reduction against Welch (0 for Welch and the sequence).
        expected_coverage: For Welch, the coverage that the randomisation itself predicts from
            both potential outcomes of every listener (`randomisation_coverage`); None otherwise.
    """

    metric: str
    method: str
    runs: int
    truth: float
    bias: float
    coverage: float
    coverage_lower: float
    coverage_upper: float
    power: float
    width: float
    variance_reduction: float
    expected_coverage: float | None = None


@dataclass(frozen=True)
class PeekingCheck:
    """False positives of an A/A experiment looked at after every day.

    Attributes:
        looks: Days looked at.
        runs: Re-randomisations.
        naive: Share of runs with p < alpha at some look (the fixed-horizon test read daily).
        naive_lower: Lower bound of its exact binomial interval.
        naive_upper: Upper bound.
        once: Share of runs with p < alpha at the last look only (the test read once).
        sequential: Share of runs whose confidence sequence excluded zero at some look.
        sequential_lower: Lower bound of its exact binomial interval.
        sequential_upper: Upper bound.
        obf: Share of runs that crossed the Lan-DeMets O'Brien-Fleming boundary of the planned
            daily looks (`abtest.groupseq`) at some look.
        obf_lower: Lower bound of its exact binomial interval.
        obf_upper: Upper bound.
    """

    looks: int
    runs: int
    naive: float
    naive_lower: float
    naive_upper: float
    once: float
    sequential: float
    sequential_lower: float
    sequential_upper: float
    obf: float
    obf_lower: float
    obf_upper: float


@dataclass
class Validation:
    """The result of `validate`; render it with `to_dicts` or `to_string(format)`."""

    experiment: str
    control: int
    treatment: int
    users: int
    alpha: float
    checks: list[MethodCheck]
    peeking: PeekingCheck | None = None
    notes: list[str] = field(default_factory=list)
    design: str = "finite"

    def to_dicts(self) -> list[dict[str, object]]:
        """One dict per metric and method (fractions as in `MethodCheck`), then the peeking check if any."""
        out: list[dict[str, object]] = [asdict(check) for check in self.checks]
        if self.peeking is not None:
            out.append({"check": "daily peeking (A/A)", **asdict(self.peeking)})
        return out

    def to_string(self, format: str = "table") -> str:
        """'table', 'markdown' or 'json'."""
        if format == "json":
            return json.dumps(self.to_dicts(), indent=2)
        head = ["metric", "method", "truth", "bias", "coverage", "power", "mean width", "variance reduction", "expected coverage"]
        body = [
            [c.metric, c.method, f"{100 * c.truth:+.2f}%", f"{100 * c.bias:+.2f} pp",
             f"{100 * c.coverage:.1f}% [{100 * c.coverage_lower:.1f}, {100 * c.coverage_upper:.1f}]",
             f"{100 * c.power:.1f}%", f"{100 * c.width:.2f} pp", f"{100 * c.variance_reduction:.1f}%",
             "" if c.expected_coverage is None else f"{100 * c.expected_coverage:.1f}%"]
            for c in self.checks
        ]
        runs = self.checks[0].runs if self.checks else 0
        lines = [
            f"experiment {self.experiment!r}: T{self.treatment} vs C{self.control}, {self.users} listeners "
            + ("re-randomised" if self.design == "finite" else "re-drawn with replacement and re-randomised")
            + f" {runs} times ({100 * (1 - self.alpha):g}% intervals; coverage with its exact binomial interval)",
            *self.notes,
            "",
        ]
        peek = []
        if self.peeking is not None:
            p = self.peeking
            peek = [
                f"daily peeking, A/A over {p.looks} looks, {p.runs} runs: naive {100 * p.naive:.1f}% [{100 * p.naive_lower:.1f}, "
                f"{100 * p.naive_upper:.1f}] (read once at the end: {100 * p.once:.1f}%), confidence sequence "
                f"{100 * p.sequential:.1f}% [{100 * p.sequential_lower:.1f}, {100 * p.sequential_upper:.1f}], "
                f"O'Brien-Fleming spending {100 * p.obf:.1f}% [{100 * p.obf_lower:.1f}, {100 * p.obf_upper:.1f}]"
            ]
        if format == "markdown":
            lines += ["| " + " | ".join(head) + " |", "|" + "|".join(":---:" for _ in head) + "|"]
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            return "\n".join([*lines, "", *peek]) + "\n"
        widths = [max(len(h), *(len(cells[i]) for cells in body)) for i, h in enumerate(head)] if body else [len(h) for h in head]
        fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines += [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*cells) for cells in body)]
        return "\n".join([*lines, "", *peek]) + "\n"


def validate(
    outcomes: Mapping[int, Mapping[str, np.ndarray]],
    pre: Mapping[str, np.ndarray] | None,
    metrics: Mapping[str, MetricBaseAggregated],
    *,
    control: int,
    treatment: int,
    runs: int,
    seed: int,
    alpha: float,
    relative: str,
    methods: Sequence[str] = METHODS,
    daily: np.ndarray | None = None,
    experiment: str = "",
    design: str = "finite",
) -> Validation:
    """Re-randomise the listeners `runs` times over their potential outcomes and check every method.

    Args:
        outcomes: Arm -> per-user columns (`abtest.truth.potential_outcomes`), users in one order.
        pre: Pre-period columns aligned with the users (`abtest.cuped.align_pre`); None skips CUPED and CUPAC.
        metrics: Metric name -> metric (means or ratios of the truth's columns).
        control: Control arm index.
        treatment: Treatment arm index.
        runs: Re-randomisations.
        seed: Seed of the coin flips.
        alpha: Significance level.
        relative: Relative interval method ('fieller' or 'delta').
        methods: Which of `METHODS` to check.
        daily: Users x days cumulative time under the control arm (NaN before a user's first
            session), for the peeking check; None skips it.
        experiment: Experiment name, for the rendering.
        design: 'finite' (the listeners fixed, the coin re-drawn) or 'superpopulation' (the
            listeners also re-drawn with replacement each run; see the module docstring). The
            truth is the same in both: the effect over the stored listeners. Expected coverage
            is predicted for the finite design only; the peeking check always re-splits the
            stored listeners.
    """
    if design not in DESIGNS:
        raise AbtestError(f"design == {design!r}, must be one of {', '.join(DESIGNS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise AbtestError(f"method(s) {', '.join(unknown)} unknown; choose from {', '.join(METHODS)}")
    for index in (control, treatment):
        if index not in outcomes:
            raise AbtestError(f"the truth has no outcomes under treatment {index}; it has {sorted(outcomes)}")
    users = outcomes[control][UserColumns.USER]
    if not np.array_equal(users, outcomes[treatment][UserColumns.USER]):
        raise AbtestError("the truth's arms hold different listeners; replay the experiment again")
    if pre is None:
        methods = [m for m in methods if m not in ("cuped", "cupac")]
    rng = np.random.default_rng(seed)
    z_crit = float(ndtri(1 - alpha / 2))
    n = len(users)
    records: dict[tuple[str, str], list[tuple[float, float, float, bool, float]]] = {}
    truths = {name: true_effect(metric, outcomes, control, treatment) for name, metric in metrics.items()}
    run_pre = pre
    arm_c: Mapping[str, np.ndarray]
    arm_t: Mapping[str, np.ndarray]
    for _ in range(runs):
        if design == "superpopulation":
            drawn = rng.integers(0, n, size=n)
            arm_c = {col: values[drawn] for col, values in outcomes[control].items()}
            arm_t = {col: values[drawn] for col, values in outcomes[treatment].items()}
            run_pre = None if pre is None else {col: values[drawn] for col, values in pre.items()}
        else:
            arm_c, arm_t = outcomes[control], outcomes[treatment]
        coin = rng.random(n) < 0.5
        arm = coin.astype(np.int64)  # 0: control, 1: treatment, also when both are one arm (an A/A pair)
        observed = {col: np.where(coin, arm_t[col], arm_c[col]) for col in arm_c if col != UserColumns.USER}
        for name, metric in metrics.items():
            if truths[name] is None:
                continue
            numer, denom = cuped.metric_columns(metric)
            y, d = observed[numer], None if denom is None else observed[denom]
            plain = cuped.cuped(y, d, np.full(n, np.nan), arm, control=0, treatment=1)
            for method in methods:
                if method in ("welch", "sequential"):
                    fit = plain
                elif method == "cuped":
                    covariate = cuped.covariate_for(metric, run_pre)  # type: ignore[arg-type]
                    if covariate is None:
                        continue
                    fit = cuped.cuped(y, d, covariate, arm, control=0, treatment=1, extra=run_pre.get(cuped.EXPOSURE))  # type: ignore[union-attr]
                else:
                    fit = cuped.cuped(y, d, cuped.cupac_covariate(metric, observed, run_pre), arm, control=0, treatment=1)  # type: ignore[arg-type]
                if method == "sequential":
                    cmp = stats.compare(fit.control, fit.treatment, alpha=alpha, relative="delta")
                    se = (float(cmp.upper) - float(cmp.lower)) / (2 * z_crit)
                    bounds = sequential.confidence_sequence(float(cmp.effect), se, n, n, alpha)
                    lower, upper = float(bounds[0]), float(bounds[1])
                else:
                    cmp = stats.compare(fit.control, fit.treatment, alpha=alpha, relative=relative)
                    lower, upper = float(cmp.lower), float(cmp.upper)
                significant = not lower <= 0.0 <= upper
                records.setdefault((name, method), []).append((float(cmp.effect), lower, upper, significant, fit.variance_reduction))
    checks = []
    for (name, method), rows in records.items():
        truth = float(truths[name])  # type: ignore[arg-type]
        effects, lowers, uppers, flags, reductions = (np.array(column) for column in zip(*rows, strict=True))
        covered = int(np.sum((lowers <= truth) & (truth <= uppers)))
        low, high = stats.proportion_interval(covered, len(rows), alpha)
        checks.append(MethodCheck(
            name, method, len(rows), truth, float(effects.mean() - truth), covered / len(rows), low, high,
            float(flags.mean()), float((uppers - lowers).mean()), float(reductions.mean()),
            randomisation_coverage(metrics[name], outcomes, control, treatment, alpha) if method == "welch" and design == "finite" else None,
        ))
    peeking = None if daily is None else peeking_check(daily, runs=runs, seed=seed, alpha=alpha)
    return Validation(experiment, control, treatment, n, alpha, checks, peeking, design=design)


def randomisation_coverage(
    metric: MetricBaseAggregated, outcomes: Mapping[int, Mapping[str, np.ndarray]], control: int, treatment: int, alpha: float
) -> float:
    """The coverage of the true relative effect that a fair-coin split of these listeners gives a
    Welch (Neyman) interval, predicted from both potential outcomes of every listener.

    Over re-randomisations of fixed listeners, the difference of means has variance
    S_c^2 / n_c + S_t^2 / n_t - S_tau^2 / N (Neyman 1923; Imbens & Rubin 2015, ch. 6), where
    S_tau^2 is the variance of the listeners' individual effects; the usual estimate has
    expectation S_c^2 / n_c + S_t^2 / n_t, too large by the last term, which no experiment can
    estimate (it needs both outcomes of one listener). The interval then covers with
    probability 2 Phi(z sqrt(V_Neyman / V_true)) - 1 > 1 - alpha. The relative effect is
    linearised by the delta method (ratios of sums through `cuped.linearise`), with n_c = n_t = N/2.
    """
    numer, denom = cuped.metric_columns(metric)
    ratio_c, lin_c = cuped.linearise(outcomes[control][numer], None if denom is None else outcomes[control][denom])
    ratio_t, lin_t = cuped.linearise(outcomes[treatment][numer], None if denom is None else outcomes[treatment][denom])
    # r_hat - r ~ mean_T(lin_t) / R_c - R_t mean_C(lin_c) / R_c^2
    a_t, a_c = lin_t / ratio_c, ratio_t * lin_c / ratio_c**2
    n = len(a_t)
    neyman = 2.0 * (np.var(a_t, ddof=1) + np.var(a_c, ddof=1)) / n
    true = neyman - np.var(a_t - a_c, ddof=1) / n
    if true <= 0:
        return 1.0
    return float(2.0 * ndtr(ndtri(1 - alpha / 2) * np.sqrt(neyman / true)) - 1.0)


def daily_boundaries(values: np.ndarray, seen: np.ndarray, alpha: float) -> np.ndarray:
    """O'Brien-Fleming-type spending boundaries of daily looks at users x days cumulative `values`.

    The information of look k is n_k var_k (users seen times the variance of their values), the
    variance of a difference of arm sums under an even split up to a constant: `abtest.monitor`'s
    n^2 se^2 before any split. Where it does not grow, fractions fall back to k/K.
    """
    looks = values.shape[1]
    info = np.array([seen[:, d].sum() * values[seen[:, d], d].var(ddof=1) if seen[:, d].sum() > 1 else 0.0 for d in range(looks)])
    if info[0] > 0 and np.all(np.diff(info) > 0):
        return groupseq.spending_boundaries(info, alpha, "obf")
    return groupseq.spending_boundaries(np.arange(1.0, looks + 1), alpha, "obf")


def peeking_check(daily: np.ndarray, *, runs: int, seed: int, alpha: float) -> PeekingCheck:
    """A/A false-positive rates of the naive daily test, the confidence sequence and the
    O'Brien-Fleming-type group-sequential test (see the module docstring).

    At each look only listeners seen by then count; the sequence is tuned to be tightest at the
    last look's number of listeners, and the group-sequential boundaries are those of one
    planned look a day with information fractions measured as `abtest monitor --method obf`
    measures them (`daily_boundaries`).
    """
    rng = np.random.default_rng(seed + 1)
    z_crit = float(ndtri(1 - alpha / 2))
    n_users, looks = daily.shape
    seen = np.isfinite(daily)
    values = np.nan_to_num(daily)
    n_final = int(seen[:, -1].sum())
    naive = once = sequential_hits = obf_hits = 0
    boundaries = daily_boundaries(values, seen, alpha)
    for _ in range(runs):
        coin = rng.random(n_users) < 0.5
        rejected_naive = rejected_seq = rejected_obf = False
        for day in range(looks):
            a, b = seen[:, day] & ~coin, seen[:, day] & coin
            if a.sum() < 2 or b.sum() < 2:
                continue
            control = stats.Estimate(values[a, day].mean(), values[a, day].var(ddof=1) / a.sum(), a.sum() - 1)
            treatment = stats.Estimate(values[b, day].mean(), values[b, day].var(ddof=1) / b.sum(), b.sum() - 1)
            diff, _, _, _, _, p = stats.welch(control, treatment, alpha)
            rejected_naive |= bool(p < alpha)
            if day == looks - 1:
                once += bool(p < alpha)
            se = float(np.sqrt(control.variance + treatment.variance))
            lower, upper = sequential.confidence_sequence(float(diff), se, a.sum() + b.sum(), n_final, alpha)
            rejected_seq |= not float(lower) <= 0.0 <= float(upper)
            rejected_obf |= se > 0 and abs(float(diff)) >= boundaries[day] * se
        naive += rejected_naive
        sequential_hits += rejected_seq
        obf_hits += bool(rejected_obf)
    del z_crit
    naive_ci = stats.proportion_interval(naive, runs, alpha)
    seq_ci = stats.proportion_interval(sequential_hits, runs, alpha)
    obf_ci = stats.proportion_interval(obf_hits, runs, alpha)
    return PeekingCheck(
        looks, runs, naive / runs, *naive_ci, once / runs, sequential_hits / runs, *seq_ci, obf_hits / runs, *obf_ci
    )

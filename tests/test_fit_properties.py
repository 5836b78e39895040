"""Property-based: whatever points arrive, the fit answers sanely or refuses clearly."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scalingstudy.fitting import FitError, FitOptions, Point, fit_points

finite_positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
anything = st.one_of(
    finite_positive,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e-300, 1e300]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(anything, anything, st.one_of(st.none(), anything)), max_size=12))
# Found by this test: a slope of 512 overflowed the R^2 of the log fit to -inf, and one
# of 918 has an intercept beyond floating point (now a FitError that says so).
@example(rows=[(2.0, 1.0, None), (3.0, 1.0, None), (4.0, 8.996683824024983e164, None)])
@example(rows=[(2.0, 1.0, None), (3.0, 1.0, None), (4.0, 4.159743650713982e295, None)])
def test_any_input_gives_a_report_or_a_fit_error(
    rows: list[tuple[float, float, float | None]],
) -> None:
    points = [Point(d, loss, model) for d, loss, model in rows]
    try:
        report = fit_points(points, FitOptions(bootstrap=5))
    except FitError as exc:
        assert str(exc)
        return
    lc = report.learning_curve
    # A falling curve has a negative exponent; one that does not fall says so and reports
    # its plain log-log slope (0 or positive), never an exponent pinned at a bound.
    assert lc.beta < 0 or any("does not fall" in w for w in report.warnings)
    assert lc.alpha >= 0 and lc.gamma >= 0
    assert all(math.isfinite(getattr(lc, k)) for k in ("alpha", "beta", "gamma", "r2_log"))
    assert isinstance(report.warnings, list)


@settings(max_examples=60, deadline=None)
@given(
    beta=st.floats(min_value=-1.5, max_value=-0.05),
    alpha=st.floats(min_value=0.01, max_value=100),
    start=st.floats(min_value=1, max_value=1e6),
    n=st.integers(min_value=4, max_value=12),
)
def test_exact_power_laws_are_recovered(beta: float, alpha: float, start: float, n: int) -> None:
    m = start * 2.0 ** np.arange(n)
    points = [Point(float(x), float(alpha * x**beta)) for x in m]
    lc = fit_points(points, FitOptions(form="power-law", bootstrap=0)).learning_curve
    assert abs(lc.beta - beta) < 1e-3
    assert lc.n_points == n


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.01, max_value=10), min_size=3, max_size=10),
    st.floats(min_value=1.01, max_value=4),
)
def test_predictions_lie_within_their_intervals(losses: list[float], factor: float) -> None:
    m = [100 * factor**i for i in range(len(losses))]
    points = [Point(x, y) for x, y in zip(m, sorted(losses, reverse=True), strict=True)]
    report = fit_points(points, FitOptions(bootstrap=30, predict_at=(m[-1] * 10,)))
    for pred in report.predictions:
        assert math.isfinite(pred.loss) and pred.loss > 0
        if pred.interval:
            lo, hi = pred.interval  # an end the data do not bound is None (unbounded)
            assert (lo is None or lo <= pred.loss) and (hi is None or pred.loss <= hi)

"""Learning-rate schedules: the values the optimizer sees at each step."""

from __future__ import annotations

import numpy as np
import pytest

from xtune.training.schedules import SCHEDULES

PEAK, TOTAL, WARMUP = 2.0, 20, 4


def values(name: str, total: int = TOTAL, **kwargs) -> np.ndarray:
    schedule = SCHEDULES.build({"name": name, **kwargs})(PEAK, total)
    if isinstance(schedule, float):
        return np.full(total, schedule)
    return np.array([float(schedule(step)) for step in range(total)])


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_warmup_rises_linearly_to_the_peak_at_its_last_step(name):
    rates = values(name, warmup_steps=WARMUP)
    np.testing.assert_allclose(rates[:WARMUP], PEAK * np.arange(1, WARMUP + 1) / WARMUP, rtol=1e-6)
    assert rates[WARMUP] == pytest.approx(PEAK)  # the decay starts from the peak
    assert rates.max() == pytest.approx(PEAK)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_warmup_ratio_counts_a_share_of_all_steps(name):
    np.testing.assert_allclose(
        values(name, warmup_ratio=0.2), values(name, warmup_steps=4), rtol=1e-6
    )


def test_constant_stays_at_the_peak_after_warmup():
    np.testing.assert_allclose(values("constant", warmup_steps=WARMUP)[WARMUP:], PEAK, rtol=1e-6)
    np.testing.assert_allclose(values("constant"), PEAK)


def test_linear_decays_in_equal_steps_to_the_final_rate_at_the_last_step():
    rates = values("linear", warmup_steps=WARMUP, final_ratio=0.1)
    decay = rates[WARMUP:]
    assert decay[-1] == pytest.approx(0.1 * PEAK)
    np.testing.assert_allclose(np.diff(decay), (0.1 * PEAK - PEAK) / (len(decay) - 1), rtol=1e-5)


def test_linear_without_warmup_starts_at_the_peak_and_ends_at_zero():
    rates = values("linear")
    assert rates[0] == pytest.approx(PEAK)
    assert rates[-1] == pytest.approx(0.0, abs=1e-7)
    assert np.all(np.diff(rates) < 0)


def test_cosine_follows_half_a_cosine_to_the_final_rate():
    rates = values("cosine", total=WARMUP + 11, warmup_steps=WARMUP, final_ratio=0.1)
    decay = rates[WARMUP:]
    final = 0.1 * PEAK
    expected = final + (PEAK - final) * 0.5 * (1 + np.cos(np.pi * np.arange(11) / 10))
    np.testing.assert_allclose(decay, expected, rtol=1e-5)
    assert decay[5] == pytest.approx((PEAK + final) / 2)


def test_warmup_steps_and_ratio_together_are_an_error():
    with pytest.raises(ValueError, match="warmup_steps or warmup_ratio, not both"):
        values("linear", warmup_steps=2, warmup_ratio=0.1)

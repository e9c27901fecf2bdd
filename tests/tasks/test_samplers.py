"""Task samplers: frequencies against their formulas, deterministic orders, argument errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xtune.registry import RegistryError
from xtune.tasks import SAMPLERS, get_sampler

SIZES = [8544, 6040, 500]  # SST-5, STS, and a small task: the formulas differ clearly here
STEPS_BATCHES = [90000, 70000, 40000]  # 200k steps per epoch for the frequency checks
TOLERANCE = 0.005  # > 4.5 standard deviations of a frequency over 200k draws


def frequencies(name: str | dict, epoch: int = 0, epochs: int = 1) -> np.ndarray:
    schedule = get_sampler(name).schedule(
        STEPS_BATCHES, epoch, epochs, np.random.default_rng(0), sizes=SIZES
    )
    assert len(schedule) == sum(STEPS_BATCHES)
    return np.bincount(schedule, minlength=len(SIZES)) / len(schedule)


def power(alpha: float) -> np.ndarray:
    weights = np.array(SIZES, dtype=np.float64) ** alpha
    return weights / weights.sum()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("uniform", np.full(3, 1 / 3)),
        ("proportional", np.array(SIZES) / sum(SIZES)),
        ({"name": "temperature"}, power(0.5)),
        ({"name": "temperature", "temperature": 4}, power(0.25)),
        ({"name": "temperature", "temperature": 1}, np.array(SIZES) / sum(SIZES)),
    ],
)
def test_random_sampler_frequencies_match_formula(spec, expected):
    sampler = get_sampler(spec)
    np.testing.assert_allclose(sampler.probabilities(SIZES, 0, 1), expected, rtol=1e-12)
    np.testing.assert_allclose(frequencies(spec), expected, atol=TOLERANCE)


def test_temperature_docstring_example():
    probabilities = get_sampler("temperature").probabilities([8544, 6040], 0, 1)
    np.testing.assert_allclose(probabilities, [0.543, 0.457], atol=5e-4)


@pytest.mark.parametrize(("epoch", "alpha"), [(0, 1.0), (2, 0.6), (4, 0.2)])
def test_annealed_first_middle_last_epoch(epoch, alpha):
    # Stickland & Murray: alpha = 1 - 0.8 (e - 1) / (E - 1), e = epoch + 1, E = 5.
    sampler = get_sampler("annealed")
    np.testing.assert_allclose(sampler.probabilities(SIZES, epoch, 5), power(alpha), rtol=1e-12)
    np.testing.assert_allclose(frequencies("annealed", epoch, 5), power(alpha), atol=TOLERANCE)


def test_annealed_single_epoch_is_proportional():
    probabilities = get_sampler("annealed").probabilities(SIZES, 0, 1)
    np.testing.assert_allclose(probabilities, np.array(SIZES) / sum(SIZES), rtol=1e-12)


@pytest.mark.parametrize(("epoch", "alpha"), [(0, 0.25), (1, 0.5), (3, 1.0), (5, 1.0)])
def test_uniform_to_proportional(epoch, alpha):
    # alpha = min(1, e / T), e = epoch + 1, T = 4: uniform toward proportional over 4 epochs.
    spec = {"name": "uniform_to_proportional", "epochs_to_proportional": 4}
    sampler = get_sampler(spec)
    np.testing.assert_allclose(sampler.probabilities(SIZES, epoch, 6), power(alpha), rtol=1e-12)
    np.testing.assert_allclose(frequencies(spec, epoch, 6), power(alpha), atol=TOLERANCE)


def test_the_frequency_check_can_fail():
    # Proportional and uniform differ by far more than the tolerance on these sizes.
    assert np.abs(frequencies("proportional") - frequencies("uniform")).max() > 10 * TOLERANCE


def test_random_schedule_is_reproducible_and_sizes_default_to_batches():
    sampler = get_sampler("proportional")
    first = sampler.schedule([30, 10], 0, 1, np.random.default_rng(7))
    second = sampler.schedule([30, 10], 0, 1, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(sampler.probabilities([30, 10], 0, 1), [0.75, 0.25])


def test_sequential_default_and_configured_order():
    rng = np.random.default_rng(0)
    default = get_sampler("sequential").schedule([3, 2, 1], 0, 1, rng)
    np.testing.assert_array_equal(default, [0, 0, 0, 1, 1, 2])
    ordered = get_sampler({"name": "sequential", "order": [2, 0, 1]}).schedule([3, 2, 1], 0, 1, rng)
    np.testing.assert_array_equal(ordered, [2, 0, 0, 0, 1, 1])


def test_round_robin_interleaves_and_skips_exhausted_tasks():
    schedule = get_sampler("round_robin").schedule([3, 1, 2], 0, 1, np.random.default_rng(0))
    np.testing.assert_array_equal(schedule, [0, 1, 2, 0, 2, 0])


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_fills_one_epoch(name):
    batches = [5, 1, 12, 3]
    sampler = get_sampler(name)
    schedule = sampler.schedule(batches, 1, 3, np.random.default_rng(1))
    assert len(schedule) == sum(batches)
    assert schedule.dtype.kind == "i" and schedule.min() >= 0 and schedule.max() < len(batches)
    if not sampler.draws_at_random:  # each task's data exactly once
        np.testing.assert_array_equal(np.bincount(schedule, minlength=4), batches)
    probabilities = sampler.probabilities(batches, 1, 3)
    assert probabilities.shape == (4,) and abs(probabilities.sum() - 1) < 1e-12
    assert get_sampler(sampler.get_config()).get_config() == sampler.get_config()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "temperature", "temperature": 0}, "temperature: expected a number > 0, got 0"),
        ({"name": "temperature", "temperature": -1.5}, "temperature: expected a number > 0"),
        (
            {"name": "uniform_to_proportional", "epochs_to_proportional": 0.5},
            "epochs_to_proportional: expected a number >= 1, got 0.5",
        ),
        ({"name": "sequential", "order": [0, 0]}, "order: [0, 0] repeats a task"),
        ({"name": "sequential", "order": [0, -1]}, "order: expected an integer >= 0, got -1"),
        ({"name": "sequential", "order": "01"}, "order: expected a non-empty list"),
        ({"name": "sequential", "order": []}, "order: expected a non-empty list"),
    ],
)
def test_bad_arguments_raise_clear_errors(spec, message):
    arguments = {key: value for key, value in spec.items() if key != "name"}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        SAMPLERS.check(spec["name"], arguments)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        get_sampler(spec)


def test_order_must_name_every_task_once():
    sampler = get_sampler({"name": "sequential", "order": [1, 0]})
    with pytest.raises(ValueError, match=r"order: \[1, 0\] must list each of the 3 tasks"):
        sampler.schedule([1, 1, 1], 0, 1, np.random.default_rng(0))


def test_bad_schedule_inputs():
    sampler = get_sampler("proportional")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="batches: every task needs at least 1"):
        sampler.schedule([3, 0], 0, 1, rng)
    with pytest.raises(ValueError, match="epoch: expected an integer in \\[0, 1\\], got 2"):
        sampler.schedule([3, 1], 2, 2, rng)
    with pytest.raises(ValueError, match="sizes: 3 tasks, but batches has 2"):
        sampler.schedule([3, 1], 0, 1, rng, sizes=[1, 2, 3])
    with pytest.raises(RegistryError, match="unknown task sampler 'random'"):
        get_sampler("random")

"""The batching bench's summary of its rounds: medians, figure by figure."""

from __future__ import annotations

from tests.bench.batching import _medians


def test_each_figure_is_the_median_of_its_rounds_and_dicts_figure_by_figure() -> None:
    rounds = [
        {"tps": 100.0, "batches": 64, "ratio": 2.9, "cpu_s": {"worker": 11.0, "postgres": 1.2}},
        {"tps": 130.0, "batches": 63, "ratio": 3.3, "cpu_s": {"worker": 9.0, "postgres": 1.4}},
        {"tps": 120.0, "batches": 65, "ratio": 3.1, "cpu_s": {"worker": 12.0, "postgres": 0.9}},
    ]
    assert _medians(rounds) == {
        "tps": 120.0,
        "batches": 64,
        "ratio": 3.1,  # the rounds' own ratios, not a ratio of medians
        "cpu_s": {"worker": 11.0, "postgres": 1.2},
    }


def test_an_even_number_of_rounds_meets_in_the_middle() -> None:
    assert _medians([{"tps": 100.0, "n": 1}, {"tps": 111.0, "n": 2}]) == {"tps": 105.5, "n": 1.5}

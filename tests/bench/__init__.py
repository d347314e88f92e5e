"""Benchmarks (``make bench``): every part runs in one process tree, in one run, and their
figures land in one JSON file. Speed is measured here, never in timed unit tests.

A part is a module with ``NAME`` and ``run(ctx: BenchContext) -> dict[str, float | int | str]``,
listed in ``tests/bench/__main__.py``. Compare ratios measured in the same run: the machine
is shared and noisy.
"""

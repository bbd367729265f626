"""Performance benchmarks of mixrepro: ``python -m benchmarks.run --out results/bench``.

Every figure is a *ratio* of two variants timed in the same process, interleaved round by round,
so load from other processes on a shared machine hits both alike; medians over the rounds are
reported with their inter-quartile range. See :mod:`benchmarks.run` for the sections.
"""

"""Side-by-side measurement shared by the benchmarks.

Every bench measures two or more sides on the same machine in one run. To keep drift off
the result: one warm-up round is run and discarded (printed, marked), the sides alternate
their order round by round (A B, B A, A B, ...), every sample is printed, and a headline is
the median of the per-round ratios (both sides of a ratio come from the same round).
Headlines are appended to the file named by PGFLEET_BENCH_SUMMARY, which `make bench`
prints as one table at the end (bench/summary.py).
"""

from __future__ import annotations

import json
import os
import statistics


def alternate(sides, rounds, measure):
    """{side: [sample, ...]}: ROUNDS measured rounds after one warm-up round.

    MEASURE(side) returns a sample, a dict of metric name -> number. Even rounds run SIDES
    in their order, odd rounds reversed.
    """
    sides = list(sides)
    samples = {side: [] for side in sides}
    for number in range(rounds + 1):
        order = sides if number % 2 == 0 else sides[::-1]
        for side in order:
            sample = measure(side)
            label = "warm-up (discarded)" if number == 0 else "round %d" % number
            print("  %-20s %-24s %s" % (label, side, ", ".join("%s %s" % (k, _fmt(v)) for k, v in sample.items())),
                  flush=True)
            if number:
                samples[side].append(sample)
    return samples


def _fmt(value):
    return "%.3f" % value if abs(value) < 10 else "{:,.1f}".format(value)


def median(samples, metric):
    return statistics.median(s[metric] for s in samples)


def round_ratios(samples, side, base, metric):
    """SIDE's metric over BASE's, per round."""
    return [a[metric] / b[metric] for a, b in zip(samples[side], samples[base])]


def headline(bench, what, ratios, goal=None):
    """Print and record the median of RATIOS (per-round ratios) as BENCH's figure for WHAT."""
    value = statistics.median(ratios)
    print("%s: %s = %.2f (median of %d rounds: %s)%s" % (
        bench, what, value, len(ratios), ", ".join("%.2f" % r for r in ratios), "; goal " + goal if goal else ""),
        flush=True)
    path = os.environ.get("PGFLEET_BENCH_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(bench=bench, what=what, ratio=round(value, 3), rounds=len(ratios),
                                    low=round(min(ratios), 3), high=round(max(ratios), 3), goal=goal)) + "\n")
    return value

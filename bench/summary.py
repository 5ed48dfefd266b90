#!/usr/bin/env python3
"""The table `make bench` ends with: every headline ratio the benches recorded in one run."""

import json
import sys


def main(path):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        print("no benchmark recorded a headline")
        return 1
    width = max(len(r["bench"]) + len(r["what"]) + 2 for r in rows)
    print("\n%-*s %7s %15s  %s" % (width, "benchmark: ratio", "median", "range (rounds)", "goal"))
    for r in rows:
        print("%-*s %7.2f %15s  %s" % (width, r["bench"] + ": " + r["what"], r["ratio"],
                                       "%.2f-%.2f (%d)" % (r["low"], r["high"], r["rounds"]), r["goal"] or ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

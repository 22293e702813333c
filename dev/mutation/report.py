#!/usr/bin/env python
"""Summarize a mutmut 2 run (its ``.mutmut-cache`` in the working directory) as markdown: per
file, mutants killed / survived / timed out (skipped ones are outside the target functions), the
score killed / (killed + survived + timed out), and the diff of every surviving mutant."""

import argparse
import collections
import sqlite3
import subprocess

KILLED = ("ok_killed", "ok_suspicious")  # suspicious: killed, but slowly
SURVIVED = ("bad_survived",)
TIMEOUT = ("bad_timeout",)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutmut", required=True, help="the mutmut executable (for `mutmut show`)")
    parser.add_argument("--cache", default=".mutmut-cache")
    parser.add_argument("--output", required=True)
    parser.add_argument("--results", help="unused; kept for the log")
    args = parser.parse_args(argv)
    rows = (
        sqlite3.connect(args.cache)
        .execute(
            "SELECT Mutant.id, Mutant.status, SourceFile.filename, Line.line_number, Line.line FROM Mutant "
            "JOIN Line ON Mutant.line = Line.id JOIN SourceFile ON Line.sourcefile = SourceFile.id ORDER BY Mutant.id"
        )
        .fetchall()
    )
    per_file = collections.defaultdict(collections.Counter)
    survivors = []
    for mutant_id, status, filename, line_number, line in rows:
        kind = (
            "killed"
            if status in KILLED
            else "survived"
            if status in SURVIVED
            else "timeout"
            if status in TIMEOUT
            else status
        )
        per_file[filename][kind] += 1
        if kind == "survived":
            survivors.append((mutant_id, filename, line_number + 1))
    total = collections.Counter()
    lines = ["| file | killed | survived | timed out | score |", "|---|---|---|---|---|"]
    for filename, counts in sorted(per_file.items()):
        total.update(counts)
        lines.append(_row(filename, counts))
    lines.append(_row("**all**", total))
    lines += ["", f"Survivors ({len(survivors)}):", ""]
    for mutant_id, filename, line_number in survivors:
        diff = subprocess.run([args.mutmut, "show", str(mutant_id)], capture_output=True, text=True).stdout
        lines += [f"### mutant {mutant_id}: {filename}:{line_number}", "", "```diff", diff.strip(), "```", ""]
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")


def _row(name, counts):
    tested = counts["killed"] + counts["survived"] + counts["timeout"]
    score = f"{100.0 * counts['killed'] / tested:.1f}%" if tested else "-"
    return f"| {name} | {counts['killed']} | {counts['survived']} | {counts['timeout']} | {score} |"


if __name__ == "__main__":
    main()

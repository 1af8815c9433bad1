"""The markdown of ``lungai compare``: one row per method, the paired tests, and which method won."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lungai.evaluation.report import markdown_table

_COLUMNS = (("Dice mean", "dice"), ("Dice median", "dice_median"), ("Dice < 10 mm", "dice_lt10mm"),
            ("Dice >= 10 mm", "dice_ge10mm"), ("precision", "precision"), ("recall", "recall"),
            ("s / case", "seconds_per_case"), ("peak MB", "peak_rss_mb"))


def _cell(value: Any) -> Any:
    return "n/a" if value is None else value


def _verdict(test: Mapping[str, Any], alpha: float) -> str:
    if test["p_value"] is None:
        return f"{test['other']} and {test['reference']} give the same Dice on every case."
    better = test["other"] if test["mean_difference"] > 0 else test["reference"]
    significance = "significant" if test["p_value"] < alpha else "not significant"
    return (f"Higher mean Dice: **{better}** ({test['other']} - {test['reference']} = "
            f"{test['mean_difference']:+.3f} mean, {test['median_difference']:+.3f} median; Wilcoxon "
            f"p = {test['p_value']:.3g}, n = {test['n']}, {significance} at {alpha}).")


def compare_markdown(results: Mapping[str, Any]) -> str:
    """The comparison as markdown (a table, the paired tests, the verdicts)."""
    rows = [[m["name"], *(_cell(m[key]) for _, key in _COLUMNS)] for m in results["methods"]]
    lines = [f"Nodule segmentation, {results['split']} split: {results['n_cases']} nodules "
             f"({results['n_lt10mm']} below 10 mm), the same cases for every method.", "",
             markdown_table(rows, ["method", *(title for title, _ in _COLUMNS)]), ""]
    if results["paired_tests"]:
        test_rows = [[t["other"], t["reference"], t["mean_difference"], t["median_difference"],
                      _cell(t["statistic"]), _cell(t["p_value"])] for t in results["paired_tests"]]
        lines += ["Paired two-sided Wilcoxon signed-rank tests of per-case Dice:", "",
                  markdown_table(test_rows, ["method", "vs", "mean diff", "median diff", "W", "p"]), ""]
        lines += [_verdict(t, results["alpha"]) for t in results["paired_tests"]]
        lines.append("")
    lines.append("s / case: wall time of the whole prediction run (start-up and model loading included) / cases; "
                 "peak MB: peak resident memory of that run.")
    return "\n".join(lines) + "\n"

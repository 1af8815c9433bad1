"""Run ``lungai follow-up`` on the simulated pairs of one split, then score the results.

For each pair of ``PAIRS/pairs.csv`` (from ``lungai data simulate-follow-up``) in ``--split``,
``lungai follow-up PRIOR CURRENT -o RESULTS/<pair_id> --prior-date D1 --current-date D2`` runs
as its own process (dates from ``pairs.csv``); a pair whose ``RESULTS/<pair_id>/follow_up.json``
exists is skipped, so an interrupted run resumes. Each pair's wall time and exit code go to
``RESULTS/timings.csv`` (appended). Then the evaluator
(:func:`lungai.evaluation.follow_up_eval.evaluate_follow_up`, the same as
``lungai evaluate follow-up``) writes ``--eval`` and prints each acceptance target.

Usage::

    python benchmarks/follow_up_pairs.py --pairs runs/follow_up_pairs --results runs/follow_up_results \
        [--split test] [--eval RESULTS/evaluation_<split>.json] [--lungai .venv/bin/lungai] \
        [--timeout 1800] [--extra-args "--device cpu"] [--only PAIR_ID ...] [--reuse EARLIER_RESULTS]
"""

from __future__ import annotations

import argparse
import csv
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("follow_up_pairs")

REPO = Path(__file__).resolve().parents[1]
RESULT_FILE = "follow_up.json"
TIMINGS = "timings.csv"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--eval`` defaults to ``RESULTS/evaluation_<split>.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="pairs folder (pairs.csv)")
    parser.add_argument("--results", type=Path, required=True, help="folder for RESULTS/<pair_id>/")
    parser.add_argument("--split", choices=("test", "tune", "all"), default="test")
    parser.add_argument("--eval", type=Path, default=None, help="evaluation JSON to write")
    parser.add_argument("--lungai", type=Path, default=Path(sys.executable).with_name("lungai"),
                        help="the lungai executable (default: beside this Python)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per pair before it is stopped")
    parser.add_argument("--extra-args", default="", help="more arguments for lungai follow-up (one string)")
    parser.add_argument("--reuse", type=Path, default=None, metavar="EARLIER_RESULTS",
                        help="give each pair's EARLIER_RESULTS/<pair_id>/prior and /current output folders instead "
                             "of the scans (the scans are not analysed again: for re-scoring a change of the "
                             "follow-up steps)")
    parser.add_argument("--only", action="append", default=[], metavar="PAIR_ID",
                        help="run only this pair (repeat); the evaluation still scores the whole split")
    args = parser.parse_args(argv)
    if not (args.pairs / "pairs.csv").is_file():
        parser.error(f"{args.pairs} has no pairs.csv: make it with `lungai data simulate-follow-up`")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    unknown = set(args.only) - {row["pair_id"] for row in pair_rows(args.pairs, args.split)}
    if unknown:
        parser.error(f"no {args.split} pair named {', '.join(sorted(unknown))} in {args.pairs / 'pairs.csv'}")
    if args.eval is None:
        args.eval = args.results / f"evaluation_{args.split}.json"
    return args


def pair_rows(pairs: Path, split: str) -> list[dict[str, str]]:
    """The ``pairs.csv`` rows of ``split`` (``all``: every row)."""
    with (pairs / "pairs.csv").open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if split == "all" or row["split"] == split]


def follow_up_command(lungai: Path, pairs: Path, row: dict[str, str], out: Path, extra: str = "",
                      reuse: Path | None = None) -> list[str]:
    """The ``lungai follow-up`` command line of one pair (``reuse``: an earlier results folder whose
    ``<pair_id>/prior`` and ``<pair_id>/current`` output folders stand in for the scans)."""
    prior, current = ((pairs / row["prior"], pairs / row["current"]) if reuse is None
                      else (reuse / row["pair_id"] / "prior", reuse / row["pair_id"] / "current"))
    return [str(lungai), "follow-up", str(prior), str(current), "-o", str(out),
            "--prior-date", row["prior_date"], "--current-date", row["current_date"], *shlex.split(extra)]


def is_done(out: Path) -> bool:
    """Whether a pair already has its results (``lungai follow-up`` writes its folder all or nothing)."""
    return (out / RESULT_FILE).is_file()


def run_pair(command: list[str], timeout: float) -> tuple[int, float]:
    """Run one follow-up; its exit code (124 on timeout, 127 when the executable cannot run) and wall time (s)."""
    start = time.perf_counter()
    try:
        code = subprocess.run(command, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        code = 124
    except OSError as exc:
        logger.error("cannot run %s: %s", command[0], exc)
        code = 127
    return code, time.perf_counter() - start


def _log_timing(results: Path, pair_id: str, code: int, seconds: float) -> None:
    path = results / TIMINGS
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if new:
            writer.writerow(("pair_id", "exit_code", "wall_s"))
        writer.writerow((pair_id, code, f"{seconds:.1f}"))


def run_pairs(args: argparse.Namespace) -> list[str]:
    """Run every pair not done yet; the ids of those that failed."""
    args.results.mkdir(parents=True, exist_ok=True)
    failed = []
    for row in pair_rows(args.pairs, args.split):
        if args.only and row["pair_id"] not in args.only:
            continue
        out = args.results / row["pair_id"]
        if is_done(out):
            logger.info("%s: done already", row["pair_id"])
            continue
        command = follow_up_command(args.lungai, args.pairs, row, out, args.extra_args, args.reuse)
        code, seconds = run_pair(command, args.timeout)
        _log_timing(args.results, row["pair_id"], code, seconds)
        logger.info("%s: exit %d in %.1f s", row["pair_id"], code, seconds)
        if code != 0:
            failed.append(row["pair_id"])
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pairs, score them, print the targets; 0 when every pair ran."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    failed = run_pairs(args)
    from lungai.evaluation.follow_up_eval import evaluate_follow_up

    report = evaluate_follow_up(args.pairs, args.results, args.eval, args.split)
    for target in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[target["passed"]]
        logger.info("%-4s  %s: %s (target %s %g)", verdict, target["description"], target["value"], target["op"],
                    target["limit"])
    if failed:
        logger.error("follow-up failed on %d pair(s): %s", len(failed), ", ".join(failed))
    logger.info("wrote %s", args.eval)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

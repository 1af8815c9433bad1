"""``cohort.html``: a one-page summary of a batch, beside ``cohort.csv`` and made from its rows.

Like ``report.html`` (:mod:`lungai.io.report_html`) the page needs nothing but a browser: the
CSS is inline, every plot is a PNG data URI and there is no JavaScript, so it opens offline and
can be mailed or archived as one file. From the top:

- a header: LungAI version, cases done, failed, skipped (kept from an earlier run) and pending,
  start and end of the batch (the data of ``batch.json``);
- histograms over the done cases of total lung volume, LAA-950 and nodule count, each only
  when some case has the value (a sentence otherwise);
- the slowest cases (case id, seconds, worker);
- the failed cases (case id, exit code, message).

Plots are drawn with matplotlib's Agg canvas on a :class:`~matplotlib.figure.Figure` of their
own, without pyplot, so writing the page changes no process-wide matplotlib state.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungai.io.report_html import html_page

logger = logging.getLogger(__name__)

#: Rows of the slowest-cases table.
SLOWEST_COUNT = 10


@dataclass(frozen=True)
class _Histogram:
    """A histogram of one ``cohort.csv`` column over the done cases."""

    column: str
    title: str
    axis_label: str
    integer: bool = False


_HISTOGRAMS: tuple[_Histogram, ...] = (
    _Histogram("lung_volume_total_ml", "Total lung volume", "total lung volume (ml)"),
    _Histogram("laa_950_percent", "LAA-950", "LAA-950 (% of lung voxels below -950 HU)"),
    _Histogram("nodule_count", "Nodule count", "nodules per case", integer=True),
)


def write_cohort_html(path: Path, rows: Sequence[dict[str, Any]], batch: dict[str, Any] | None = None) -> None:
    """Write ``cohort.html`` atomically (a temporary file, then a rename).

    Args:
        path: the page's file, beside ``cohort.csv``.
        rows: the rows of ``cohort.csv`` (one per case; ``None`` for a missing value).
        batch: the data of ``batch.json`` (``lungai_version``, ``started_utc``, ``finished_utc``,
            ``counts``), plus ``skipped``: the cases kept from an earlier run. ``None``: unknown.
    """
    page = cohort_page(rows, batch or {})
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(page, encoding="utf-8")
    os.replace(staging, path)
    logger.debug("wrote %s (%d cases)", path, len(rows))


def cohort_page(rows: Sequence[dict[str, Any]], batch: dict[str, Any]) -> str:
    """The HTML of ``cohort.html`` for ``rows`` of ``cohort.csv`` and the data of ``batch.json``."""
    done = [row for row in rows if row.get("status") == "done"]
    failed = [row for row in rows if row.get("status") != "done"]
    body = "\n".join([_header(rows, done, failed, batch),
                      *(_histogram_section(spec, done) for spec in _HISTOGRAMS),
                      _slowest_section(rows), _failed_section(failed)])
    return html_page("LungAI cohort summary", _CSS, body)


def _header(rows: Sequence[dict[str, Any]], done: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]],
            batch: dict[str, Any]) -> str:
    """The title and a table of the version, the counts of cases by status, and start and end."""
    total = (batch.get("counts") or {}).get("total", len(rows))
    skipped = batch.get("skipped")
    items = [("LungAI version", _text(batch.get("lungai_version"), "unknown")),
             ("Cases", str(total)),
             ("Done", str(len(done))),
             ("Failed", str(len(failed))),
             ("Skipped (kept from an earlier run)", _text(skipped, "unknown")),
             ("Pending", str(max(total - len(rows), 0))),
             ("Started", _text(batch.get("started_utc"), "unknown")),
             ("Finished", _text(batch.get("finished_utc"), "not yet"))]
    table = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in items)
    return f"<header><h1>LungAI cohort summary</h1><table class=\"meta\" id=\"counts\">{table}</table></header>"


def _histogram_section(spec: _Histogram, done: Sequence[dict[str, Any]]) -> str:
    """A histogram of ``spec.column`` over the done cases, or a sentence when none has a value."""
    values = [number for number in (_number(row.get(spec.column)) for row in done) if number is not None]
    section_id = spec.column.replace("_", "-")
    if not values:
        return (f"<section id=\"{section_id}\"><h2>{html.escape(spec.title)}</h2>"
                f"<p class=\"note\">No done case has a value for {html.escape(spec.title.lower())}.</p></section>")
    alt = f"Histogram of {spec.axis_label} over {len(values)} done cases"
    image = (f"<img src=\"data:image/png;base64,{_histogram_png(values, spec)}\" alt=\"{html.escape(alt)}\">")
    summary = (f"{len(values)} cases; median {_format(_median(values))}, "
               f"range {_format(min(values))} to {_format(max(values))}")
    return (f"<section id=\"{section_id}\"><h2>{html.escape(spec.title)}</h2><figure>{image}"
            f"<figcaption>{html.escape(summary)}</figcaption></figure></section>")


def _histogram_png(values: Sequence[float], spec: _Histogram) -> str:
    """A histogram of ``values`` as base64-encoded PNG, drawn on matplotlib's Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.0, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.hist(values, bins=_bins(values, spec.integer), color="#4a78a8", edgecolor="white")
    axes.set_xlabel(spec.axis_label)
    axes.set_ylabel("cases")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    if spec.integer:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bins(values: Sequence[float], integer: bool) -> Any:
    """Histogram bins: one per whole number for counts, else matplotlib's automatic ones."""
    if not integer:
        return "auto"
    low, high = math.floor(min(values)), math.ceil(max(values))
    return [edge - 0.5 for edge in range(low, high + 2)]


def _slowest_section(rows: Sequence[dict[str, Any]]) -> str:
    """The :data:`SLOWEST_COUNT` cases that took longest, slowest first."""
    timed = [row for row in rows if _number(row.get("seconds")) is not None]
    slowest = sorted(timed, key=lambda row: (-(_number(row["seconds"]) or 0.0), str(row.get("case_id"))))
    table_rows = [(str(row.get("case_id")), _format(_number(row["seconds"])), _text(row.get("worker"), ""))
                  for row in slowest[:SLOWEST_COUNT]]
    if not table_rows:
        return "<section id=\"slowest\"><h2>Slowest cases</h2><p class=\"note\">No case has a time yet.</p></section>"
    return ("<section id=\"slowest\"><h2>Slowest cases</h2>"
            + _table(("Case", "Seconds", "Worker"), table_rows) + "</section>")


def _failed_section(failed: Sequence[dict[str, Any]]) -> str:
    """The failed cases with their exit codes and messages, or a sentence when none failed."""
    if not failed:
        return "<section id=\"failed\"><h2>Failed cases</h2><p class=\"note\">No case failed.</p></section>"
    table_rows = [(str(row.get("case_id")), _text(row.get("exit_code"), ""), _text(row.get("error"), ""))
                  for row in sorted(failed, key=lambda row: str(row.get("case_id")))]
    return ("<section id=\"failed\"><h2>Failed cases</h2>"
            + _table(("Case", "Exit code", "Message"), table_rows) + "</section>")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; every cell is escaped."""
    header = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: Any) -> float | None:
    """A cell as a finite float, or ``None`` when it is empty, not a number or not finite."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _format(value: float | None) -> str:
    """A number with at most two decimals, and none for whole numbers."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _text(value: Any, missing: str) -> str:
    """A cell as text, ``missing`` when it is empty."""
    return missing if value is None or value == "" else str(value)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1b1b1b; padding: 0 1em; }
h1 { margin-bottom: 0.4em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #c8c8c8; padding: 0.3em 0.6em; text-align: left; }
thead th { background: #eef1f4; }
table.meta th { background: #f6f6f6; font-weight: 600; }
.note { color: #555; font-size: 0.92em; }
figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; }
img { display: block; max-width: 100%; }
td { word-break: break-word; }
"""

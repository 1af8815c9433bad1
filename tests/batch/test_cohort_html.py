"""``cohort.html``: the one-page cohort summary, built from cohort rows without running a batch."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lungai.batch.cohort import write_cohort_tables
from lungai.batch.cohort_html import SLOWEST_COUNT, write_cohort_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BATCH = {"lungai_version": "9.9.9", "started_utc": "2025-01-02T03:04:05Z", "finished_utc": "2025-01-02T04:05:06Z",
         "counts": {"total": 15, "done": 12, "failed": 2, "pending": 0}, "skipped": 1}


def done_row(index: int) -> dict[str, Any]:
    """A done case with lung volume, LAA-950, nodules, and a time that grows with ``index``."""
    return {"case_id": f"case_{index:02d}", "status": "done", "exit_code": 0, "error": None,
            "lung_volume_total_ml": 3000.0 + 97.5 * index, "laa_950_percent": 0.7 * index,
            "nodule_count": index % 4, "seconds": 10.0 + (index * 7) % 13, "worker": f"worker-{index % 2}"}


def failed_row(case_id: str, code: int, message: str, seconds: float | None = None) -> dict[str, Any]:
    """A failed case."""
    return {"case_id": case_id, "status": "failed", "exit_code": code, "error": message,
            "seconds": seconds, "worker": None if seconds is None else "worker-0"}


class _Page(HTMLParser):
    """Collects the page's tags, image sources and table rows by section id, and checks tags nest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.images: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.open: list[str] = []
        self._section: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = dict(attrs)
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)
        if tag == "section":
            self._section = attributes.get("id")
        elif tag == "img":
            self.images.append(attributes.get("src") or "")
        elif tag == "tr" and self._section:
            self.rows.setdefault(self._section, []).append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open, tag)
        self.open.pop()
        if tag == "td" and self._cell is not None and self._section:
            self.rows[self._section][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> tuple[str, _Page]:
    """The page's text, parsed."""
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.open, page.open
    return text, page


def assert_offline(text: str, page: _Page) -> None:
    """No script and nothing fetched from elsewhere."""
    assert "script" not in page.tags and "<script" not in text.lower()
    assert not re.search(r"(src|href)\s*=\s*\"(?!data:)", text), "only data URIs may be referenced"
    assert "http://" not in text and "https://" not in text


def test_page_has_plots_header_slowest_and_escaped_failures(tmp_path: Path) -> None:
    rows = [done_row(index) for index in range(12)]
    rows += [failed_row("corrupt", 4, "cannot read <scan> & stop: \"x\"", seconds=99.5),
             failed_row("lost", 9, "every worker that ran this case died")]
    write_cohort_html(tmp_path / "cohort.html", rows, BATCH)
    text, page = parse(tmp_path / "cohort.html")
    assert_offline(text, page)
    assert len(page.images) == 3
    for source in page.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert "cannot read &lt;scan&gt; &amp; stop" in text and "<scan>" not in text
    assert page.rows["failed"][1:] == [["corrupt", "4", "cannot read <scan> & stop: \"x\""],
                                       ["lost", "9", "every worker that ran this case died"]]
    slowest = page.rows["slowest"][1:]
    assert len(slowest) == SLOWEST_COUNT
    seconds = [float(row[1]) for row in slowest]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] == 99.5 and slowest[0][0] == "corrupt"
    timed = sorted((row["seconds"] for row in rows if row["seconds"] is not None), reverse=True)
    assert seconds == timed[:SLOWEST_COUNT]
    header = _header_cells(text)
    assert header["LungAI version"] == "9.9.9" and header["Done"] == "12" and header["Failed"] == "2"
    assert header["Skipped (kept from an earlier run)"] == "1" and header["Pending"] == "1"
    assert header["Started"] == BATCH["started_utc"] and header["Finished"] == BATCH["finished_utc"]


def _header_cells(text: str) -> dict[str, str]:
    """The header table's rows (``<th>`` name, ``<td>`` value)."""
    header = text.split("<header>", 1)[1].split("</header>", 1)[0]
    return dict(re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>", header))


def test_an_all_failed_cohort_has_no_plots_but_a_valid_page(tmp_path: Path) -> None:
    rows = [failed_row("a", 4, "not a CT <MR>"), failed_row("b", 7, "no lungs found", seconds=3.0)]
    write_cohort_html(tmp_path / "cohort.html", rows, {"counts": {"total": 2}})
    text, page = parse(tmp_path / "cohort.html")
    assert_offline(text, page)
    assert page.images == [] and "data:image/png" not in text
    assert text.count("No done case has a value") == 3
    assert page.rows["failed"][1:] == [["a", "4", "not a CT <MR>"], ["b", "7", "no lungs found"]]
    assert page.rows["slowest"][1:] == [["b", "3", "worker-0"]]
    header = _header_cells(text)
    assert header["Done"] == "0" and header["Failed"] == "2" and header["Finished"] == "not yet"


def test_a_plot_only_for_columns_with_values(tmp_path: Path) -> None:
    """Without the nodules task the nodule counts are empty: two plots and a sentence."""
    rows = [{**done_row(index), "nodule_count": None} for index in range(3)]
    write_cohort_html(tmp_path / "cohort.html", rows)
    text, page = parse(tmp_path / "cohort.html")
    assert len(page.images) == 2
    assert "No done case has a value for nodule count." in text and "No case failed." in text


def test_written_with_the_cohort_tables_from_the_same_rows(tmp_path: Path) -> None:
    entries = [{"case_id": "b", "status": "done", "exit_code": 0, "error": None, "seconds": 5.0, "worker": "w",
                "summary": {"lung_volume_total_ml": 3200.0, "laa_950_percent": 4.5, "nodule_count": 2},
                "nodules": []},
               {"case_id": "a", "status": "failed", "exit_code": 4, "error": "bad <file>", "seconds": 1.0,
                "worker": "w"}]
    write_cohort_tables(tmp_path, entries, {"lungai_version": "1.0", "counts": {"total": 2}, "skipped": 0})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cohort.csv", "cohort.html", "cohort_nodules.csv"]
    text, page = parse(tmp_path / "cohort.html")
    assert len(page.images) == 3
    assert page.rows["failed"][1:] == [["a", "4", "bad <file>"]]
    assert page.rows["slowest"][1:] == [["b", "5", "w"], ["a", "1", "w"]]

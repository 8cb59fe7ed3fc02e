"""The demo report: numbers formatted for people, labelled image grids (issue 10, item 18)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from imagexplore.demo import EDIT_LABELS, _pick_queries, _query_label, _result_rows
from imagexplore.report import Cell, Report, fmt_bytes, fmt_number, fmt_percent, fmt_seconds


@pytest.mark.parametrize(
    "value, text",
    [
        (0.97812345, "0.978"),
        (12.3456, "12.3"),
        (176.48213, "176"),
        (123456.7, "123,457"),
        (2104, "2,104"),  # ints: exact, thousands separated
        (0.0, "0"),
        (0.00012345, "0.000123"),
        (99.95, "100"),  # rounds up a decade: still 3 significant digits
        (-0.5, "-0.500"),
        (float("nan"), "—"),
    ],
)
def test_fmt_number(value, text):
    assert fmt_number(value) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (176.48213, "176.5 s"),
        (0.0412, "0.04 s"),
        (0.5, "0.50 s"),
        (0.004, "0.004 s"),
        (999.99, "1,000 s (17 min)"),  # 999.99 rounds to 1000.0: the long form
        (4321.0, "4,321 s (72 min)"),
    ],
)
def test_fmt_seconds(seconds, text):
    assert fmt_seconds(seconds) == text


@pytest.mark.parametrize(
    "n, text",
    [(2104, "2,104 B"), (4152, "4,152 B"), (0, "0 B"), (99_999, "99,999 B"), (100_000, "100 kB"),
     (4_152_000, "4.15 MB"), (12_345_678_901, "12.3 GB")],
)  # fmt: skip
def test_fmt_bytes(n, text):
    assert fmt_bytes(n) == text


@pytest.mark.parametrize(
    "fraction, text",
    [(0.97812345, "97.8%"), (1.0, "100.0%"), (0.0, "0.0%"), (0.123456, "12.3%"), (0.0004, "0.04%"),
     (0.00049, "0.05%"), (1 / 6, "16.7%"), (math.nan, "—")],
)  # fmt: skip
def test_fmt_percent(fraction, text):
    assert fmt_percent(fraction) == text
    assert fmt_percent(0.97812345, 2) == "97.81%"


def _png(path: Path, size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)
    return path


def test_report_table_and_grid_html(tmp_path):
    report = Report("t", tmp_path)
    report.table(
        [{"model": "cfn", "top-1 accuracy": fmt_percent(0.97812345), "iterations": 1250, "x": 0.123456}]
    )
    a, b = _png(tmp_path / "g" / "a.png"), _png(tmp_path / "g" / "b.png")
    report.grid(
        [[Cell(a, "scene 0"), Cell(b, "#1 · 0.83 · ✓ correct", "#28aa3c"), Cell(None, "no more results")]],
        ["input", "ground truth", "prediction"],
        "caption <here>",
        height=100,
    )
    html = report.write().read_text()
    assert "<th>top-1 accuracy</th>" in html and "<td>97.8%</td>" in html
    assert "<td>1,250</td>" in html and "<td>0.123</td>" in html and "0.123456" not in html
    assert '<td class="text">cfn</td>' in html  # words left-aligned, numbers right
    for header in ("input", "ground truth", "prediction"):
        assert f"<th>{header}</th>" in html
    assert '<img src="g/a.png" style="height:100px">' in html
    assert 'src="g/b.png" style="border:4px solid #28aa3c;height:100px"' in html
    assert "<div>#1 · 0.83 · ✓ correct</div>" in html and "<div>no more results</div>" in html
    assert "caption &lt;here&gt;" in html


def test_retrieval_rows_label_edit_rank_and_score(tmp_path):
    """Each query row names the edit applied; each result its rank, score and whether it is correct; the
    query's junk (its own copy in the database) is left out and short rows are padded."""
    db = [
        _png(tmp_path / "db" / f"{n}.png")
        for n in ("astronaut", "coffee", "g0000_v0", "g0000_v1", "g0001_v1")
    ]
    queries = [
        _png(tmp_path / "q" / n) for n in ("astronaut__crop.png", "coffee__jpeg.png", "coffee__rotate.png")
    ]
    queries.append(db[2])
    bench = SimpleNamespace(
        images=db,
        queries=queries,
        positives=[np.array([0]), np.array([1]), np.array([1]), np.array([3])],
        junk=[np.zeros(0, np.int64)] * 3 + [np.array([2])],
    )
    assert _query_label(queries[0]) == "astronaut: crop (half the area)"
    assert _query_label(queries[1]) == "coffee: JPEG (quality 10)"
    assert _query_label(queries[3]) == "shapes scene 0, view 0 (answers: its other views)"
    assert set(EDIT_LABELS) == {"crop", "rotate", "scale", "jpeg", "colour", "occlude"}
    assert _pick_queries(bench) == [0, 2, 1, 3]  # one query per edit, in EDIT_LABELS order, then shapes views

    results = [
        (np.array([0, 1]), np.array([0.91234, 0.0000512])),
        (np.array([0]), np.array([0.4])),
        (np.array([1]), np.array([12.3456])),
        (np.array([2, 4, 3]), np.array([1.0, 0.75, 0.5])),  # 2 is the query itself: junk
    ]
    rows = _result_rows(bench, [0, 1, 2, 3], results)
    assert all(len(r) == 6 for r in rows)
    assert rows[0][0].label == "astronaut: crop (half the area)" and rows[0][0].border
    assert rows[0][1].label == "#1 · 0.912 · ✓ correct" and rows[0][1].image == db[0]
    assert rows[0][2].label == "#2 · < 0.001 · ✗ wrong" and rows[0][1].border != rows[0][2].border
    assert rows[0][3].image is None and rows[0][3].label == "no more results" and rows[0][4].label == ""
    assert rows[1][1].label == "#1 · 0.400 · ✗ wrong"
    assert rows[2][1].label == "#1 · 12.3 · ✓ correct"
    assert [c.label for c in rows[3][1:3]] == ["#1 · 0.750 · ✗ wrong", "#2 · 0.500 · ✓ correct"]
    assert rows[3][1].image == db[4]


def test_report_copies_images_from_outside_its_folder(tmp_path):
    outside = _png(tmp_path / "photos" / "astronaut.png")
    report = Report("t", tmp_path / "report")
    (tmp_path / "report").mkdir()
    report.grid([[Cell(outside, "astronaut.png")]], ["input photo"])
    report.image(outside)
    html = report.write().read_text()
    copies = list((tmp_path / "report" / "report_files").glob("astronaut_*.png"))
    assert len(copies) == 1 and f'src="report_files/{copies[0].name}"' in html

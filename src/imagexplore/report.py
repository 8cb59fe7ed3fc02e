"""A small self-contained HTML report: sections of text, tables, images and labelled image grids (embedded as
relative links), with numbers formatted for people (`fmt_seconds`, `fmt_bytes`, `fmt_percent`, `fmt_number`)."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path


def fmt_number(x: float, digits: int = 3) -> str:
    """About ``digits`` significant digits, thousands separated, no exponent: 0.97812345 → "0.978",
    12.3456 → "12.3", 176.48213 → "176", 123456.7 → "123,457", 0 → "0"."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if not math.isfinite(x):
        return "—" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(float(f"{x:.{digits - 1}e}"))))  # after rounding: 99.95 → 100
    decimals = max(0, digits - 1 - magnitude)
    text = f"{x:,.{decimals}f}"
    if float(text.replace(",", "")) == 0:  # tiny: keep one significant digit rather than "0.000"
        text = f"{x:.1g}"
    return text


def fmt_seconds(s: float) -> str:
    """A duration: 176.48213 → "176.5 s", 0.0412 → "0.04 s", 4321.0 → "4,321 s (72 min)"."""
    if s < 0.01:
        return f"{fmt_number(s, 1)} s"
    if s < 1:
        return f"{s:.2f} s"
    if round(s, 1) < 1000:
        return f"{s:.1f} s"
    return f"{s:,.0f} s ({s / 60:.0f} min)"


def fmt_bytes(n: float) -> str:
    """A size: 2104 → "2,104 B" (exact below 100,000 B), 4152000 → "4.15 MB" (decimal units above)."""
    n = float(n)
    if n < 100_000:
        return f"{round(n):,} B"
    for unit, size in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        if n < size * 1000 or unit == "TB":
            return f"{fmt_number(n / size)} {unit}"
    raise AssertionError("unreachable")


def fmt_percent(fraction: float, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.97812345 → "97.8%", 1.0 → "100.0%", 0.0004 → "0.04%" (a non-zero value
    never shows as 0.0%)."""
    if not math.isfinite(fraction):
        return "—"
    pct = 100 * fraction
    if pct != 0 and abs(pct) < 0.5 * 10**-decimals:
        return f"{fmt_number(pct, 1)}%"
    return f"{pct:.{decimals}f}%"


@dataclass
class Cell:
    """One cell of `Report.grid`: an image (or none), a caption under it, and an optional border colour."""

    image: str | Path | None = None
    label: str = ""
    border: str | None = None  # a CSS colour; say in the label too what it means (colour alone is not enough)


def plot_curves(
    metrics_jsonl: str | Path, path: str | Path, keys=("train/loss", "val/loss", "val/acc1")
) -> Path:
    """Learning curves from a run's metrics.jsonl (x = iteration), one panel per key found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in Path(metrics_jsonl).read_text().splitlines() if x.strip()]
    found = [k for k in keys if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(found)), figsize=(4 * max(1, len(found)), 3), dpi=100)
    axes = [axes] if len(found) <= 1 else list(axes)
    for ax, k in zip(axes, found):
        pts = [(r["iteration"], r[k]) for r in rows if k in r and isinstance(r[k], int | float)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3)
        ax.set_title(k, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


class Report:
    def __init__(self, title: str, out_dir: str | Path):
        self.title = title
        self.out_dir = Path(out_dir)
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def link(self, lead: str, text: str, href: str, tail: str = "") -> None:
        """A paragraph ``lead <a href>text</a> tail``."""
        a = f'<a href="{html.escape(href)}">{html.escape(text)}</a>'
        self.parts.append(f"<p>{html.escape(lead)}{a}{html.escape(tail)}</p>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, rows: list[dict], columns: list[str] | None = None) -> None:
        if not rows:
            return
        columns = columns or list(rows[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(_td(_fmt(r.get(c, ""))) for c in columns) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def _src(self, path: str | Path) -> str:
        """The link to an image: relative to the report; an image outside its folder (an input photo) is copied
        into ``report_files/`` first, so the folder stands alone."""
        path, root = Path(path).resolve(), self.out_dir.resolve()
        if not path.is_relative_to(root):
            import hashlib
            import shutil

            tag = hashlib.sha1(str(path).encode()).hexdigest()[:8]
            copy = root / "report_files" / f"{path.stem}_{tag}{path.suffix}"
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
            path = copy
        return html.escape(path.relative_to(root).as_posix())

    def image(self, path: str | Path, caption: str = "", width: int | None = None) -> None:
        w = f' width="{width}"' if width else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{self._src(path)}"{w}>{cap}</figure>')

    def grid(
        self,
        rows: list[list[Cell]],
        columns: list[str] | None = None,
        caption: str = "",
        height: int = 128,
    ) -> None:
        """Images in a table: a header per column (what the column is), a label under each image; every image
        shown ``height`` px high (small ones scaled up, pixelated)."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns) if columns else ""
        body = []
        for row in rows:
            cells = []
            for c in row:
                img = ""
                if c.image is not None:
                    border = f"border:4px solid {html.escape(c.border)};" if c.border else ""
                    img = f'<img src="{self._src(c.image)}" style="{border}height:{height}px">'
                label = f"<div>{html.escape(c.label)}</div>" if c.label else ""
                cells.append(f"<td>{img}{label}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        head = f"<tr>{head}</tr>" if head else ""
        self.parts.append(f'<figure><table class="grid">{head}{"".join(body)}</table>{cap}</figure>')

    def write(self, name: str = "report.html") -> Path:
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
            "th{background:#f3f3f3}figure{display:inline-block;margin:0.5em}figcaption{font-size:0.85em;color:#555}"
            "pre{background:#f6f6f6;padding:0.6em}img{image-rendering:pixelated;max-width:100%}"
            "table.grid{margin:0.5em 0}table.grid td,table.grid th{text-align:center;vertical-align:top;padding:3px}"
            "table.grid td{font-size:0.8em;color:#333}table.grid img{display:block;margin:0 auto 2px;max-width:none}"
            "td.text,th{text-align:left}"
        )
        doc = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>"
        )
        path = self.out_dir / name
        path.write_text(doc)
        return path


def _td(text: str) -> str:
    """A table cell: numbers ("97.8%", "2,104 B", "176.5 s") right-aligned, words left-aligned."""
    numeric = bool(text) and (text[0].isdigit() or text[0] in "-−<—")
    return f"<td>{html.escape(text)}</td>" if numeric else f'<td class="text">{html.escape(text)}</td>'


def _fmt(v) -> str:
    """A table value: numbers through `fmt_number` (format seconds, bytes and fractions before, with the fmt_*
    helpers, where the column says what they are)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return fmt_number(v)
    return str(v)

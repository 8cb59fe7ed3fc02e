"""A small self-contained HTML report: sections of text, tables and images (embedded as relative links)."""

from __future__ import annotations

import html
import json
from pathlib import Path


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

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, rows: list[dict], columns: list[str] | None = None) -> None:
        if not rows:
            return
        columns = columns or list(rows[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in columns) + "</tr>"
            for r in rows
        )
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def image(self, path: str | Path, caption: str = "", width: int | None = None) -> None:
        rel = Path(path).resolve().relative_to(self.out_dir.resolve())
        w = f' width="{width}"' if width else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{html.escape(rel.as_posix())}"{w}>{cap}</figure>')

    def write(self, name: str = "report.html") -> Path:
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
            "th{background:#f3f3f3}figure{display:inline-block;margin:0.5em}figcaption{font-size:0.85em;color:#555}"
            "pre{background:#f6f6f6;padding:0.6em}img{image-rendering:pixelated;max-width:100%}"
        )
        doc = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>"
        )
        path = self.out_dir / name
        path.write_text(doc)
        return path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)

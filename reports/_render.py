"""Sections of text, tables and figures written as Markdown and as one HTML page."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


def fmt_ms(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.2f}"


def fmt_acc(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.3f}"


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # file names beside the page


def write_markdown(path: Path, title: str, sections: list[Section]) -> None:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for paragraph in s.text:
            lines += [paragraph, ""]
        for caption, table in s.tables:
            if caption:
                lines += [f"**{caption}**", ""]
            lines += [table.to_markdown(index=False), ""]
        for image in s.images:
            lines += [f"![{image}]({image})", ""]
    path.write_text("\n".join(lines))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { border-bottom: 2px solid #1f77b4; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; color: #1f4e79; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .86rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; }
th { background: #f0f4f8; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; border: 1px solid #eee; margin: .5rem 0; }
nav a { margin-right: 1rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""


def _inline(text: str) -> str:
    """Markdown's inline code spans as HTML, the rest escaped."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def write_html(path: Path, title: str, sections: list[Section]) -> None:
    """One self-contained page (inline CSS) with the figures as relative images."""
    anchors = [f"s{i}" for i in range(len(sections))]
    body = [f"<h1>{html.escape(title)}</h1>", "<nav>"]
    body += [
        f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections, strict=True)
    ]
    body.append("</nav>")
    for anchor, s in zip(anchors, sections, strict=True):
        body.append(f'<section id="{anchor}"><h2>{html.escape(s.title)}</h2>')
        body += [f"<p>{_inline(p)}</p>" for p in s.text]
        for caption, table in s.tables:
            if caption:
                body.append(f"<h3>{html.escape(caption)}</h3>")
            body.append(table.to_html(index=False, border=0, escape=True))
        body += [f'<img src="{html.escape(i)}" alt="{html.escape(i)}">' for i in s.images]
        body.append("</section>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path.write_text(page)

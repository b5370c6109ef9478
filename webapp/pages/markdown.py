"""A tiny Markdown renderer for model cards: headings, paragraphs, bullet lists, pipe tables,
inline code and bold. Everything is escaped first; no raw HTML gets through."""

from __future__ import annotations

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_BULLET = re.compile(r"^\s*[-*]\s+")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def _inline(text: str) -> str:
    text = escape(text)
    text = _CODE.sub(r"<code>\1</code>", text)
    return _BOLD.sub(r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def render_markdown(text: str) -> SafeString:
    """HTML for the subset of Markdown that ``ponas.export.model_card`` writes."""
    lines = text.splitlines()
    html: list[str] = []
    paragraph: list[str] = []
    i = 0

    def flush() -> None:
        if paragraph:
            html.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if not line.strip():
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 1, 6)  # the page has its own <h1>
            html.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif _BULLET.match(line):
            flush()
            items = []
            while i < len(lines) and _BULLET.match(lines[i]):
                items.append(f"<li>{_inline(_BULLET.sub('', lines[i]))}</li>")
                i += 1
            html.append(f"<ul>{''.join(items)}</ul>")
            continue
        elif line.startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
            flush()
            aligns = ["right" if c.endswith(":") else "left" for c in _cells(lines[i + 1])]
            head = "".join(
                f'<th style="text-align:{a}">{_inline(c)}</th>'
                for c, a in zip(_cells(line), aligns, strict=False)
            )
            body = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = "".join(
                    f'<td style="text-align:{a}">{_inline(c)}</td>'
                    for c, a in zip(_cells(lines[i]), aligns, strict=False)
                )
                body.append(f"<tr>{cells}</tr>")
                i += 1
            html.append(
                f'<div class="table-wrap"><table class="data"><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table></div>"
            )
            continue
        else:
            paragraph.append(line.strip())
        i += 1
    flush()
    return mark_safe("\n".join(html))  # noqa: S308 (every piece of text went through escape)

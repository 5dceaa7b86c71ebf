"""A minimal, safe renderer for the GitHub-flavoured Markdown of CDS card ``detail`` fields.

A CDS client must never let a service inject markup into its pages, so the text is HTML-escaped *first* and only
then are a few constructs turned into elements: paragraphs, ``#`` headings (rendered as ``h4``-``h6``), ``-``/``*``/
``1.`` lists, pipe tables, ``**bold**``, ``*emphasis*``/``_emphasis_``, `` `code` `` and ``[text](http(s)://…)``
links (other schemes stay text). Raw HTML in the source stays visible as text. Anything else is shown as written.
"""

from __future__ import annotations

import re
from typing import Final

from markupsafe import Markup, escape

_TABLE_SEPARATOR: Final = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_BULLET: Final = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED: Final = re.compile(r"^\s*\d{1,3}[.)]\s+(.*)$")
_HEADING: Final = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE: Final = re.compile(r"`([^`]+)`")
_BOLD: Final = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS: Final = re.compile(r"(?<![\w*])[*_](?=\S)([^*_]+?)(?<=\S)[*_](?![\w*])")
_LINK: Final = re.compile(r"\[([^\]]+)\]\((https?://[^\s)]+)\)")


def render(text: str) -> Markup:
    """HTML for ``text`` (already safe to put in a page)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _is_table_start(lines, i):
            j = i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            out.append(_table(lines[i], lines[i + 2:j]))
            i = j
            continue
        heading = _HEADING.match(line)
        if heading:
            level = min(6, len(heading.group(1)) + 3)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        for pattern, tag in ((_BULLET, "ul"), (_NUMBERED, "ol")):
            if pattern.match(line):
                items = []
                while i < len(lines) and (m := pattern.match(lines[i])):
                    items.append(f"<li>{_inline(m.group(1))}</li>")
                    i += 1
                out.append(f"<{tag}>{''.join(items)}</{tag}>")
                break
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines, i):
                para.append(lines[i].strip())
                i += 1
            if not para:  # a line that starts a block but did not render as one: keep it as text
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{'<br>'.join(_inline(p) for p in para)}</p>")
    return Markup("\n".join(out))  # every piece of source text went through escape()


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(_HEADING.match(line) or _BULLET.match(line) or _NUMBERED.match(line) or _is_table_start(lines, i))


def _is_table_start(lines: list[str], i: int) -> bool:
    return (lines[i].strip().startswith("|") and i + 1 < len(lines)
            and bool(_TABLE_SEPARATOR.match(lines[i + 1].strip())))


def _cells(row: str) -> list[str]:
    body = row.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells = re.split(r"(?<!\\)\|", body)
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(header: str, rows: list[str]) -> str:
    head = "".join(f"<th scope=\"col\">{_inline(c)}</th>" for c in _cells(header))
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    """Escape, then the inline constructs; code spans and links are protected from the others."""
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(f"<code>{escape(match.group(1))}</code>")
        return f"\x00{len(spans) - 1}\x00"

    def link(match: re.Match[str]) -> str:
        spans.append(f'<a href="{match.group(2)}" rel="noopener noreferrer" target="_blank">{match.group(1)}</a>')
        return f"\x00{len(spans) - 1}\x00"

    protected = _CODE.sub(keep, text)
    html = _LINK.sub(link, str(escape(protected)))  # on escaped text: the URL cannot close the attribute
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    html = _EMPHASIS.sub(r"<em>\1</em>", html)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], html)

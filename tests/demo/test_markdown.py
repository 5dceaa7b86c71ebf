"""The card-detail Markdown renderer: escapes first, then a few constructs; nothing from the text becomes markup."""

from __future__ import annotations

from risk.demo.markdown import render


def test_html_in_the_source_stays_text() -> None:
    out = render('<script>alert(1)</script> <img src=x onerror="alert(1)"> **<b>bold</b>**')
    assert "<script" not in out and "<img" not in out and "<b>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "<strong>&lt;b&gt;bold&lt;/b&gt;</strong>" in out


def test_links_only_for_http_and_https() -> None:
    out = render("[ok](https://example.org/a_b_c?x=1&y=2) [bad](javascript:alert(1)) [data](data:text/html,hi)")
    assert '<a href="https://example.org/a_b_c?x=1&amp;y=2" rel="noopener noreferrer" target="_blank">ok</a>' in out
    assert "javascript:" in out and 'href="javascript' not in out and 'href="data' not in out


def test_a_url_cannot_close_the_attribute() -> None:
    out = render('[x](https://e.org/"onmouseover="alert(1))')
    assert 'href="https://e.org/&#34;onmouseover=&#34;alert(1"' in out
    assert 'onmouseover="' not in out


def test_tables_with_escaped_pipes() -> None:
    out = render("| | Value | Date |\n|---|---|---|\n| Age | 67 years | — |\n| a \\| b | **x** | 2026-01-02 |")
    assert out.startswith("<table><thead><tr><th scope=\"col\"></th><th scope=\"col\">Value</th>")
    assert "<tr><td>Age</td><td>67 years</td><td>—</td></tr>" in out
    assert "<tr><td>a | b</td><td><strong>x</strong></td><td>2026-01-02</td></tr>" in out


def test_paragraphs_lists_headings_code_and_emphasis() -> None:
    out = render("# Title\nfirst line\nsecond line\n\n- one\n- *two* `a<b>`\n\n1. first\n2. second\n\n"
                 "_em_ snake_case_name")
    assert "<h4>Title</h4>" in out
    assert "<p>first line<br>second line</p>" in out
    assert "<ul><li>one</li><li><em>two</em> <code>a&lt;b&gt;</code></li></ul>" in out
    assert "<ol><li>first</li><li>second</li></ol>" in out
    assert "<em>em</em> snake_case_name" in out


def test_code_spans_are_not_formatted() -> None:
    assert "<code>**not bold**</code>" in render("`**not bold**`")


def test_empty_and_blank() -> None:
    assert render("") == "" and render("\n\n  \n") == ""

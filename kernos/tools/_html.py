"""HTML to readable text with the standard library's parser.

Scripts, styles and other invisible elements are dropped; block elements
become line breaks, list items get a dash, headings a ``#``; link text is
kept (and, if asked, the link target after it). Whitespace is collapsed
except inside ``<pre>``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_HIDDEN = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"}
_BLOCK = {
    "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
    "tbody", "thead", "tfoot", "tr", "ul",
}  # fmt: skip
_ITEMS = {"li", "dt", "dd", "tr"}  # one line each: a break before, none after
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "source", "wbr"}
_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_PRE_BREAK = "\x00"


class _TextParser(HTMLParser):
    def __init__(self, *, links: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.links = links
        self.out: list[str] = []
        self.hidden = 0
        self.pre = 0
        self.title: list[str] = []
        self.in_title = False
        self.href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in _HIDDEN and tag not in _VOID:
            self.hidden += 1
            return
        if self.hidden:
            return
        if tag in _BLOCK:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        elif tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self.out.append("#" * int(tag[1]) + " ")
        elif tag in {"td", "th"}:
            self.out.append(" ")
        elif tag == "pre":
            self.pre += 1
        elif tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.hidden and tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _HIDDEN and tag not in _VOID:
            self.hidden = max(0, self.hidden - 1)
            return
        if self.hidden:
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag == "a" and self.href:
            href = self.href.pop()
            if self.links and href and not href.startswith(("#", "javascript:")):
                self.out.append(f" ({href})")
        if tag in _BLOCK and tag not in _ITEMS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.hidden:
            return
        data = data.replace(_PRE_BREAK, "")
        # Line breaks inside <pre> are kept apart from those that structure
        # the text, so stripping lines does not eat a code block's indentation.
        self.out.append(data.replace("\n", _PRE_BREAK) if self.pre else _SPACES.sub(" ", data))


def html_to_text(html: str, *, links: bool = False) -> str:
    """The readable text of an HTML document.

    Args:
        html: the document (or a fragment).
        links: write each link's target in parentheses after its text.

    Returns:
        The text, starting with the page title (``# title``) when there is one.
    """
    parser = _TextParser(links=links)
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    body = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip().replace(_PRE_BREAK, "\n")
    title = _SPACES.sub(" ", "".join(parser.title)).strip()
    if title and not body.startswith(f"# {title}"):
        return f"# {title}\n\n{body}" if body else f"# {title}"
    return body

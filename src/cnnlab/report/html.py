"""HTML building blocks for the report: one self-contained page, inline CSS, images embedded as
base64 PNG data URIs, no JavaScript and no address outside the file.

Every piece of text that comes from a file or the command line goes through `escape`.
"""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

STYLE = """
:root { --ink: #1d2430; --muted: #5b6575; --line: #d9dee6; --tint: #f4f6f9; --accent: #2b5fab; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
header { padding: 24px 32px 12px; border-bottom: 1px solid var(--line); background: var(--tint); }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 4px 0; color: var(--muted); }
nav { margin-top: 10px; display: flex; flex-wrap: wrap; gap: 6px 16px; }
nav a { color: var(--accent); text-decoration: none; font-weight: 600; }
main { padding: 8px 32px 40px; max-width: 1500px; }
section { margin-top: 28px; }
h2 { font-size: 21px; border-bottom: 2px solid var(--accent); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.notice { border-left: 5px solid #d08700; background: #fff6e0; padding: 8px 12px; margin: 12px 0; }
.note { color: var(--muted); font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 900px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: var(--tint); }
td:first-child, th:first-child { text-align: left; white-space: nowrap; }
td.text, th.text { text-align: left; }
th.published, td.published { background: #eef3fb; }
.table-wrap { overflow-x: auto; }
ul.notes { color: var(--muted); font-size: 13.5px; }
"""


def escape(text) -> str:
    return html.escape(str(text), quote=True)


def image(png: bytes, alt: str, caption: str | None = None) -> str:
    """A figure with the PNG embedded; width and height set so the page lays out before decoding."""
    with Image.open(io.BytesIO(png)) as opened:
        width, height = opened.size
    encoded = base64.b64encode(png).decode("ascii")
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(alt)}" '
            f'width="{width}" height="{height}">{caption_html}</figure>')


def figures(*items: str) -> str:
    return '<div class="figures">' + "".join(items) + "</div>"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def table(headers: list[str], rows: list[list], column_classes: list[str] | None = None) -> str:
    """A plain table; cells are escaped. column_classes: a CSS class per column ('' for none)."""
    column_classes = column_classes or [""] * len(headers)

    def cell(tag: str, value, css: str) -> str:
        attribute = f' class="{css}"' if css else ""
        return f"<{tag}{attribute}>{escape('-' if value is None else value)}</{tag}>"

    head = "".join(cell("th", header, css) for header, css in zip(headers, column_classes))
    body = "".join("<tr>" + "".join(cell("td", value, css) for value, css in zip(row, column_classes)) + "</tr>"
                   for row in rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def bullet_list(items: list[str], css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<ul{attribute}>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def section(anchor: str, heading: str, *parts: str) -> str:
    return f'<section id="{escape(anchor)}"><h2>{escape(heading)}</h2>{"".join(parts)}</section>'


def subheading(text: str) -> str:
    return f"<h3>{escape(text)}</h3>"


def page(title: str, subtitle: list[str], notice: str | None, sections: list[tuple[str, str, str]]) -> str:
    """The whole document. sections: (anchor, heading, HTML) in order; a link to each in the header."""
    navigation = "".join(f'<a href="#{escape(anchor)}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    lines = "".join(f"<p>{escape(line)}</p>" for line in subtitle)
    warning = f'<div class="notice">{escape(notice)}</div>' if notice else ""
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            # An empty inline icon: otherwise a browser asks the file system for /favicon.ico.
            '<link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><header><h1>{escape(title)}</h1>{lines}{warning}<nav>{navigation}</nav></header>\n<main>"
            + "\n".join(section(anchor, heading, body) for anchor, heading, body in sections)
            + "</main></body></html>\n")

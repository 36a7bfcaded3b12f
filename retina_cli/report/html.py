"""A self-contained HTML page: no server, no network, no script. Images are files beside the page
(relative links inside the run folder), tables are plain HTML, every text is escaped."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #555; font-size: 0.9em; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
.gallery figure { margin: 0; } figcaption { font-size: 0.85em; color: #444; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return esc(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(src: str, alt: str) -> str:
    return f'<img src="{esc(src)}" alt="{esc(alt)}">'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def para(text: str, note: bool = False) -> str:
    return f'<p{" class=note" if note else ""}>{esc(text)}</p>'


@dataclass
class Page:
    title: str
    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, html body)

    def add(self, heading: str, *parts: str) -> None:
        self.sections.append((heading, "\n".join(parts)))

    def render(self) -> str:
        body = "\n".join(f"<section><h2>{esc(h)}</h2>\n{b}\n</section>" for h, b in self.sections)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(self.title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><h1>{esc(self.title)}</h1>\n{body}\n</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        path.write_text(self.render(), encoding="utf-8")
        return path


def relative(path: Path, page_dir: Path) -> str:
    """``path`` as a link from a page in ``page_dir`` (both inside the run folder)."""
    return Path(path).resolve().relative_to(Path(page_dir).resolve()).as_posix()

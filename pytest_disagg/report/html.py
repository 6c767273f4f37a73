"""``report.html``: the page as one self-contained file people can open, mail or attach to CI.

Why beside ``index.md``: the markdown page needs GitHub (or a viewer) and its PNGs next to it;
the HTML file carries its plots inline (base64 data URIs), its style and a few lines of inline
script that sort a table by the column header clicked — nothing is fetched from the network.
It is rendered from the very text of ``index.md`` (markdown-it, CommonMark plus tables), so the
two pages never say different things.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

from ..files import atomic_write, new_file_mode

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;
color:#1b1b1b}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
img{max-width:100%;height:auto;display:block;margin:1em 0;border:1px solid #eee}
.scroll{overflow-x:auto;margin:1em 0}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
blockquote{border-left:4px solid #C0392B;margin:1em 0;padding:.2em 1em;background:#fdf2f1}
details{margin:1em 0}summary{cursor:pointer}
"""

# Click a header: sort its table's rows by that column (numbers as numbers: "1,562 [1,410, 1,632]"
# sorts by 1562), again to reverse.
SCRIPT = """
document.querySelectorAll("th").forEach(function(th){th.addEventListener("click",function(){
var table=th.closest("table"),body=table.tBodies[0],col=th.cellIndex,down=th.getAttribute("aria-sort")==="ascending";
table.querySelectorAll("th").forEach(function(h){h.removeAttribute("aria-sort")});
th.setAttribute("aria-sort",down?"descending":"ascending");
function key(tr){var t=tr.cells[col]?tr.cells[col].textContent.trim():"";
var m=t.replace(/,/g,"").match(/^[-+]?[0-9]*\\.?[0-9]+(e[-+]?[0-9]+)?/i);return m?parseFloat(m[0]):t.toLowerCase();}
Array.from(body.rows).sort(function(a,b){var x=key(a),y=key(b);
var c=(typeof x===typeof y)?(x<y?-1:x>y?1:0):(typeof x==="number"?-1:1);return down?-c:c;})
.forEach(function(tr){body.appendChild(tr)});});});
"""


def _inline_images(body: str, out_dir: Path) -> str:
    def data_uri(match: re.Match) -> str:
        path = out_dir / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}"data:image/png;base64,{encoded}"'

    return re.sub(r'(<img src=)"([^":]+\.png)"', data_uri, body)


def _heading_ids(body: str, anchor) -> str:
    """The ids ``index.md``'s contents links point at (GitHub makes them from the heading text)."""
    def add_id(match: re.Match) -> str:
        text = html.unescape(re.sub(r"<[^>]+>", "", match.group(2)))
        return f'<{match.group(1)} id="{html.escape(anchor(text))}">{match.group(2)}</{match.group(1)}>'

    return re.sub(r"<(h[1-3])>(.*?)</\1>", add_id, body)


def render_html(page_text: str, out_dir: Path, anchor) -> str:
    """The HTML document of the markdown ``page_text`` whose images lie under ``out_dir``;
    ``anchor(title)`` gives a heading's id as the markdown page links it."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(page_text)
    body = _heading_ids(_inline_images(body, out_dir), anchor)
    body = body.replace("<table>", '<div class="scroll"><table>').replace("</table>", "</table></div>")
    title = html.escape(page_text.splitlines()[0].lstrip("# ").strip() if page_text else "report")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n")


def write_html(page_text: str, out_dir: Path, name: str, anchor) -> Path:
    path = Path(out_dir) / name
    atomic_write(path, render_html(page_text, Path(out_dir), anchor), file_mode=new_file_mode())
    return path


__all__ = ["render_html", "write_html"]

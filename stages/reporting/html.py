"""``reports/results.html``: ``results.md`` as one self-contained page that opens offline.

The text and tables are ``results.md`` rendered (CommonMark with tables, markdown-it-py); each PNG
figure line (``![...](figures/NAME.png)``) becomes that figure's interactive charts
(``stages.reporting.charts``), their Vega-Lite specifications inlined as JSON and drawn by the Vega
bundle inlined once in the page (``stages.reporting.vega``). No file, font or script is fetched, no
timestamp is written: the same results give the same bytes.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

from stages.reporting.vega import json_for_script, script_element

_FIGURE_LINE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<path>[^)]+)\)$")

# The page's look; the blockquote is the synthetic-data warning that opens results.md.
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1500px; margin: 0 auto; padding: 0 1.5em 3em; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 0.2em; }
blockquote { margin: 0.8em 0; padding: 0.6em 1em; background: #fff3cd; border: 1px solid #e0b400; border-left: 6px solid #e0b400; }
.figure { display: flex; flex-wrap: wrap; gap: 1.5em; margin: 1em 0 1.5em; }
"""

# Draws every chart of the page: the spec in each ``script.vega-spec`` into the element before it.
_DRAW = """<script>
for (const spec of document.querySelectorAll("script.vega-spec")) {
  vegaEmbed(spec.previousElementSibling, JSON.parse(spec.textContent));
}
</script>"""


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def figure_block(alt: str, charts: list[dict], start: int) -> str:
    """One figure's charts: an empty element per chart followed by its specification."""
    parts = [f'<div class="figure" role="figure" aria-label="{html.escape(alt)}">']
    for number, chart in enumerate(charts, start):
        parts.append(f'<div class="chart" id="chart-{number}"></div>'
                     f'<script type="application/json" class="vega-spec">{json_for_script(chart)}</script>')
    parts.append("</div>")
    return "\n".join(parts)


def page(markdown_text: str, charts_of_figure: dict[str, list[dict]]) -> str:
    """The page: ``markdown_text`` rendered, each figure line replaced by its charts. A figure line
    without charts is an error (the page would silently lose a figure)."""
    renderer = _markdown()
    body, pending, count = [], [], 0
    for line in markdown_text.splitlines():
        match = _FIGURE_LINE.match(line.strip())
        if not match:
            pending.append(line)
            continue
        if match["path"] not in charts_of_figure:
            raise ValueError(f"results.html: no charts for the figure {match['path']} of results.md")
        body.append(renderer.render("\n".join(pending)))
        pending = []
        body.append(figure_block(match["alt"], charts_of_figure[match["path"]], count + 1))
        count += len(charts_of_figure[match["path"]])
    body.append(renderer.render("\n".join(pending)))
    title = next((line[2:] for line in markdown_text.splitlines() if line.startswith("# ")), "Results")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>",
        "<!-- Vega, Vega-Lite and Vega-Embed, bundled by vl-convert-python (stages/reporting/vega.py) -->",
        script_element(), "</head>", "<body>", "<main>", *body, "</main>", _DRAW, "</body>", "</html>", ""])

"""Vega, Vega-Lite and Vega-Embed bundled for offline pages: `dvc plots show`'s HTML template and
``reports/results.html``.

DVC's default plots page loads the three libraries from a CDN, so with no internet it is blank. The
bundle here comes from ``vl-convert-python`` (``vl_convert.javascript_bundle``, pinned with every
other package in ``requirements.lock``), not from JavaScript copied by hand.

Generate DVC's template (``make install`` does it; ``.dvc/config`` points ``plots.html_template`` at
it)::

    python -m stages.reporting.vega --dvc-template .dvc/plots/offline.html
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache
from pathlib import Path

from stages.common.io import write_text

# DVC's built-in plot templates declare Vega-Lite v5 (dvc_render.vega_templates); the report's charts
# are written for v5 as well. 5.21 is the newest v5 that vl-convert 1.9 bundles.
VEGA_LITE_VERSION = "5.21"

# Where `.dvc/config` (plots.html_template, relative to .dvc/) expects the template; git-ignored.
DVC_TEMPLATE = Path(".dvc/plots/offline.html")

# Bundled with the libraries (vl_convert.javascript_bundle's ``snippet``). Ours: every chart is drawn
# as SVG, not canvas, so its marks are DOM elements (crisp at any zoom, and checkable in a headless
# browser: tests/test_offline_plots.py); the "Open in Vega Editor" action is dropped because it
# needs the internet. A page's own options still win.
EMBED_SNIPPET = """
window.vega = vega;
window.vegaLite = vegaLite;
window.vegaEmbed = (element, spec, options = {}) =>
  vegaEmbed(element, spec, {renderer: "svg", actions: {editor: false}, ...options});
"""

# The placeholders dvc_render's HTML class fills by plain text replacement (dvc_render/html.py).
# ``{scripts}`` is left out on purpose: DVC would put its CDN <script> tags there.
DVC_PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")


@lru_cache(maxsize=1)
def javascript() -> str:
    """The bundle: defines ``vega``, ``vegaLite`` and ``vegaEmbed`` (SVG by default) on ``window``."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(EMBED_SNIPPET, vl_version=VEGA_LITE_VERSION)
    # Inlined in a <script> element and in a template DVC fills by text replacement: neither may
    # appear inside it.
    if "</script" in bundle.lower():
        raise RuntimeError("vl_convert's bundle contains '</script'; it cannot be inlined")
    found = [p for p in DVC_PLACEHOLDERS if p in bundle]
    if found:
        raise RuntimeError(f"vl_convert's bundle contains DVC template placeholders {found}")
    return bundle


def script_element() -> str:
    return f"<script>\n{javascript()}\n</script>"


def json_for_script(payload) -> str:
    """JSON safe inside a <script> element (``</`` escaped as ``<\\/``, still valid JSON); sorted
    keys so the same chart gives the same bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def dvc_template() -> str:
    """DVC's plots page (the layout of dvc_render's PAGE_HTML) with the bundle inlined instead of
    ``{scripts}``; DVC fills ``{plot_divs}`` with one ``vegaEmbed('#id', spec)`` call per plot."""
    return f"""<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- Vega {_versions()}: bundled by vl-convert-python (stages/reporting/vega.py); no internet needed. -->
    {script_element()}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def _versions() -> str:
    import vl_convert

    return (f"{vl_convert.get_vega_version()}, Vega-Lite {VEGA_LITE_VERSION}, "
            f"Vega-Embed {vl_convert.get_vega_embed_version()}, vl-convert {vl_convert.__version__}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dvc-template", type=Path, default=DVC_TEMPLATE,
                        help=f"where to write DVC's offline plots template (default {DVC_TEMPLATE})")
    args = parser.parse_args(argv)
    write_text(args.dvc_template, dvc_template())
    print(f"vega: wrote {args.dvc_template} ({_versions()})")


if __name__ == "__main__":
    main()

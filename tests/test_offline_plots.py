"""`dvc plots show`/`dvc plots diff` and reports/results.html draw every chart with no network.

The pages open in headless Chromium with networking blocked (tests/browser.py); the number of charts
drawn must equal the number declared (dvc.yaml's plots; the page's own chart specifications), each
with drawn data marks. A control page with DVC's default template (the libraries from a CDN) must
draw nothing: it shows that the network really is blocked and that the bundle is what draws.
Screenshots are kept in pytest's temporary directory as test artifacts (never in the repository).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.reporting import vega
from stages.reporting.charts import paper_matrix_by_true_level
from stages.reporting.html import page
from tests.browser import Chart, charts_in, dump_dom, find_browser, references_in

REPO = Path(__file__).resolve().parents[1]
BROWSER = find_browser()
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): "
                            "the offline rendering of `dvc plots` and reports/results.html is not checked")


# --- without a browser ---------------------------------------------------------------------------

def test_dvc_config_uses_the_offline_template():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    # DVC reads a relative plots.html_template from .dvc/ (dvc/commands/plots.py).
    assert (REPO / ".dvc" / config["plots"]["html_template"]).resolve() == (REPO / vega.DVC_TEMPLATE).resolve()


def test_dvc_template_inlines_the_libraries_and_loads_nothing():
    template = vega.dvc_template()
    assert "{plot_divs}" in template and "{scripts}" not in template  # {scripts} is where DVC puts its CDN tags
    assert references_in(template) == []
    assert "window.vegaEmbed" in template and 'renderer:"svg"' in template.replace(" ", "")


def test_bundle_is_the_same_on_every_call():
    """results.html inlines the bundle: vl-convert must give the same bytes each time it bundles."""
    assert vega.javascript.__wrapped__() == vega.javascript.__wrapped__()


def test_paper_table4_by_true_level():
    """REFERENCE.md: Table 4 as printed has rows = predicted level, "Level 1": 48, 7 and "Level 2": 4, 91;
    so true Level 1 = 48 predicted Level 1 + 4 predicted Level 2, true Level 2 = 7 + 91."""
    printed = {"level1": {"level1": 48, "level2": 7}, "level2": {"level1": 4, "level2": 91}}
    assert paper_matrix_by_true_level(printed) == {"Level 1": {"Level 1": 48, "Level 2": 4},
                                                   "Level 2": {"Level 1": 7, "Level 2": 91}}


def test_page_puts_each_figures_charts_in_its_place():
    chart = {"mark": "point", "data": {"values": [{"a": "</script><b>"}]}}
    text = "# Title\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n![two charts](figures/x.png)\n\nafter\n"
    html = page(text, {"figures/x.png": [chart, chart]})
    assert "<title>Title</title>" in html and "<td>1</td>" in html
    assert html.count('class="vega-spec"') == 2
    assert html.index("<td>1</td>") < html.index('id="chart-1"') < html.index('id="chart-2"') < html.index("<p>after</p>")
    # The data cannot close the <script> element it sits in, and still parses as the same JSON.
    specs = re.findall(r'<script type="application/json" class="vega-spec">(.*?)</script>', html, re.S)
    assert [json.loads(s) for s in specs] == [chart, chart]
    with pytest.raises(ValueError, match="figures/y.png"):
        page("![lost](figures/y.png)\n", {"figures/x.png": [chart]})


def test_committed_results_html_matches_results_md():
    """The page carries results.md's text and one chart group per figure of results.md."""
    html = (REPO / "reports" / "results.html").read_text()
    markdown = (REPO / "reports" / "results.md").read_text()
    figures = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", markdown, re.M)
    assert html.count('class="figure"') == len(figures) > 0
    assert references_in(html) == []
    if "**Synthetic data.**" in markdown:
        assert "<blockquote>\n<p><strong>Synthetic data.</strong>" in html


# --- in the browser ------------------------------------------------------------------------------

def declared_dvc_plots() -> int:
    """dvc.yaml's plots, counted from the file: the top-level list, and each stage's (times the
    models of params.yaml for a foreach stage)."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    count = len(dvc_yaml.get("plots", []))
    for stage in dvc_yaml["stages"].values():
        body = stage.get("do", stage)
        count += len(body.get("plots", [])) * (len(_models()) if "foreach" in stage else 1)
    return count


def _assert_drawn(charts: list[Chart], expected: int, screenshot: Path) -> None:
    assert len(charts) == expected, f"{len(charts)} charts drawn, {expected} declared (screenshot: {screenshot})"
    for number, chart in enumerate(charts, 1):
        assert chart.items, f"chart {number} drew no data marks (screenshot: {screenshot})"
        assert not chart.broken, f"chart {number} has NaN geometry: {chart.broken[:3]} (screenshot: {screenshot})"


@pytest.fixture(scope="module")
def dvc_template() -> Path:
    """The template `make install` writes; written here when absent, and refused when stale."""
    path = REPO / vega.DVC_TEMPLATE
    if not path.exists():
        vega.main(["--dvc-template", str(path)])
    assert path.read_text() == vega.dvc_template(), f"{path} is stale: run make install"
    return path


def _dvc(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]


def _models() -> list[str]:
    return list(yaml.safe_load((REPO / "params.yaml").read_text())["models"])


def _files_drawn(chart: Chart, files: list[str]) -> bool:
    """Every one of ``files`` drawn in ``chart`` (DVC names a series by its file, less the prefix
    common to the plot's files)."""
    drawn = chart.series("filename")
    return all(any(name != "undefined" and file.endswith(name) for name in drawn) for file in files)


@needs_browser
@pytest.mark.parametrize("command", [["plots", "show"], ["plots", "diff", "HEAD"]], ids=["show", "diff"])
def test_dvc_plots_draw_offline(command, dvc_template, tmp_path):
    _dvc(*command, "-o", str(tmp_path / "plots"))
    index = tmp_path / "plots" / "index.html"
    assert "cdn.jsdelivr" not in index.read_text()
    screenshot = tmp_path / "plots.png"
    charts = charts_in(dump_dom(BROWSER, index, tmp_path, screenshot))
    _assert_drawn(charts, declared_dvc_plots(), screenshot)
    # Each top-level plot of dvc.yaml draws every file it names (not just an axis or one series);
    # `plots diff` draws both revisions.
    for plot in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]:
        (title, definition), = plot.items()
        files = list(definition["y"])
        drawing = [c for c in charts if _files_drawn(c, files)]
        assert drawing, f"no chart draws all of {files} ({title}; screenshot: {screenshot})"
        if command[1] == "diff":
            assert any({"workspace", "HEAD"} <= c.series("rev") for c in drawing), f"{title}: one revision only"


@needs_browser
def test_results_html_draws_offline(tmp_path):
    page_file = REPO / "reports" / "results.html"
    declared = page_file.read_text().count('<script type="application/json" class="vega-spec">')
    screenshot = tmp_path / "results.png"
    dom = dump_dom(BROWSER, page_file, tmp_path, screenshot)
    charts = charts_in(dom)
    _assert_drawn(charts, declared, screenshot)
    assert declared >= 7  # confusion matrices, ROC, precision-recall, calibration, 3 fine-tuning curves
    # Every network of params.yaml is drawn in each curve chart, and has its confusion-matrix panel
    # (plus the paper's): not just an axis or a reference diagonal.
    models = len(_models())
    for number, chart in enumerate(charts, 1):
        drawn = chart.series("network") or chart.series("panel")
        assert len(drawn) in (models, models + 1), f"chart {number} draws {sorted(drawn)} (screenshot: {screenshot})"
    # The paper's Table 4 (REFERENCE.md: 48, 4 / 7, 91) is drawn beside this run's CXR-S matrix.
    matrix = json.loads((REPO / "metrics/models/covidnet_cxr_s/evaluate.json").read_text())["confusion_matrix"]["matrix"]
    ours = [f"text:{matrix[t][p]}" for t in ("Level 1", "Level 2") for p in ("Level 1", "Level 2")]
    confusion = [c for c in charts if {"text:48", "text:4", "text:7", "text:91"} <= set(c.items)]
    assert len(confusion) == 1 and set(ours) <= set(confusion[0].items)
    assert "Synthetic data." in dom


@needs_browser
def test_control_cdn_page_draws_nothing_offline(tmp_path):
    """DVC's own template loads Vega from a CDN: with the network blocked nothing may draw (were it
    to draw, the network would not be blocked and the tests above would prove nothing)."""
    from dvc_render import VegaRenderer, render_html

    renderer = VegaRenderer([{"x": 1, "y": 2}, {"x": 2, "y": 3}], "control", x="x", y="y")
    index = tmp_path / "control.html"
    render_html([renderer], index)
    assert "cdn.jsdelivr" in index.read_text()
    charts = charts_in(dump_dom(BROWSER, index, tmp_path, tmp_path / "control.png", budget_ms=5000))
    assert charts == []

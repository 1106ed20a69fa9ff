"""Headless Chromium with the network blocked, and what its DOM says about the Vega charts drawn.

No browser driver: Chromium's own ``--dump-dom`` prints the page's DOM after a virtual time budget
(scripts have run), and ``--screenshot`` saves a PNG beside it. Networking is cut three ways: every
request goes to a proxy on a closed 127.0.0.1 port, the loopback exemption from the proxy is
removed, and every host name resolves to nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# Debian's package is `chromium` (.ci/run installs it); the others are the same browser elsewhere.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_flags(profile: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{closed_port()}", "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]


def dump_dom(browser: str, page: Path, work: Path, screenshot: Path | None = None,
             budget_ms: int = 20000, timeout_s: int = 180) -> str:
    """The DOM of ``page`` (a local file) once its scripts have run, opened with no network."""
    command = [browser, *offline_flags(work / "profile"), f"--virtual-time-budget={budget_ms}",
               "--window-size=1400,3000", "--dump-dom", page.resolve().as_uri()]
    if screenshot is not None:
        command.insert(-2, f"--screenshot={screenshot}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=work)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"{browser} failed on {page} (exit {done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@dataclass
class Chart:
    """One element Vega-Embed drew into: its data marks' drawn items (SVG renderer)."""
    items: list[str] = field(default_factory=list)  # e.g. "path", "text:48"
    broken: list[str] = field(default_factory=list)  # geometry with NaN: data that did not parse
    labels: list[str] = field(default_factory=list)  # the items' aria-labels: "x: 0; network: ResNet-50; ..."

    def series(self, name: str) -> set[str]:
        """The values of field ``name`` among the drawn items (e.g. every ``network`` drawn)."""
        return {part.split(": ", 1)[1] for label in self.labels for part in label.split("; ")
                if part.startswith(f"{name}: ")}


_GEOMETRY = {"path": "d", "line": "x2", "rect": "width", "circle": "r", "image": "href"}


class _Charts(HTMLParser):
    """Finds each ``vega-embed`` element and, inside it, every drawn item of a data mark: a child
    with geometry of an SVG group of class ``role-mark`` (axes, legends and titles have other roles)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: list[Chart] = []
        self._divs = 0  # open <div>s inside the current chart; its own closes it
        self._groups: list[bool] = []  # open SVG <g>s of the current chart: is it a data mark?
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if not self._divs:
            if tag == "div" and "vega-embed" in classes:
                self.charts.append(Chart())
                self._divs = 1
            return
        if tag == "div":
            self._divs += 1
        elif tag == "g":
            self._groups.append("role-mark" in classes)
        elif self._groups and self._groups[-1]:
            if tag == "text":
                self._text = []
            elif tag in _GEOMETRY and (value := attributes.get(_GEOMETRY[tag]) or ""):
                chart = self.charts[-1]
                (chart.broken if "NaN" in value else chart.items).append(tag)
                if "NaN" not in value and attributes.get("aria-label"):
                    chart.labels.append(attributes["aria-label"])

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self._divs:
            return
        if tag == "div":
            self._divs -= 1
            if not self._divs:
                self._groups = []
        elif tag == "g" and self._groups:
            self._groups.pop()
        elif tag == "text" and self._text is not None:
            if text := "".join(self._text).strip():
                self.charts[-1].items.append(f"text:{text}")
            self._text = None


def charts_in(dom: str) -> list[Chart]:
    parser = _Charts()
    parser.feed(dom)
    parser.close()
    return parser.charts


class _References(HTMLParser):
    """``src``/``href`` of every element; a script's text is not markup, so the bundle's own
    strings (``'<img src='`` in Vega-Embed's export code) do not count."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.references += [f"<{tag} {name}={value}>" for name, value in attrs if name in ("src", "href")]


def references_in(html: str) -> list[str]:
    """What a page's markup would load or link to before any script runs."""
    parser = _References()
    parser.feed(html)
    parser.close()
    return parser.references

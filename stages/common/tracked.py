"""Numbers that remember which file and key they came from.

The report and the README's results section are rendered from numbers loaded with :func:`track`.
Formatting a tracked number (``f"{value:.2f}"``) wraps the text in invisible markers that name
its file and key; :func:`untrack` removes the markers and returns where each number landed in the
clean text. A check can then say, of any number that differs from the committed text, which file
and key it comes from and both values, instead of only "the report is stale".

Arithmetic on a tracked number keeps its origin (``100 * accuracy`` is still ``accuracy``), so
templates need no change; ``str()`` and ``repr()`` stay plain, so figures and logs never see
markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPEN, _SEP, _CLOSE = "\x02", "\x1f", "\x03"
_MARKED = re.compile(f"{_OPEN}([^{_SEP}]*){_SEP}([^{_SEP}]*){_SEP}([^{_SEP}]*){_SEP}([^{_CLOSE}]*){_CLOSE}")


@dataclass(frozen=True)
class Origin:
    file: str  # e.g. metrics/models/covidnet_cxr_s/evaluate.json
    key: str  # e.g. confidence_intervals.intervals.accuracy.low
    value: float | int  # the number in the file, unformatted


@dataclass(frozen=True)
class Span:
    start: int  # offsets in the clean text
    end: int
    origin: Origin


def _mark(origin: Origin, text: str) -> str:
    return f"{_OPEN}{origin.file}{_SEP}{origin.key}{_SEP}{origin.value!r}{_SEP}{text}{_CLOSE}"


class _Tracked:
    """A number with an ``origin``; ``_base`` is the number type it extends."""
    _base: type
    origin: Origin

    def __new__(cls, value, origin: Origin):
        number = super().__new__(cls, value)
        number.origin = origin
        return number

    def __format__(self, spec: str) -> str:
        return _mark(self.origin, self._base.__format__(self._base(self), spec))

    def __neg__(self):
        return type(self)(-self._base(self), self.origin)


def _arith(name: str):
    def method(self, other):
        result = getattr(self._base, name)(self, other)
        if result is NotImplemented and self._base is int:  # int / float and the like: work in float
            result = getattr(float, name)(float(self), other)
        if result is NotImplemented or isinstance(result, bool) or not isinstance(result, (int, float)):
            return result
        return (TrackedInt if isinstance(result, int) else TrackedFloat)(result, self.origin)
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__floordiv__", "__mod__"):
    setattr(_Tracked, _name, _arith(_name))


class TrackedFloat(_Tracked, float):
    _base = float


class TrackedInt(_Tracked, int):
    _base = int


def track(data, file: str, key: str = ""):
    """A copy of JSON/YAML ``data`` whose numbers (not booleans) carry ``file`` and their key path."""
    if isinstance(data, dict):
        return {k: track(v, file, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [track(v, file, f"{key}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, bool) or not isinstance(data, (int, float)) or isinstance(data, (TrackedInt, TrackedFloat)):
        return data
    origin = Origin(file, key, data)
    return TrackedInt(data, origin) if isinstance(data, int) else TrackedFloat(data, origin)


def untrack(text: str) -> tuple[str, list[Span]]:
    """``text`` without markers, and the span and origin of every tracked number in it."""
    pieces: list[str] = []
    spans: list[Span] = []
    length = last = 0
    for match in _MARKED.finditer(text):
        pieces.append(text[last:match.start()])
        length += match.start() - last
        file, key, value, shown = match.groups()
        spans.append(Span(length, length + len(shown), Origin(file, key, _number(value))))
        pieces.append(shown)
        length += len(shown)
        last = match.end()
    pieces.append(text[last:])
    clean = "".join(pieces)
    if _OPEN in clean or _CLOSE in clean:
        raise ValueError("tracked: unbalanced number markers (a marked string was reformatted)")
    return clean, spans


def _number(text: str) -> float | int:
    return float(text) if any(c in text for c in ".eEn") else int(text)

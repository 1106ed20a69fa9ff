"""What both phantom cohorts derive from the seed besides pixels: identifiers and random draws.

Identifiers are digests of their parts, never random, so they do not depend on draw order; each
part of the cohort draws from its own stream (``default_rng([seed, STREAM, ...indices])``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from stages.sources.phantom.anatomy import N_ZONES

# Separate streams keep the draws of one part from shifting when another part changes (e.g. more
# corrupt files).
STREAM_COHORT = 1
STREAM_PATIENT = 2
STREAM_STUDY = 3
STREAM_IMAGE = 4
STREAM_READERS = 5
STREAM_CORRUPT = 6
STREAM_PRETRAIN = 7
STREAM_PRETRAIN_IMAGE = 8
STREAM_LEAK = 9
STREAM_CROP_BOX = 10

# Probability of k = 1..6 opacified zones in a RICORD-like study: Level 2 (k >= 3) is ~70%, as in
# the paper's cohort (682 of 909 images).
ZONE_COUNT_PROBABILITIES = (0.14, 0.16, 0.20, 0.20, 0.15, 0.15)
# COVID-19 pneumonia favours the lower zones; these weights pick which zones are opacified.
ZONE_WEIGHTS = (0.8, 1.0, 1.3, 0.8, 1.0, 1.3)


def digest(*parts: object) -> bytes:
    """SHA-256 of the parts, joined with '/': the root of every identifier in the cohort."""
    return hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()


def uid(*parts: object) -> str:
    """A DICOM UID under the 2.25 root (a 128-bit integer), derived from the parts."""
    return f"2.25.{int.from_bytes(digest(*parts)[:16], 'big')}"


def accession_number(study_uid: str) -> str:
    """The study's 8-digit AccessionNumber, also burned into its images as ``ACC<number>``."""
    return f"{int.from_bytes(digest(study_uid)[:4], 'big') % 10**8:08d}"


def short_id(prefix: str, length: int, *parts: object) -> str:
    """MD.ai-style identifier such as ``U_x7Kp2a`` (alphanumeric, derived from the parts)."""
    alphabet = "0123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
    number = int.from_bytes(digest(*parts), "big")
    chars = []
    for _ in range(length):
        number, remainder = divmod(number, len(alphabet))
        chars.append(alphabet[remainder])
    return f"{prefix}_{''.join(chars)}"


def hex_uuid(*parts: object) -> str:
    """A UUID-shaped hex string (like RSNA image ids), derived from the parts, not random."""
    text = digest(*parts).hex()[:32]
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def choice(rng: np.random.Generator, weighted: Sequence[tuple[Any, float]]) -> Any:
    """Pick one value from (value, weight) pairs."""
    weights = np.array([weight for _, weight in weighted], dtype=float)
    return weighted[int(rng.choice(len(weighted), p=weights / weights.sum()))][0]


def int_range(rng: np.random.Generator, bounds: Sequence[int]) -> int:
    """Uniform integer in the inclusive range [lo, hi] given as a 2-item list."""
    low, high = int(bounds[0]), int(bounds[1])
    if low < 0 or high < low:
        raise ValueError(f"invalid range {list(bounds)}: need 0 <= lo <= hi")
    return int(rng.integers(low, high + 1))


def non_square_size(rng: np.random.Generator, bounds: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) within bounds, not square, columns even (8-bit pixel data stays even)."""
    rows = int(rng.integers(bounds[0], bounds[1] + 1))
    aspect = rng.uniform(0.8, 1.2)
    columns = int(np.clip(round(rows * aspect), bounds[0], bounds[1])) // 2 * 2
    if columns == rows:
        columns = columns - 2 if columns - 2 >= bounds[0] else columns + 2
    return rows, columns


def sample_zones(rng: np.random.Generator) -> tuple[int, ...]:
    """Draw a study's opacified zones: k from ZONE_COUNT_PROBABILITIES, lower zones favoured."""
    count = int(rng.choice(np.arange(1, N_ZONES + 1), p=ZONE_COUNT_PROBABILITIES))
    weights = np.array(ZONE_WEIGHTS) / sum(ZONE_WEIGHTS)
    return tuple(sorted(int(zone) for zone in rng.choice(N_ZONES, size=count, replace=False, p=weights)))

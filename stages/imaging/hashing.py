"""Content hashes of a decoded radiograph, for the leakage audit.

* :func:`pixel_sha256`: an exact hash of the display image (8-bit, as decoded, before any crop),
  equal for two files only when they hold the same pixels, whatever their format or header.
* :func:`perceptual_hash`: a DCT hash (Zauner 2010, "Implementation and benchmarking of perceptual
  image hash functions") that stays within a few bits for a resized, re-encoded or slightly
  re-windowed copy. Chest radiographs all share one low-frequency layout, so the hash keeps 16x16
  DCT coefficients (255 bits without the DC term) rather than the usual 8x8: with 63 bits distinct
  radiographs come too close.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from PIL import Image

from stages.imaging.preprocess import to_uint8

HASH_SIDE = 16  # DCT coefficients kept per axis
SAMPLE_SIDE = 64  # the image is area-averaged to this square before the DCT
PHASH_BITS = HASH_SIDE * HASH_SIDE - 1  # the DC coefficient carries no shape


def pixel_sha256(display: np.ndarray) -> str:
    """sha256 over the 8-bit display pixels and their shape (so a transposed copy differs)."""
    # 8-bit exactly as an export of this display holds it: rounded in float32, like ingest's own
    # PNGs (to_uint8 of the float32 display); float64 rounds a few half-way pixels the other way.
    pixels = to_uint8(np.asarray(display, dtype=np.float32))
    digest = hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=None)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` is the DCT of the column vector ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


def perceptual_hash(display: np.ndarray) -> str:
    """The DCT hash as hex: one bit per low-frequency coefficient, set when above their median."""
    image = np.asarray(display, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"perceptual_hash needs a 2-D grey image, got shape {image.shape}")
    # BOX = area averaging: a resized copy averages to (nearly) the same 64x64 samples.
    small = np.asarray(Image.fromarray(image).resize((SAMPLE_SIDE, SAMPLE_SIDE), Image.Resampling.BOX),
                       dtype=np.float64)
    dct = _dct_matrix(SAMPLE_SIDE)
    coefficients = (dct @ small @ dct.T)[:HASH_SIDE, :HASH_SIDE].ravel()[1:]
    bits = coefficients > np.median(coefficients)
    value = int("".join("1" if b else "0" for b in bits), 2)
    return f"{value:0{(PHASH_BITS + 3) // 4}x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    if len(a) != len(b):
        raise ValueError(f"hashes of different lengths: {len(a)} and {len(b)}")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def hash_matrix(hashes: list[str]) -> np.ndarray:
    """Hex hashes (all one length) as an (n, bits) 0/1 matrix, for vectorised Hamming distances."""
    if not hashes:
        return np.zeros((0, PHASH_BITS), dtype=np.uint8)
    lengths = {len(h) for h in hashes}
    if len(lengths) != 1:
        raise ValueError(f"hashes of different lengths: {sorted(lengths)}")
    width = lengths.pop()
    padded = [h.rjust(width + width % 2, "0") for h in hashes]  # whole bytes for fromhex
    packed = np.frombuffer(b"".join(bytes.fromhex(h) for h in padded), dtype=np.uint8)
    return np.unpackbits(packed.reshape(len(hashes), -1), axis=1)


def hamming_matrix(a: list[str], b: list[str]) -> np.ndarray:
    """Pairwise Hamming distances, shape (len(a), len(b)), between two lists of hex hashes."""
    if not len(a) or not len(b):  # hash_matrix([]) cannot know the other side's width
        return np.zeros((len(a), len(b)), dtype=np.int32)
    # float32 so the product runs in BLAS; sums of at most 256 ones are exact in float32.
    left = hash_matrix(a).astype(np.float32)
    right = hash_matrix(b).astype(np.float32)
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"hashes of different lengths: {left.shape[1]} and {right.shape[1]} bits")
    # Differing bits = |a| + |b| - 2 |a AND b|: integer matrix products instead of a Python loop.
    distances = left.sum(1)[:, None] + right.sum(1)[None, :] - 2.0 * (left @ right.T)
    return np.rint(distances).astype(np.int32)

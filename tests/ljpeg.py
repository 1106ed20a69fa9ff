"""A small lossless JPEG encoder (ITU-T T.81 process 14, selection value 1) for test fixtures.

No Python package encodes lossless JPEG, so the DICOM codec tests build their JPEG Lossless SV1
frames here. Scope: one grey component, precision 2-16 bits, predictor 1 (the left neighbour),
no point transform, one scan, one Huffman table built from the image's own statistics.

Layout of the output: SOI, SOF3, DHT, SOS, entropy-coded data (with 0xFF byte stuffing), EOI.
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

MAX_CODE_LENGTH = 16  # T.81 limits Huffman code words to 16 bits
N_CATEGORIES = 17  # difference categories SSSS = 0..16 (T.81 table H.2)


def _marker(code: int, payload: bytes = b"") -> bytes:
    """A marker segment: 0xFF, the code, then (if any) a length-prefixed payload."""
    if not payload:
        return bytes([0xFF, code])
    return bytes([0xFF, code]) + struct.pack(">H", len(payload) + 2) + payload


def predict_differences(pixels: np.ndarray, precision: int) -> np.ndarray:
    """Differences to the predictor, in raster order, as signed values in [-32768, 32767].

    T.81 H.1.1: the first pixel is predicted by 2**(P-1), the rest of the first row by the left
    neighbour (Ra), the first pixel of every later row by the pixel above (Rb), and with selection
    value 1 every other pixel by Ra. Differences are taken modulo 2**16 (H.1.2.1).
    """
    x = pixels.astype(np.int64)
    pred = np.empty_like(x)
    pred[:, 1:] = x[:, :-1]  # Ra
    pred[1:, 0] = x[:-1, 0]  # Rb for the first column
    pred[0, 0] = 1 << (precision - 1)
    diff = (x - pred) % 65536
    diff[diff >= 32768] -= 65536
    return diff.ravel()


def category(diff: np.ndarray) -> np.ndarray:
    """SSSS: the number of bits of |diff|; the one value -32768 (i.e. +32768) is category 16."""
    magnitude = np.abs(diff)
    ssss = np.zeros(diff.shape, dtype=np.int64)
    for bits in range(N_CATEGORIES - 1):
        ssss[magnitude >= 1 << bits] = bits + 1
    return ssss


def huffman_code_lengths(counts: list[int]) -> list[int]:
    """Code length per symbol, at most 16 bits, with the all-ones code word left unused.

    As in T.81 K.2: a reserved dummy symbol of weight 1 takes part in the Huffman construction
    and ends up with the longest code, which canonical assignment makes all ones; it is then
    dropped. Every symbol gets weight >= 1 so that any difference can be coded. Lengths over 16
    are folded back with the BITS adjustment of T.81 figure K.3.
    """
    weights = [count + 1 for count in counts] + [1]  # the last one is the reserved dummy
    lengths = [0] * len(weights)
    heap = [(weight, index, [index]) for index, weight in enumerate(weights)]
    heapq.heapify(heap)
    tie = len(weights)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for symbol in s1 + s2:
            lengths[symbol] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1

    # BITS[i] = number of codes of length i; fold lengths > 16 back (figure K.3, Adjust_BITS).
    bits = [0] * (max(lengths) + 1)
    for length in lengths:
        bits[length] += 1
    i = len(bits) - 1
    while i > MAX_CODE_LENGTH:
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
        i -= 1
    # Re-hand the (possibly adjusted) lengths out: shortest codes to the heaviest symbols,
    # the dummy last among the longest so that it owns the all-ones code word.
    order = sorted(range(len(weights) - 1), key=lambda s: (-weights[s], s)) + [len(weights) - 1]
    new_lengths = [0] * len(weights)
    position = 0
    for length in range(1, min(len(bits), MAX_CODE_LENGTH + 1)):
        for _ in range(bits[length]):
            new_lengths[order[position]] = length
            position += 1
    return new_lengths[:-1]


def canonical_table(lengths: list[int]) -> tuple[list[int], list[int], dict[int, tuple[int, int]]]:
    """BITS (16 counts), HUFFVAL and symbol -> (code, length), per T.81 annex C."""
    symbols = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
    bits = [sum(1 for length in lengths if length == n) for n in range(1, MAX_CODE_LENGTH + 1)]
    codes: dict[int, tuple[int, int]] = {}
    code, current = 0, lengths[symbols[0]]
    for symbol in symbols:
        code <<= lengths[symbol] - current
        current = lengths[symbol]
        codes[symbol] = (code, current)
        code += 1
    assert all(code != (1 << length) - 1 for code, length in codes.values()), "all-ones code used"
    return bits, symbols, codes


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)  # byte stuffing: 0xFF in entropy data is followed by 0x00
        self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1-bits (T.81 F.1.2.3)
        return bytes(self.out)


def encode_lossless_jpeg(pixels: np.ndarray, precision: int) -> bytes:
    """Encode a 2-D array of unsigned values < 2**precision as a lossless JPEG (SOF3, SV1)."""
    if pixels.ndim != 2:
        raise ValueError("one grey component only")
    if not 2 <= precision <= 16:
        raise ValueError(f"precision must be 2..16, got {precision}")
    values = pixels.astype(np.int64)
    if values.min() < 0 or values.max() >= 1 << precision:
        raise ValueError(f"values must lie in [0, 2**{precision})")
    rows, columns = values.shape

    diffs = predict_differences(values, precision)
    ssss = category(diffs)
    lengths = huffman_code_lengths(np.bincount(ssss, minlength=N_CATEGORIES).tolist())
    bits, huffval, codes = canonical_table(lengths)

    writer = _BitWriter()
    for diff, size in zip(diffs.tolist(), ssss.tolist()):
        code, length = codes[size]
        writer.write(code, length)
        if 0 < size < 16:  # category 16 (diff 32768) carries no extra bits (T.81 H.1.2.2)
            # F.1.2.1.1: positive differences as they are, negative ones as diff - 1 (one's complement)
            writer.write(diff if diff > 0 else diff - 1, size)
    entropy = writer.flush()

    sof3 = struct.pack(">BHHB", precision, rows, columns, 1) + bytes([1, 0x11, 0])
    dht = bytes([0x00]) + bytes(bits) + bytes(huffval)  # class 0 (DC/lossless), table 0
    predictor, point_transform = 1, 0
    sos = bytes([1, 1, 0x00, predictor, 0, point_transform])
    return (_marker(0xD8) + _marker(0xC3, sof3) + _marker(0xC4, dht) + _marker(0xDA, sos)
            + entropy + _marker(0xD9))

"""One gzip member from pieces of raw deflate compressed apart, without compressing anything again.

Each run is compressed on its own and ended on a byte boundary (a sync flush), so runs
concatenate into one valid deflate stream. The member's CRC-32 is combined from the runs'
CRCs (as zlib's ``crc32_combine`` does) instead of being computed over the text, which the
caller need not keep. One member, because some readers (httpx) take only the first.

Nothing here knows what the text is: the module depends on the standard library only.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

_CRC_POLY = 0xEDB88320  # CRC-32, reflected
_X0 = 1 << 31  # the polynomial 1 in the reflected representation


def _multiply(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial."""
    if a == 0:
        return 0
    m, product = _X0, 0
    while True:
        if a & m:
            product ^= b
            if a & (m - 1) == 0:
                return product
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


_X_POWERS = [1 << 30]  # x^(2^k) modulo the polynomial, k = 0..31
for _ in range(31):
    _X_POWERS.append(_multiply(_X_POWERS[-1], _X_POWERS[-1]))


def _shift_for(length: int) -> int:
    """x^(8 * length) modulo the polynomial: what appending ``length`` bytes does to a CRC."""
    product, k, n = _X0, 3, length
    while n:
        if n & 1:
            product = _multiply(_X_POWERS[k & 31], product)
        n >>= 1
        k += 1
    return product


@dataclass(frozen=True, slots=True)
class DeflateRun:
    """Raw deflate of some text, ending on a byte boundary, with the text's CRC-32 and length.

    ``shift`` (x^(8 * length) modulo the CRC polynomial) is what appending the text does to
    the CRC of the text before it; kept so that joining runs costs a few multiplications,
    however long they are. The deflate may be held in several chunks (a join shares its
    runs' chunks instead of copying them); together they are one stretch of deflate.
    """

    chunks: tuple[bytes, ...]
    crc: int
    length: int
    shift: int

    @classmethod
    def of(cls, pieces: Iterable[bytes], *, level: int) -> DeflateRun:
        """The pieces of text, one after the other, compressed at ``level`` into one chunk."""
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        parts, crc, length = [], 0, 0
        for piece in pieces:
            parts.append(compressor.compress(piece))
            crc = zlib.crc32(piece, crc)
            length += len(piece)
        parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        return cls((b"".join(parts),), crc, length, _shift_for(length))

    @classmethod
    def join(cls, runs: Iterable[DeflateRun]) -> DeflateRun:
        """The runs one after the other; their chunks are shared, not copied."""
        chunks: list[bytes] = []
        crc, length, shift = 0, 0, _X0
        for run in runs:
            chunks.extend(run.chunks)
            crc = _multiply(run.shift, crc) ^ run.crc
            length += run.length
            shift = _multiply(shift, run.shift)
        return cls(tuple(chunks), crc, length, shift)

    def packed(self) -> DeflateRun:
        """The same run in one chunk: a run kept and joined again and again then adds one chunk, not many."""
        return DeflateRun((b"".join(self.chunks),), self.crc, self.length, self.shift)


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, unknown OS
_FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block


def gzip_member(runs: Iterable[DeflateRun]) -> bytes:
    """One gzip member holding the runs' text in order: their deflate, an end, the combined CRC and length."""
    data, crc, length = [_GZIP_HEADER], 0, 0
    for run in runs:
        data.extend(run.chunks)
        crc = _multiply(run.shift, crc) ^ run.crc
        length += run.length
    data.append(_FINAL_BLOCK)
    data.append(struct.pack("<II", crc, length & 0xFFFFFFFF))
    return b"".join(data)

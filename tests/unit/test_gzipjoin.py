"""Joining separately compressed runs into one gzip member, checked against zlib and gzip alone."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idaas_sync_exporter.metrics.gzipjoin import DeflateRun, gzip_member


def runs_of(pieces: list[bytes], level: int = 1) -> list[DeflateRun]:
    return [DeflateRun.of([piece], level=level) for piece in pieces]


def check_member(body: bytes, whole: bytes) -> None:
    """A single valid gzip member holding ``whole``, its trailer what zlib computes over it."""
    assert gzip.decompress(body) == whole
    single = zlib.decompressobj(31)  # one member only, CRC and length checked by zlib
    assert single.decompress(body) == whole
    assert single.eof and single.unused_data == b""
    assert int.from_bytes(body[-8:-4], "little") == zlib.crc32(whole)
    assert int.from_bytes(body[-4:], "little") == len(whole) & 0xFFFFFFFF


def test_no_runs_make_an_empty_member() -> None:
    check_member(gzip_member([]), b"")
    empty = DeflateRun.join([])
    assert (empty.chunks, empty.crc, empty.length) == ((), 0, 0)
    check_member(gzip_member([empty]), b"")


@pytest.mark.parametrize("pieces", [[b""], [b"", b"", b""], [b"a"], [b"one piece of text\n" * 100]])
def test_empty_and_single_pieces(pieces: list[bytes]) -> None:
    whole = b"".join(pieces)
    run = DeflateRun.of(pieces, level=1)
    assert (run.crc, run.length, len(run.chunks)) == (zlib.crc32(whole), len(whole), 1)
    check_member(gzip_member([run]), whole)
    check_member(gzip_member(runs_of(pieces)), whole)
    check_member(gzip_member([DeflateRun.join(runs_of(pieces))]), whole)


def test_many_pieces_joined_flat_nested_and_packed() -> None:
    rng = random.Random(7)
    pieces = [rng.randbytes(rng.choice((0, 1, 5, 300, 70_000))) for _ in range(40)]
    whole = b"".join(pieces)
    runs = runs_of(pieces)
    joined = DeflateRun.join(runs)
    assert (joined.crc, joined.length) == (zlib.crc32(whole), len(whole))
    assert joined.chunks == tuple(run.chunks[0] for run in runs)
    assert all(a is b for a, b in zip(joined.chunks, (run.chunks[0] for run in runs), strict=True))  # not copied
    nested = DeflateRun.join([DeflateRun.join(runs[:13]), DeflateRun.join(runs[13:]).packed()])
    assert (nested.crc, nested.length, nested.shift) == (joined.crc, joined.length, joined.shift)
    assert len(nested.chunks) == 14
    packed = joined.packed()
    assert (packed.chunks, packed.crc, packed.length, packed.shift) == (
        (b"".join(joined.chunks),),
        joined.crc,
        joined.length,
        joined.shift,
    )
    for members in ([joined], runs, [nested], [packed], [DeflateRun.join(runs[:13]), DeflateRun.join(runs[13:])]):
        check_member(gzip_member(members), whole)


def test_the_shift_is_that_of_a_run_compressed_whole() -> None:
    """What appending a run does to a CRC does not depend on how the run was put together."""
    pieces = [b"abc", b"", b"defgh" * 1000, b"i"]
    whole = DeflateRun.of([b"".join(pieces)], level=1)
    joined = DeflateRun.join(runs_of(pieces))
    assert (joined.crc, joined.length, joined.shift) == (whole.crc, whole.length, whole.shift)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=2000), max_size=12),
    level=st.sampled_from([0, 1, 6, 9]),
    split=st.integers(min_value=0, max_value=12),
)
def test_any_pieces_join_into_the_member_zlib_would_check(pieces: list[bytes], level: int, split: int) -> None:
    whole = b"".join(pieces)
    runs = runs_of(pieces, level)
    joined = DeflateRun.join(runs)
    assert (joined.crc, joined.length) == (zlib.crc32(whole), len(whole))
    check_member(gzip_member(runs), whole)
    halves = [DeflateRun.join(runs[:split]), DeflateRun.join(runs[split:]).packed()]
    check_member(gzip_member(halves), whole)
    assert DeflateRun.join(halves).crc == zlib.crc32(whole)

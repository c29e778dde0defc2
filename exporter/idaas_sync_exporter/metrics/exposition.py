"""Rendering a :class:`Snapshot` as Prometheus text or OpenMetrics, incrementally.

At a thousand targets the exposition is about 40 MiB of text, so work follows change:
each target's sample lines (lines.py) are rendered when its view changes, and compressed
with the other targets of its block into one run of raw deflate per family. Both formats
share them (they differ in the ``# TYPE``/``# HELP`` headers, the closing ``# EOF`` and
the exemplars OpenMetrics alone carries). A text scrape streams the plain pieces; a gzip
scrape gets the cached deflate joined into one gzip member (gzipjoin.py). A poll that
changed nothing renders and compresses only the instances' ``idaas_up`` lines and the
exporter's own metrics, which prometheus-client renders (selfmetrics.py) and which follow
the sync families.

Exposition (abridged)::

    # HELP idaas_sync_jobs_total Finished synchronization jobs, counted once each. ...
    # TYPE idaas_sync_jobs_total counter
    idaas_sync_jobs_total{instance_id="i",target_type="identity_provider",target_id="idp_1",
                          direction="ingress",trigger_type="auto",status="failed"} 2
    idaas_sync_last_job_status{...,status="success"} 1
    idaas_up{instance_id="i"} 1
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from idaas_sync_exporter.collect.counting import TargetKey
from idaas_sync_exporter.metrics.catalogue import FAMILIES, Family
from idaas_sync_exporter.metrics.gzipjoin import DeflateRun, gzip_member
from idaas_sync_exporter.metrics.lines import Lines, catalogue_lines, health_lines, target_lines
from idaas_sync_exporter.metrics.selfmetrics import SelfMetrics
from idaas_sync_exporter.metrics.snapshot import InstanceView, Snapshot, TargetView

# Targets rendered between returns to the event loop (about a millisecond of work).
RENDER_SLICE = 5
# Targets compressed together, one deflate piece per family, recompressed only when one of
# its targets changes: at 1,000 bench targets, blocks of 8 made the body 18% larger than one
# stream (1.24 against 1.05 MiB) and cost 0.6 ms to recompress; single targets would double
# the body, blocks of 32 cost 2.3 ms (measured with one gzip member per block and family).
BLOCK_TARGETS = 8
GZIP_LEVEL = 1  # ten to forty times smaller than the text, at a fraction of level 6's cost


def _deflate(pieces: Iterable[bytes]) -> DeflateRun:
    return DeflateRun.of(pieces, level=GZIP_LEVEL)


_HEADER_PIECES = {
    (family, openmetrics): _deflate([family.header(openmetrics)])
    for family in FAMILIES
    for openmetrics in (False, True)
}
_EOF = b"# EOF\n"
_EOF_PIECE = _deflate([_EOF])


@dataclass(frozen=True, slots=True)
class FamilyText:
    """One family's lines in a segment: pieces a text scrape streams, and their deflate a gzip scrape joins."""

    pieces: tuple[bytes, ...]
    gzipped: DeflateRun


@dataclass(frozen=True, slots=True)
class Segment:
    """The rendered lines of a few targets, or of one instance's or the exporter's own lines.

    ``text`` serves both formats, except for the families in ``openmetrics``: those whose
    OpenMetrics lines differ here (counters with exemplars). Kept with their deflate, so an
    unchanged segment is never rendered or compressed again. Never mutated: a changed
    segment is replaced by a new one.
    """

    text: Mapping[Family, FamilyText]
    openmetrics: Mapping[Family, FamilyText]
    size: int  # bytes of text
    openmetrics_size: int  # bytes of OpenMetrics (the exemplars' lines instead of their plain ones)

    def lines(self, family: Family, *, openmetrics: bool) -> FamilyText | None:
        """The lines of ``family`` a format serves from this segment, if it has any."""
        if openmetrics:
            own = self.openmetrics.get(family)
            if own is not None:
                return own
        return self.text.get(family)

    @classmethod
    def of(cls, parts: Iterable[Lines]) -> Segment:
        parts = tuple(parts)
        text: dict[Family, list[bytes]] = {}
        for part in parts:
            for family, data in part.text.items():
                text.setdefault(family, []).append(data)
        openmetrics: dict[Family, list[bytes]] = {}
        for family in dict.fromkeys(family for part in parts for family in part.openmetrics):
            # Every part's lines in OpenMetrics: its own where it has exemplars, else its plain ones.
            openmetrics[family] = [
                own for part in parts if (own := part.openmetrics.get(family, part.text.get(family))) is not None
            ]
        size = sum(len(data) for pieces in text.values() for data in pieces)
        openmetrics_size = (
            size
            + sum(len(data) for pieces in openmetrics.values() for data in pieces)
            - sum(len(data) for family in openmetrics for data in text.get(family, ()))
        )
        return cls(
            MappingProxyType({family: FamilyText(tuple(pieces), _deflate(pieces)) for family, pieces in text.items()}),
            MappingProxyType(
                {family: FamilyText(tuple(pieces), _deflate(pieces)) for family, pieces in openmetrics.items()}
            ),
            size,
            openmetrics_size,
        )

    @classmethod
    def combine(cls, segments: Iterable[Segment]) -> Segment:
        """Several segments as one, deflate joined: what a scrape assembles stays a few dozen pieces."""
        segments = tuple(segments)
        text: dict[Family, list[FamilyText]] = {}
        for segment in segments:
            for family, shared in segment.text.items():
                text.setdefault(family, []).append(shared)
        openmetrics = {
            family: [own for segment in segments if (own := segment.lines(family, openmetrics=True)) is not None]
            for family in dict.fromkeys(family for segment in segments for family in segment.openmetrics)
        }
        return cls(
            _joined(text),
            _joined(openmetrics),
            sum(segment.size for segment in segments),
            sum(segment.openmetrics_size for segment in segments),
        )


def _joined(by_family: Mapping[Family, list[FamilyText]]) -> Mapping[Family, FamilyText]:
    joined = {}
    for family, parts in by_family.items():
        pieces: list[bytes] = []
        for lines in parts:
            pieces.extend(lines.pieces)
        # Packed: the joined deflate is kept and assembled into every gzip scrape until it changes.
        joined[family] = FamilyText(tuple(pieces), DeflateRun.join(lines.gzipped for lines in parts).packed())
    return MappingProxyType(joined)


# Per family and format: the runs last assembled, and their join (see Rendered.gzipped).
FamilyJoins = dict[tuple[Family, bool], tuple[tuple[DeflateRun, ...], DeflateRun]]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One snapshot's exposition: segments in order, every family's samples in that order.

    ``tails`` follow the families: the exporter's own metrics (selfmetrics.py), per format.
    """

    version: int
    segments: tuple[Segment, ...]
    tails: Mapping[bool, Tail] = field(default_factory=dict)

    def chunks(self, *, openmetrics: bool) -> Iterator[bytes]:
        for family in FAMILIES:
            yield family.header(openmetrics)
            for segment in self.segments:
                lines = segment.lines(family, openmetrics=openmetrics)
                if lines is not None:
                    yield from lines.pieces
        tail = self.tails.get(openmetrics)
        if tail is not None:
            yield tail.text
        if openmetrics:
            yield _EOF

    def body(self, *, openmetrics: bool) -> bytes:
        return b"".join(self.chunks(openmetrics=openmetrics))

    def length(self, *, openmetrics: bool) -> int:
        """Bytes :meth:`chunks` yields, so a scrape can send a Content-Length instead of chunks."""
        headers = sum(len(family.header(openmetrics)) for family in FAMILIES) + (len(_EOF) if openmetrics else 0)
        tail = self.tails.get(openmetrics)
        body = sum(segment.openmetrics_size if openmetrics else segment.size for segment in self.segments)
        return headers + body + (len(tail.text) if tail else 0)

    def gzipped(self, *, openmetrics: bool, joined: FamilyJoins | None = None) -> bytes:
        """The gzip body: cached deflate joined, nothing compressed here.

        ``joined`` keeps each family's runs and their join from the last call: a family whose
        runs are the same objects (every target family when only the exporter's own lines
        changed) reuses its combined CRC, so an idle poll combines a few dozen CRCs, not
        hundreds; the data is copied once, into the body.
        """
        joined = {} if joined is None else joined
        runs = []
        for family in FAMILIES:
            parts = (
                _HEADER_PIECES[family, openmetrics],
                *(
                    lines.gzipped
                    for segment in self.segments
                    if (lines := segment.lines(family, openmetrics=openmetrics)) is not None
                ),
            )
            known = joined.get((family, openmetrics))
            if (
                known is None
                or len(known[0]) != len(parts)
                or any(a is not b for a, b in zip(known[0], parts, strict=True))
            ):
                known = (parts, DeflateRun.join(parts))
                joined[family, openmetrics] = known
            runs.append(known[1])
        tail = self.tails.get(openmetrics)
        if tail is not None:
            runs.append(tail.gzipped)
        if openmetrics:
            runs.append(_EOF_PIECE)
        return gzip_member(runs)


@dataclass(frozen=True, slots=True)
class Tail:
    """Lines rendered elsewhere (prometheus-client), with their deflate."""

    text: bytes
    gzipped: DeflateRun

    @classmethod
    def of(cls, text: bytes) -> Tail:
        return cls(text, _deflate([text]))


class _Block:
    """Up to BLOCK_TARGETS targets of one instance, compressed together."""

    __slots__ = ("keys", "segment")

    def __init__(self) -> None:
        self.keys: list[TargetKey] = []
        self.segment = Segment.of(())


class _InstanceRender:
    """One instance's cached rendering: its catalogue segment and its target blocks."""

    def __init__(self) -> None:
        self.catalogue_sources: tuple[object, ...] = ()
        self.catalogue = Segment.of(())
        self.targets: Mapping[TargetKey, TargetView] = MappingProxyType({})
        self.lines: dict[TargetKey, tuple[TargetView, Lines]] = {}
        self.blocks: list[_Block] = []
        self.block_of: dict[TargetKey, _Block] = {}
        self.combined = Segment.of(())  # every block's segment as one

    def catalogue_segment(self, view: InstanceView) -> Segment:
        sources = (view.target_info, view.pull_configs, view.pull_config_failures, view.target_anomalies)
        if len(sources) != len(self.catalogue_sources) or any(
            a is not b for a, b in zip(sources, self.catalogue_sources, strict=True)
        ):
            self.catalogue = Segment.of([catalogue_lines(view)])
            self.catalogue_sources = sources
        return self.catalogue


class Renderer:
    """Renders snapshots incrementally: only targets whose view changed are rendered and compressed.

    Targets are kept in blocks of BLOCK_TARGETS; a changed target re-renders its own lines
    and recompresses its block. An unchanged instance (the same ``targets`` mapping as the
    last time) costs nothing; otherwise each target costs one identity check.
    """

    def __init__(self, self_metrics: SelfMetrics | None = None) -> None:
        # The exporter's own metrics, rendered after the sync families; None renders the sync
        # families alone (tests and tools that compare them).
        self._self_metrics = self_metrics
        self._instances: dict[str, _InstanceRender] = {}
        self.target_renders = 0
        self.block_compressions = 0
        self._result = Rendered(-1, ())

    def render(self, snapshot: Snapshot) -> Rendered:
        for _ in self._render_steps(snapshot):
            pass
        return self._result

    async def render_async(self, snapshot: Snapshot) -> Rendered:
        """Like :meth:`render`, but returns to the event loop between slices of work."""
        for _ in self._render_steps(snapshot):
            await asyncio.sleep(0)
        return self._result

    def _render_steps(self, snapshot: Snapshot) -> Iterator[None]:
        segments: list[Segment] = []
        for instance_id, view in snapshot.instances.items():
            cached = self._instances.setdefault(instance_id, _InstanceRender())
            segments.append(cached.catalogue_segment(view))
            segments.append(Segment.of([health_lines(view)]))
            if view.targets is not cached.targets:
                yield from self._update_targets(instance_id, cached, view.targets)
            segments.append(cached.combined)
        for gone in set(self._instances) - set(snapshot.instances):
            del self._instances[gone]
        tails = {}
        if self._self_metrics is not None:
            tails = {openmetrics: Tail.of(text) for openmetrics, text in self._self_metrics.render(snapshot).items()}
        self._result = Rendered(snapshot.version, tuple(segments), MappingProxyType(tails))

    def _update_targets(
        self, instance_id: str, cached: _InstanceRender, targets: Mapping[TargetKey, TargetView]
    ) -> Iterator[None]:
        changed: dict[_Block, None] = {}  # blocks to recompress, in the order they changed
        for key, view in targets.items():
            known = cached.lines.get(key)
            if known is not None and known[0] is view:
                continue
            cached.lines[key] = (view, target_lines(instance_id, key, view))
            self.target_renders += 1
            block = cached.block_of.get(key)
            if block is None:
                block = self._block_with_room(cached)
                block.keys.append(key)
                cached.block_of[key] = block
            changed[block] = None
            if self.target_renders % RENDER_SLICE == 0:
                yield
        if len(cached.lines) != len(targets):
            for key in [key for key in cached.lines if key not in targets]:
                del cached.lines[key]
                block = cached.block_of.pop(key)
                block.keys.remove(key)
                changed[block] = None
        for block in changed:
            block.segment = Segment.of(cached.lines[key][1] for key in block.keys)
            self.block_compressions += 1
            yield
        cached.blocks = [block for block in cached.blocks if block.keys]
        if changed:
            cached.combined = Segment.combine(block.segment for block in cached.blocks)
        cached.targets = targets

    @staticmethod
    def _block_with_room(cached: _InstanceRender) -> _Block:
        if not cached.blocks or len(cached.blocks[-1].keys) >= BLOCK_TARGETS:
            cached.blocks.append(_Block())
        return cached.blocks[-1]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One snapshot ready to serve in every encoding: both formats, plain and gzip."""

    rendered: Rendered
    gzipped: Mapping[bool, bytes]  # openmetrics? -> gzip body
    lengths: Mapping[bool, int]  # openmetrics? -> plain body length
    # Blocks recompressed to render it: the caller judges by it whether the render freed
    # enough memory to be worth giving back to the OS.
    compressed_blocks: int

    @property
    def version(self) -> int:
        return self.rendered.version


class ExpositionCache:
    """The exposition scrapes are served from, swapped in only once it is ready in every encoding.

    So every scrape, plain or gzip, text or OpenMetrics, sees the same snapshot, and none
    waits for rendering or compression.
    """

    def __init__(self, renderer: Renderer | None = None) -> None:
        self._renderer = renderer or Renderer()
        # One preparation at a time: the renderer's caches are not shared.
        self._preparing = asyncio.Lock()
        self._served: Prepared | None = None
        self._latest_requested = -1
        self._joined: FamilyJoins = {}
        self.renders = 0

    def served(self) -> Prepared | None:
        return self._served

    async def prepare(self, snapshot: Snapshot) -> Prepared:
        """Render ``snapshot`` in slices (changed targets only), then serve it.

        A snapshot that a newer one overtook while waiting is skipped.
        """
        self._latest_requested = max(self._latest_requested, snapshot.version)
        async with self._preparing:
            served = self._served
            if served is not None and (served.version >= snapshot.version or snapshot.version < self._latest_requested):
                return served
            compressions = self._renderer.block_compressions
            rendered = await self._renderer.render_async(snapshot)
            self.renders += 1
            gzipped = {
                openmetrics: rendered.gzipped(openmetrics=openmetrics, joined=self._joined)
                for openmetrics in (False, True)
            }
            lengths = {openmetrics: rendered.length(openmetrics=openmetrics) for openmetrics in (False, True)}
            self._served = Prepared(
                rendered,
                MappingProxyType(gzipped),
                MappingProxyType(lengths),
                self._renderer.block_compressions - compressions,
            )
        return self._served


def render(snapshot: Snapshot, *, openmetrics: bool = False, self_metrics: SelfMetrics | None = None) -> bytes:
    """The whole exposition at once (for `once`, tests and tools)."""
    return Renderer(self_metrics).render(snapshot).body(openmetrics=openmetrics)

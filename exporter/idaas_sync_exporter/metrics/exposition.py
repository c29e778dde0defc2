"""Rendering a :class:`Snapshot` as Prometheus text or OpenMetrics, incrementally.

At a thousand targets the exposition is about 40 MiB of text, so work follows change:
each target's sample lines are rendered when its view changes, and compressed with the
other targets of its block into one piece of raw deflate per family. Both formats
share them (they differ only in the ``# TYPE``/``# HELP`` headers and the closing
``# EOF``). A text scrape streams the plain pieces; a gzip scrape gets the cached
deflate joined into one gzip member. A poll that changed nothing renders and
compresses only the instances' ``idaas_up`` lines and the exporter's own metrics,
which prometheus-client renders (selfmetrics.py) and which follow the sync families.

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
import dataclasses
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from idaas_sync_exporter.api.models import FINAL_STATUSES, IN_PROGRESS_STATUSES, TRIGGER_TYPES
from idaas_sync_exporter.collect.counting import Exemplar, TargetKey
from idaas_sync_exporter.memory import release_free_memory
from idaas_sync_exporter.metrics import catalogue
from idaas_sync_exporter.metrics.catalogue import FAMILIES, STANDARD_OBJECT_KEYS, Family, escape
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
# Giving freed heap back to the OS walks the heap: worth it after a large re-render only.
TRIM_AFTER_BLOCKS = 32


# OpenMetrics lines of the counters that carry exemplars (the latest job that moved each series).
# A block whose targets have none serves the plain lines in both formats; the text format never
# sees an exemplar.
JOBS_OPENMETRICS = dataclasses.replace(catalogue.JOBS, openmetrics_only=True)
JOB_ERRORS_OPENMETRICS = dataclasses.replace(catalogue.JOB_ERRORS, openmetrics_only=True)
OPENMETRICS_VARIANTS: Mapping[Family, Family] = MappingProxyType(
    {catalogue.JOBS: JOBS_OPENMETRICS, catalogue.JOB_ERRORS: JOB_ERRORS_OPENMETRICS}
)
_VARIANT_BASE = {variant: family for family, variant in OPENMETRICS_VARIANTS.items()}
# OpenMetrics bounds an exemplar's label names and values to 128 characters together.
_EXEMPLAR_LABEL_ROOM = 128 - len("job_id")


def exemplar_suffix(exemplar: Exemplar | None) -> str:
    """`` # {job_id="..."} 1 <end time>`` for one counter sample, or "" when there is none to give."""
    if exemplar is None or len(exemplar.job_id) > _EXEMPLAR_LABEL_ROOM:
        return ""
    stamp = "" if exemplar.end_ms is None else " " + catalogue.number(exemplar.end_ms / 1000)
    return f' # {{job_id="{escape(exemplar.job_id)}"}} 1{stamp}'


class _Lines:
    """Sample lines grouped by family, in the order they are added."""

    def __init__(self) -> None:
        self.by_family: dict[Family, list[str]] = {}

    def add(self, family: Family, labels: str, value: int | float, suffix: str = "") -> None:
        self.by_family.setdefault(family, []).append(family.line(labels, value, suffix))

    def add_counted(
        self, family: Family, labels: str, value: int, exemplar: Exemplar | None, with_exemplars: bool
    ) -> None:
        """A counter sample, and when the target has exemplars its OpenMetrics line with this one's."""
        line = family.line(labels, value)
        self.by_family.setdefault(family, []).append(line)
        if with_exemplars:
            self.by_family.setdefault(OPENMETRICS_VARIANTS[family], []).append(
                line[:-1] + exemplar_suffix(exemplar) + "\n"
            )

    def extend(self, family: Family, lines: list[str]) -> None:
        self.by_family.setdefault(family, []).extend(lines)

    def encoded(self) -> dict[Family, bytes]:
        return {family: "".join(lines).encode() for family, lines in self.by_family.items()}


def target_lines(instance_id: str, key: TargetKey, view: TargetView) -> dict[Family, bytes]:
    """All sample lines of one target, per family (labels as in :data:`catalogue.TARGET_LABELS`)."""
    base = (
        f'instance_id="{escape(instance_id)}",target_type="{escape(key.target_type)}",'
        f'target_id="{escape(key.target_id)}",direction="{escape(key.direction)}"'
    )
    out = _Lines()
    job_exemplars = bool(view.job_exemplars)
    for trigger in sorted(set(TRIGGER_TYPES) | {t for t, _ in view.jobs}):
        for status in sorted(set(FINAL_STATUSES) | {s for t, s in view.jobs if t == trigger}):
            labels = f'{base},trigger_type="{escape(trigger)}",status="{escape(status)}"'
            series = (trigger, status)
            count = view.jobs.get(series, 0)
            out.add_counted(catalogue.JOBS, labels, count, view.job_exemplars.get(series), job_exemplars)
    _object_lines(out, base, view)
    error_exemplars = bool(view.error_exemplars)
    for code, count in sorted(view.errors.items()):
        labels = f'{base},error_code="{escape(code)}"'
        out.add_counted(catalogue.JOB_ERRORS, labels, count, view.error_exemplars.get(code), error_exemplars)
    duration = catalogue.JOB_DURATION
    out.extend(duration, duration.histogram(base, view.duration_buckets, view.duration_sum, view.duration_count))
    _last_job_lines(out, base, view)
    for status in sorted(set(IN_PROGRESS_STATUSES) | set(view.in_progress)):
        out.add(catalogue.JOBS_IN_PROGRESS, f'{base},status="{escape(status)}"', view.in_progress.get(status, 0))
    if view.oldest_in_progress_start is not None:
        out.add(catalogue.OLDEST_IN_PROGRESS_START, base, view.oldest_in_progress_start)
    return out.encoded()


def _object_lines(out: _Lines, base: str, view: TargetView) -> None:
    """Objects of every finished job, and of the latest one, for every documented and seen combination."""
    last = view.last_job
    keys = set(STANDARD_OBJECT_KEYS) | set(view.objects)
    if last is not None:
        keys |= set(last.objects)
    for object_key in sorted(keys):
        object_type, action, result = object_key
        labels = f'{base},object_type="{escape(object_type)}",action="{escape(action)}",result="{escape(result)}"'
        out.add(catalogue.OBJECTS, labels, view.objects.get(object_key, 0))
        if last is not None:
            out.add(catalogue.LAST_JOB_OBJECTS, labels, last.objects.get(object_key, 0))


def _last_job_lines(out: _Lines, base: str, view: TargetView) -> None:
    last = view.last_job
    if last is not None:
        for status in FINAL_STATUSES:
            out.add(catalogue.LAST_JOB_STATUS, f'{base},status="{status}"', 1 if last.status == status else 0)
    for family, seconds in (
        (catalogue.LAST_JOB_START, view.last_job_start),
        (catalogue.LAST_JOB_END, view.last_job_end),
        (catalogue.LAST_SUCCESS, view.last_success_end),
    ):
        if seconds is not None:
            out.add(family, base, seconds)
    failure = view.last_failure
    if failure is not None:
        labels = (
            f'{base},job_id="{escape(failure.job_id)}",status="{escape(failure.status)}",'
            f'error_code="{escape(failure.error_code)}"'
        )
        out.add(catalogue.LAST_FAILED_JOB_INFO, labels, 1)


def catalogue_lines(view: InstanceView) -> dict[Family, bytes]:
    """What the target refresh learns: names, pull configurations, their failures (rarely changes)."""
    instance = f'instance_id="{escape(view.instance_id)}"'
    out = _Lines()
    for idp_id, config in sorted(view.pull_configs.items()):
        idp = f'{instance},target_id="{escape(idp_id)}"'
        for object_type, value in sorted(config.thresholds.items()):
            out.add(catalogue.PULL_DELETION_THRESHOLD, f'{idp},object_type="{escape(object_type)}"', value)
        for feature, enabled in sorted(config.features.items()):
            out.add(catalogue.PULL_FEATURE_ENABLED, f'{idp},feature="{escape(feature)}"', 1 if enabled else 0)
        if config.max_interval_seconds is not None:
            out.add(catalogue.PULL_SCHEDULE_MAX_INTERVAL, idp, config.max_interval_seconds)
    for code, count in sorted(view.pull_config_failures.items()):
        out.add(catalogue.PULL_CONFIG_FAILURES, f'{instance},code="{escape(code)}"', count)
    for reason, targets in sorted(view.target_anomalies.items()):
        out.add(catalogue.TARGETS_ANOMALOUS, f'{instance},reason="{escape(reason)}"', targets)
    for (target_type, target_id), named in sorted(view.target_info.items()):
        labels = (
            f'{instance},target_type="{escape(target_type)}",target_id="{escape(target_id)}",'
            f'target_name="{escape(named.name)}",provider_type="{escape(named.provider_type)}"'
        )
        out.add(catalogue.TARGET_INFO, labels, 1)
    return out.encoded()


def health_lines(view: InstanceView) -> dict[Family, bytes]:
    """The instance's own line, which changes with each poll's outcome (the rest: selfmetrics.py)."""
    out = _Lines()
    out.add(catalogue.UP, f'instance_id="{escape(view.instance_id)}"', 1 if view.up else 0)
    return out.encoded()


# A gzip body is assembled from cached pieces of raw deflate, each compressed on its own and
# ended on a byte boundary (a sync flush), so they concatenate into one valid deflate stream;
# its CRC-32 is combined from the pieces' CRCs (as zlib's crc32_combine does) instead of being
# computed over the text. One gzip member, because some clients (httpx) read only the first.
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
class Deflated:
    """Raw deflate of some text, ending on a byte boundary, with the text's CRC-32 and length."""

    data: bytes
    crc: int
    length: int
    shift: int  # x^(8 * length) mod the CRC polynomial

    @classmethod
    def of(cls, pieces: Iterable[bytes]) -> Deflated:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
        parts, crc, length = [], 0, 0
        for piece in pieces:
            parts.append(compressor.compress(piece))
            crc = zlib.crc32(piece, crc)
            length += len(piece)
        parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        return cls(b"".join(parts), crc, length, _shift_for(length))

    @classmethod
    def join(cls, parts: Iterable[Deflated]) -> Deflated:
        chain = Chain.of(tuple(parts))
        return cls(b"".join(part.data for part in chain.parts), chain.crc, chain.length, chain.shift)


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no time, unknown OS
_FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block


def gzip_body(chains: Iterable[Chain]) -> bytes:
    """One gzip member from chains of deflate pieces: their data, an end, and the combined CRC and length."""
    data, crc, length = [_GZIP_HEADER], 0, 0
    for chain in chains:
        data.extend(part.data for part in chain.parts)
        crc = _multiply(chain.shift, crc) ^ chain.crc
        length += chain.length
    data.append(_FINAL_BLOCK)
    data.append(struct.pack("<II", crc, length & 0xFFFFFFFF))
    return b"".join(data)


_HEADER_PIECES = {
    (family, openmetrics): Deflated.of([family.header(openmetrics)])
    for family in FAMILIES
    for openmetrics in (False, True)
}
_EOF = b"# EOF\n"
_EOF_PIECE = Deflated.of([_EOF])


@dataclass(frozen=True, slots=True)
class Segment:
    """The rendered lines of a few targets, or of one instance's or the exporter's own lines.

    Per family: the plain pieces (a text scrape streams them) and their deflate (a gzip
    scrape joins them), so an unchanged segment is never rendered or compressed again.
    Never mutated: a changed segment is replaced by a new one.
    """

    text: Mapping[Family, tuple[bytes, ...]]
    gzipped: Mapping[Family, Deflated]
    size: int  # bytes of text
    openmetrics_size: int  # bytes of OpenMetrics (the exemplars' lines instead of their plain ones)

    def pick(self, family: Family, *, openmetrics: bool) -> Family:
        """Which lines of ``family`` a format serves from this segment."""
        if openmetrics:
            variant = OPENMETRICS_VARIANTS.get(family)
            if variant is not None and variant in self.text:
                return variant
        return family

    @classmethod
    def of(cls, parts: Iterable[Mapping[Family, bytes]]) -> Segment:
        text: dict[Family, list[bytes]] = {}
        parts = tuple(parts)
        for part in parts:
            for family, data in part.items():
                text.setdefault(family, []).append(data)
        for variant in [family for family in text if family.openmetrics_only]:
            # Every target's lines in the variant: its own OpenMetrics lines, or its plain ones.
            base = _VARIANT_BASE[variant]
            lines: list[bytes] = []
            for part in parts:
                own = part.get(variant)
                if own is None:
                    own = part.get(base)
                if own is not None:
                    lines.append(own)
            text[variant] = lines
        pieces_of = {family: tuple(pieces) for family, pieces in text.items()}
        return cls(
            MappingProxyType(pieces_of),
            MappingProxyType({family: Deflated.of(pieces) for family, pieces in pieces_of.items()}),
            *_sizes(pieces_of),
        )

    @classmethod
    def combine(cls, segments: Iterable[Segment]) -> Segment:
        """Several segments as one, deflate joined: what a scrape assembles stays a few dozen pieces."""
        segments = tuple(segments)
        text: dict[Family, list[bytes]] = {}
        members: dict[Family, list[Deflated]] = {}
        variants = {family for segment in segments for family in segment.text if family.openmetrics_only}
        for segment in segments:
            for family, pieces in segment.text.items():
                text.setdefault(family, []).extend(pieces)
                members.setdefault(family, []).append(segment.gzipped[family])
            for variant in variants:
                if variant not in segment.text and (base := _VARIANT_BASE[variant]) in segment.text:
                    text.setdefault(variant, []).extend(segment.text[base])
                    members.setdefault(variant, []).append(segment.gzipped[base])
        joined = {family: tuple(pieces) for family, pieces in text.items()}
        return cls(
            MappingProxyType(joined),
            MappingProxyType({family: Deflated.join(parts) for family, parts in members.items()}),
            *_sizes(joined),
        )


def _sizes(text: Mapping[Family, tuple[bytes, ...]]) -> tuple[int, int]:
    """Bytes of the text and of the OpenMetrics lines, each format with its own lines of each family."""
    size = sum(len(piece) for family, pieces in text.items() if not family.openmetrics_only for piece in pieces)
    openmetrics = size
    for family, pieces in text.items():
        if family.openmetrics_only:
            openmetrics += sum(len(piece) for piece in pieces) - sum(
                len(piece) for piece in text.get(_VARIANT_BASE[family], ())
            )
    return size, openmetrics


@dataclass(frozen=True, slots=True)
class Chain:
    """Deflate pieces in order with their combined CRC-32, length and shift; the data is not copied."""

    parts: tuple[Deflated, ...]
    crc: int
    length: int
    shift: int

    @classmethod
    def of(cls, parts: tuple[Deflated, ...]) -> Chain:
        crc, length, shift = 0, 0, _X0
        for part in parts:
            crc = _multiply(part.shift, crc) ^ part.crc
            length += part.length
            shift = _multiply(shift, part.shift)
        return cls(parts, crc, length, shift)


# Per family and format: the chain of pieces last assembled (see Rendered.gzipped).
FamilyJoins = dict[tuple[Family, bool], Chain]


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
                yield from segment.text.get(segment.pick(family, openmetrics=openmetrics), ())
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

        ``joined`` keeps each family's chain of pieces from the last call: a family whose
        pieces are the same objects (every target family when only the exporter's own
        lines changed) reuses its combined CRC, so an idle poll combines a few dozen CRCs,
        not hundreds; the data is copied once, into the body.
        """
        joined = {} if joined is None else joined
        chains = []
        for family in FAMILIES:
            parts = (
                _HEADER_PIECES[family, openmetrics],
                *(
                    part
                    for segment in self.segments
                    if (part := segment.gzipped.get(segment.pick(family, openmetrics=openmetrics))) is not None
                ),
            )
            known = joined.get((family, openmetrics))
            if (
                known is None
                or len(known.parts) != len(parts)
                or any(a is not b for a, b in zip(known.parts, parts, strict=True))
            ):
                known = Chain.of(parts)
                joined[family, openmetrics] = known
            chains.append(known)
        tail = self.tails.get(openmetrics)
        ending = ((tail.gzipped,) if tail is not None else ()) + ((_EOF_PIECE,) if openmetrics else ())
        chains.append(Chain.of(ending))
        return gzip_body(chains)


@dataclass(frozen=True, slots=True)
class Tail:
    """Lines rendered elsewhere (prometheus-client), with their deflate."""

    text: bytes
    gzipped: Deflated

    @classmethod
    def of(cls, text: bytes) -> Tail:
        return cls(text, Deflated.of([text]))


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
        self.lines: dict[TargetKey, tuple[TargetView, dict[Family, bytes]]] = {}
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
            self._served = Prepared(rendered, MappingProxyType(gzipped), MappingProxyType(lengths))
            if self._renderer.block_compressions - compressions >= TRIM_AFTER_BLOCKS:
                release_free_memory()
        return self._served


def render(snapshot: Snapshot, *, openmetrics: bool = False, self_metrics: SelfMetrics | None = None) -> bytes:
    """The whole exposition at once (for `once`, tests and tools)."""
    return Renderer(self_metrics).render(snapshot).body(openmetrics=openmetrics)

"""Reading the YAML files users hand us (settings, web configuration, pull configurations, rules).

Every file goes through :func:`read_yaml`, which refuses what a configuration never needs and a
hostile or broken file relies on: more than :data:`MAX_YAML_BYTES`, nesting deeper than
:data:`MAX_YAML_DEPTH`, aliases of lists or mappings (a few hundred bytes of them expand to
gigabytes), aliases of single values that together stand for more text than the file may hold,
explicit tags other than the plain types (``!!binary``, ``!!set``, ``!!timestamp`` and custom
tags build values no setting takes, and some fail with tracebacks), merge keys (``<<``, which
would let a later key silently override a merged one), and a key given twice in one mapping,
compared as the values the keys build (``true``/``True``, ``~``/``null``, ``1``/``0x1`` are one
key each; YAML would silently keep the last). The file itself is read by
:func:`idaas_sync_exporter.files.read_small_file`: a FIFO or a device put in its place is refused at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from idaas_sync_exporter.files import SmallFileError, escaped, read_small_file, shown_name, shown_path

# Our configuration files are a few kilobytes; 1 MiB leaves room for thousands of instances or
# target ids while keeping what a mistaken path (a log, a disk image) can cost bounded.
MAX_YAML_BYTES = 1024 * 1024
# None of our schemas nests more than six levels; PyYAML composes nodes recursively, so an
# unbounded depth ends in a RecursionError instead of a message.
MAX_YAML_DEPTH = 32
_STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"
# Tags a file may write explicitly: those of the plain values a configuration is made of.
_ALLOWED_TAGS = frozenset(
    {"!", *(f"{_STANDARD_TAG_PREFIX}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))}
)
_MERGE_TAG = _STANDARD_TAG_PREFIX + "merge"


class YamlFileError(ValueError):
    """The file cannot be read or is not YAML; the message names the file and the first problem."""


class _Refused(yaml.YAMLError):
    """A construct the bounded loader does not accept, at a line of the file."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _shown(text: str) -> str:
    """A key or value as it may appear in a message: plain when it is a short name, else quoted and cut."""
    return shown_name(text, 40)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader without alias bombs, unbounded nesting, unusual tags, merge keys or duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        # Each alias repeats its value wherever the document is written out or joined, as a
        # message or a comma-separated setting may be: together they may stand for no more
        # text than the file itself may hold.
        self._aliased_characters = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            anchored = self.anchors.get(event.anchor)
            # An alias of a single value costs nothing; one of a list or mapping is how a few
            # hundred bytes become gigabytes once the document is walked, and no setting needs it.
            if anchored is not None and not isinstance(anchored, yaml.ScalarNode):
                raise _Refused(
                    event.start_mark.line + 1,
                    f"the alias *{_shown(event.anchor)} stands for a list or mapping; write the values out "
                    "(aliases of single values are accepted)",
                )
            if anchored is not None:
                self._aliased_characters += len(anchored.value)
                if self._aliased_characters > MAX_YAML_BYTES:
                    raise _Refused(
                        event.start_mark.line + 1,
                        f"the aliases up to *{_shown(event.anchor)} stand for more than "
                        f"{MAX_YAML_BYTES // 1024} KiB of text, more than the file may hold; write the values out",
                    )
            return super().compose_node(parent, index)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _ALLOWED_TAGS:
            # !!binary, !!set, !!omap and !!timestamp build values no setting takes, !!bool and
            # !!timestamp fail on some values with a traceback, and a custom tag has no meaning here.
            written = tag.replace(_STANDARD_TAG_PREFIX, "!!", 1)
            raise _Refused(
                event.start_mark.line + 1,
                f"the tag {_shown(written)} at column {event.start_mark.column + 1} is not accepted; "
                "write the value plainly (quote it to make it text)",
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                line = event.start_mark.line + 1
                raise _Refused(line, f"nested more than {MAX_YAML_DEPTH} levels deep; no configuration needs that")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node: yaml.MappingNode = super().compose_mapping_node(anchor)
        for key, _ in node.value:
            if key.tag == _MERGE_TAG:
                # A merged key may be given again after the merge and silently win; no
                # configuration here needs to share keys between mappings.
                raise _Refused(
                    key.start_mark.line + 1, "merge keys (<<) are not accepted; write the keys out in each mapping"
                )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Keys are compared as the values they build, as the mapping will hold them: true and
        # True, ~ and null, 1 and 0x1 (and 1 and true) are one key, whatever their spelling.
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.get(key)
            except TypeError:
                break  # an unhashable key: the constructor below says so
            if earlier is not None:
                line = key_node.start_mark.line + 1
                spelled = "" if earlier.value == key_node.value else f" as {_shown(str(earlier.value))}"
                raise _Refused(
                    line,
                    f"{_shown(str(key_node.value))} is given twice (first on line "
                    f"{earlier.start_mark.line + 1}{spelled}); keep one",
                )
            first[key] = key_node
        return super().construct_mapping(node, deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, LookupError, AttributeError, TypeError, OverflowError) as exc:
            # A value that looks like a date, a number or a truth value but is not one
            # (2024-13-01, an integer of 5,000 digits, !!bool maybe) fails deep inside PyYAML
            # with a bare exception. The value itself is not shown: it may be a secret written in
            # the file; a ValueError's reason is, up to the colon that precedes the value.
            kind = node.tag.rsplit(":", 1)[-1]
            reason = f" ({escaped(str(exc).split(':')[0])})" if type(exc) is ValueError else ""
            raise _Refused(
                node.start_mark.line + 1,
                f"the value at column {node.start_mark.column + 1} is not a valid {_shown(kind)}{reason}; "
                "quote it to make it text",
            ) from None


def read_yaml(path: str) -> Any:
    """The parsed document (``None`` for an empty file); :class:`YamlFileError` naming the first problem."""
    return read_marked_yaml(path).data


# A key or list index of a path into a document, as pydantic's error locations name them.
Step = Hashable


@dataclass(frozen=True, slots=True, eq=False)
class MarkedYaml:
    """A parsed document and where in the file each of its keys and values was written.

    The positions are looked up on demand by walking the composed nodes beside the data, not
    tabulated as the file is read: only a failing value is ever asked for, and a table of every
    item of a 1 MiB list would cost a hundred times the file.
    """

    data: Any
    root: yaml.Node | None = None

    def position(self, path: Sequence[Step], *, of_key: bool = False) -> tuple[int, int] | None:
        """The 1-based (line, column) of the value at ``path`` (of its key with ``of_key``).

        A path that leaves the document (a missing key) gives the position of the deepest mapping or
        list it reaches, where the key belongs; None for a document not read from a file.
        """
        node, data = self.root, self.data
        if node is None:
            return None
        mark = node.start_mark
        for index, step in enumerate(path):
            found = _child(node, data, step)
            if found is None:
                break
            key_node, node, data = found
            last = index == len(path) - 1
            mark = key_node.start_mark if of_key and last and key_node is not None else node.start_mark
        return mark.line + 1, mark.column + 1


def _child(node: yaml.Node, data: Any, step: Step) -> tuple[yaml.Node | None, yaml.Node, Any] | None:
    """The key node, value node and value one step below ``node``/``data``, or None when there is none.

    The constructed mapping holds its keys in the order the nodes give them (a key given twice is
    refused), so the two are walked side by side and keys compared as the values they built.
    """
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for key, (key_node, value_node) in zip(data, node.value, strict=False):
            if key == step and type(key) is type(step):
                return key_node, value_node, data[key]
        return None
    in_list = isinstance(node, yaml.SequenceNode) and isinstance(data, list)
    if in_list and isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(node.value):
        return None, node.value[step], data[step]
    return None


def read_marked_yaml(path: str) -> MarkedYaml:
    """:func:`read_yaml` with the position of every key and value; :class:`YamlFileError` naming the first problem."""
    name = shown_path(path)
    try:
        # Opened without blocking and judged on the descriptor: a FIFO, a device or a file still
        # growing put in the configuration's place is refused at once instead of hanging.
        data = read_small_file(
            path,
            MAX_YAML_BYTES,
            too_large="more than any configuration needs; check that this is the right file",
            not_regular="point it at the configuration file",
        )
    except SmallFileError as exc:
        raise YamlFileError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{name}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    loader = BoundedLoader(text)
    try:
        root = loader.get_single_node()
        return MarkedYaml(loader.construct_document(root) if root is not None else None, root)
    except _Refused as exc:
        raise YamlFileError(f"{name}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        # PyYAML's problem may quote the file (an undefined alias, a tag handle): bounded, escaped.
        problem = escaped(str(exc.problem or exc.context), 120)
        raise YamlFileError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise YamlFileError(f"{name} is not valid YAML: {escaped(first_line, 120)}") from None
    finally:
        loader.dispose()

"""Reading the YAML files users hand us (settings, web configuration, pull configurations, rules).

Every file goes through :func:`read_yaml`, which refuses what a configuration never needs and a
hostile or broken file relies on: more than :data:`MAX_YAML_BYTES`, nesting deeper than
:data:`MAX_YAML_DEPTH`, aliases of lists or mappings (a few hundred bytes of them expand to
gigabytes), and a key given twice in one mapping (YAML would silently keep the last).
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

# Our configuration files are a few kilobytes; 1 MiB leaves room for thousands of instances or
# target ids while keeping what a mistaken path (a log, a disk image) can cost bounded.
MAX_YAML_BYTES = 1024 * 1024
# None of our schemas nests more than six levels; PyYAML composes nodes recursively, so an
# unbounded depth ends in a RecursionError instead of a message.
MAX_YAML_DEPTH = 32


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
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        return text
    return repr(text[:40]) + ("…" if len(text) > 40 else "")


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader without alias bombs, unbounded nesting or duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

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
            return super().compose_node(parent, index)
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
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            line = key.start_mark.line + 1
            identity = (key.tag, key.value)
            if identity in first_line:
                raise _Refused(
                    line, f"{_shown(key.value)} is given twice (first on line {first_line[identity]}); keep one"
                )
            first_line[identity] = line
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as exc:
            # A plain value that looks like a date or a number but is not one (2024-13-01, an
            # integer of 5,000 digits) fails deep inside PyYAML with a bare ValueError.
            # The value itself is not shown: it may be a secret written in the file.
            kind = node.tag.rsplit(":", 1)[-1]
            raise _Refused(
                node.start_mark.line + 1,
                f"the value at column {node.start_mark.column + 1} is not a valid {kind} "
                f"({str(exc).split(':')[0][:80]}); quote it to make it text",
            ) from None


def read_yaml(path: str) -> Any:
    """The parsed document (``None`` for an empty file); :class:`YamlFileError` naming the first problem."""
    try:
        with open(path, "rb") as file:
            # The size is checked before reading, and the read is bounded too: a pipe or a
            # file still growing has no size to check.
            size = os.fstat(file.fileno()).st_size
            data = b"" if size > MAX_YAML_BYTES else file.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise YamlFileError(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_YAML_BYTES or len(data) > MAX_YAML_BYTES:
        raise YamlFileError(
            f"{path} is larger than {MAX_YAML_BYTES // 1024} KiB, more than any configuration needs; "
            "check that this is the right file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - BoundedLoader is a SafeLoader
    except _Refused as exc:
        raise YamlFileError(f"{path}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        raise YamlFileError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None

"""One way to read a configuration file and one way to say what is wrong with it.

Every YAML file the exporter reads (the settings file with its accounts and instances, the web
configuration, the rules configuration, a ``pull-config set`` file) is read by :func:`load_document`
through the bounded reader of :mod:`idaas_sync_exporter.config.yamlfile`, checked by a strict pydantic
model, and its problems told by :func:`describe`, one line each, all of them::

    exporter.yaml:12:7: instances[2].poll_interval_seconds: Input should be greater than or equal to 1

The position is that of the value at fault (of the key, for a key that is not allowed), found from
the YAML node marks; a value is quoted only where its caller allows it, never one that may be a
secret, and always cut and escaped by :func:`idaas_sync_exporter.files.shown`.
"""

from __future__ import annotations

import re
import typing
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from idaas_sync_exporter.config.yamlfile import MarkedYaml, read_marked_yaml
from idaas_sync_exporter.files import shown, shown_name, shown_path

Loc = tuple[Hashable, ...]
# A file of thousands of mistakes is reported by its first ones: more lines help nobody, and each
# line's position is found by walking the document.
MAX_PROBLEMS = 20
# Unknown keys named per mapping; a mapping of thousands of them is one mistake.
MAX_UNKNOWN_KEYS_SHOWN = 5
# pydantic's own words for the kinds of value, said the way the rest of our messages say them.
_KIND_WORDS = {
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "invalid_key": "must be a name (text), not another kind of value",
    "missing": "required",
}


@dataclass(frozen=True, slots=True, eq=False)
class Document:
    """What a file (or the values standing in for one) holds, and where each value was written.

    ``keys`` renames top-level keys: the settings are validated under their own names
    (``poll_interval_seconds``) but written in the file as the user spelled them.
    """

    name: str | None
    data: Any
    marked: MarkedYaml = field(default_factory=lambda: MarkedYaml(None))
    keys: Mapping[Hashable, Hashable] = field(default_factory=dict)

    def position(self, path: Sequence[Hashable], *, of_key: bool = False) -> str | None:
        """``file:line:col`` of ``path``, ``file`` when it has no position, None when not from a file."""
        if self.name is None:
            return None
        in_file = self._in_file(path)
        found = self.marked.position(in_file, of_key=of_key) if in_file is not None else None
        return f"{self.name}:{found[0]}:{found[1]}" if found is not None else self.name

    def _in_file(self, path: Sequence[Hashable]) -> Sequence[Hashable] | None:
        """``path`` as the file spells it; None when its value did not come from the file."""
        if not path or self.marked.data is self.data:
            return path
        if path[0] not in self.keys:
            return None
        return (self.keys[path[0]], *path[1:])

    def order(self, loc: Sequence[Hashable]) -> tuple[int, int]:
        """Where a pydantic error location points in the file, for sorting; (0, 0) when nowhere."""
        path, of_key = _data_path(loc, self.data)
        in_file = self._in_file(path)
        found = self.marked.position(in_file, of_key=of_key) if in_file is not None else None
        return found or (0, 0)

    def value(self, path: Sequence[Hashable]) -> tuple[bool, Any]:
        """Whether ``path`` is in the data, and the value there."""
        current = self.data
        for step in path:
            found, current = _step(current, step)
            if not found:
                return False, None
        return True, current

    def line(self, path: Sequence[Hashable], problem: str, *, of_key: bool = False, got: str = "") -> str:
        """One problem as every file's problems are told: ``file:line:col: path (got value): problem``."""
        where = self.position(path, of_key=of_key)
        dotted = dotted_path(path)
        head = f"{where}: {dotted}" if where and dotted else where or dotted or "the file"
        return f"{head}{got}: {problem}"


def document_of(data: Any, name: str | None = None) -> Document:
    """Values that were not read from a file (a test's dict, an API answer): problems name paths only."""
    return Document(name, data, MarkedYaml(data))


def load_document(path: str) -> Document:
    """The file at ``path`` read by the bounded YAML reader, positions kept; YamlFileError otherwise."""
    marked = read_marked_yaml(path)
    return Document(shown_path(path), marked.data, marked)


def dotted_path(path: Sequence[Hashable]) -> str:
    """``('accounts', 1, 'assume_role', 'role_arn')`` -> ``accounts[1].assume_role.role_arn``; keys shown cut."""
    text = ""
    for step in path:
        if type(step) is int and text:
            text += f"[{step}]"
        else:
            text += ("." if text else "") + shown_name(step)
    return text


_PATH_PREFIX = re.compile(r"(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]+\]|\.[A-Za-z_][A-Za-z0-9_]*)*)(?P<rest>[: ].*)")


def locate(document: Document, problem: str) -> str:
    """A problem found across entries (``accounts[1].name: ...``), with the position of the path it opens with.

    Such checks (names given twice, references between entries, the values variables and files hold)
    run once the structure is right, and write their path as :func:`dotted_path` does.
    """
    match = _PATH_PREFIX.fullmatch(problem)
    if match is None:
        return f"{document.name}: {problem}" if document.name else problem
    path: list[Hashable] = []
    for name, index in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]", match["path"]):
        path.append(name or int(index))
    where = document.position(path)
    return f"{where}: {problem}" if where else problem


# Which value a problem may quote, by path (a setting's whole value, say, for a problem with one
# item of it); None: none.
ShowValue = Callable[[Loc, ErrorDetails], Loc | None]
Explain = Callable[[Loc, ErrorDetails], str | None]


def describe(
    exc: ValidationError,
    document: Document,
    *,
    model: type[BaseModel] | None = None,
    show_value: ShowValue | None = None,
    explain: Explain | None = None,
    head: Callable[[Loc], str | None] | None = None,
) -> list[str]:
    """Every problem of ``exc`` as one line ``file:line:col: path (got value): problem``.

    ``model`` lists the keys allowed where one is unknown; ``show_value`` says which value a problem
    may quote (none by default: a value may be a secret pasted into the wrong key); ``explain`` words a
    problem its own way (None: the common wording); ``head`` names a value that did not come from the
    file (an environment variable, a flag) in place of its position and path.
    """
    problems: list[str] = []
    unknown: Counter[Loc] = Counter()
    # In the order of the file, as the user reads it (pydantic's is that of the model's fields).
    errors = sorted(exc.errors(include_url=False), key=lambda error: document.order(error["loc"]))
    for index, error in enumerate(errors):
        path, of_key = _data_path(error["loc"], document.data)
        if error["type"] == "extra_forbidden":
            unknown[path[:-1]] += 1
            if unknown[path[:-1]] > MAX_UNKNOWN_KEYS_SHOWN:
                if unknown[path[:-1]] == MAX_UNKNOWN_KEYS_SHOWN + 1:
                    where = dotted_path(path[:-1]) or "the file"
                    problems.append(f"{where}: more unknown keys left out; fix the ones above first")
                continue
            of_key = True
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"{len(errors) - index} more problems left out; fix the ones above first")
            break
        problem = (explain(path, error) if explain else None) or _common_problem(path, error, model)
        got = ""
        quoted = show_value(path, error) if show_value is not None else None
        if quoted is not None:
            present, value = document.value(quoted)
            got = f" (got {shown(value if present else error.get('input'))})"
        named = head(path) if head is not None else None
        problems.append(f"{named}{got}: {problem}" if named else document.line(path, problem, of_key=of_key, got=got))
    return problems


def _data_path(loc: Sequence[Hashable], data: Any) -> tuple[Loc, bool]:
    """The path into the document of a pydantic error location, and whether it is about a key.

    pydantic adds steps of its own (``[key]``, the name of a union member or a validator); only
    the steps that lead through the data are kept.
    """
    path: list[Hashable] = []
    current = data
    for step in loc:
        if step == "[key]":
            return tuple(path), True
        found, below = _step(current, step)
        if found:
            current = below
        elif isinstance(current, dict | list):
            current = None  # a key that is not there: a required one, named and no deeper
        else:
            continue
        path.append(step)
    return tuple(path), False


def _step(current: Any, step: Hashable) -> tuple[bool, Any]:
    """Whether ``current`` holds ``step`` (a key of a mapping, an index of a list), and what is there."""
    if isinstance(current, dict) and step in current:
        return True, current[step]
    if isinstance(current, list) and isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(current):
        return True, current[step]
    return False, None


def _common_problem(path: Loc, error: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, path[:-1]) if model is not None else []
        return f"unknown key (allowed here: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "literal_error":
        expected = str((error.get("ctx") or {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}"
    if kind in _KIND_WORDS:
        return _KIND_WORDS[kind]
    return str(error["msg"]).removeprefix("Value error, ")


def allowed_keys(model: type[BaseModel], path: Sequence[Hashable]) -> list[str]:
    """The keys ``model`` allows in the mapping at ``path`` (its aliases, as the file writes them)."""
    current: type[BaseModel] | None = model
    for step in path:
        if current is None:
            return []
        if type(step) is int:
            continue
        by_key = {info.alias or name: info for name, info in current.model_fields.items()}
        info = by_key.get(str(step))
        current = _model_in(info.annotation) if info is not None else None
    if current is None:
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, itself or as the items of a list, optional or not."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None

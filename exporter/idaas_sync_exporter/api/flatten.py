"""RPC parameter flattening, the way the official SDK turns nested values into query keys.

``{"TargetIds": ["a", "b"]}`` becomes ``TargetIds.1=a&TargetIds.2=b``; objects nest with
dots (``PullProtectedRule.UserDeletedThreshold``). Lists are 1-based and a ``None``
element still consumes its index, as in the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def flatten(params: Mapping[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        _flatten_into(flat, key, value)
    return flat


def _flatten_into(flat: dict[str, str], prefix: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten_into(flat, f"{prefix}.{key}", inner)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, inner in enumerate(value, start=1):
            _flatten_into(flat, f"{prefix}.{index}", inner)
    else:
        flat[prefix] = _scalar(value)


def _scalar(value: Any) -> str:
    # The Python SDK writes str(True) == "True"; servers accept either case.
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def unflatten(flat: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`flatten` for the simulator: numeric path parts become lists.

    Lists come back ordered by index with gaps closed, which is how a server
    reads ``TargetIds.1``/``TargetIds.3``.
    """
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return {key: _listify(value) for key, value in root.items()}


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(key.isdigit() for key in node):
        return [_listify(node[key]) for key in sorted(node, key=int)]
    return {key: _listify(value) for key, value in node.items()}

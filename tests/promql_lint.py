"""PromQL conventions of the shipped rules and dashboard, checked on the parsed expression.

Every selector carries the job matchers; every aggregation and every ``on``/``ignoring``
matching keeps the routing labels (Alertmanager routes on them, and two jobs must never be
summed or joined together).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import promql_parser as promql

from idaas_sync_exporter.rules.config import RulesConfig


def _matchers(selector: str) -> set[tuple[str, str, str]]:
    parsed = promql.parse("x{" + selector + "}")
    assert isinstance(parsed, promql.VectorSelector)
    return {(m.name, str(m.op), m.value) for m in parsed.matchers.matchers}


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, promql.BinaryExpr):
        yield from _nodes(node.lhs)
        yield from _nodes(node.rhs)
    elif isinstance(node, promql.AggregateExpr | promql.ParenExpr | promql.UnaryExpr | promql.SubqueryExpr):
        yield from _nodes(node.expr)
        if isinstance(node, promql.AggregateExpr) and node.param is not None:
            yield from _nodes(node.param)
    elif isinstance(node, promql.Call):
        for arg in node.args:
            yield from _nodes(arg)
    elif isinstance(node, promql.MatrixSelector):
        yield node.vector_selector


def problems(expr: str, config: RulesConfig) -> list[str]:
    """What in ``expr`` breaks the conventions (empty when nothing does)."""
    wanted = _matchers(config.job_selector)
    routing = set(config.aggregation_labels)
    found = []
    for node in _nodes(promql.parse(expr)):
        if isinstance(node, promql.VectorSelector):
            have = {(m.name, str(m.op), m.value) for m in node.matchers.matchers}
            if not wanted <= have:
                found.append(f"selector {node} lacks {config.job_selector}")
        elif isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            labels = set(node.modifier.labels)
            if "Without" in str(node.modifier.type):
                if labels & routing:
                    found.append(f"{node.op} without ({', '.join(sorted(labels))}) drops routing labels")
            elif not routing <= labels:
                found.append(f"{node.op} by ({', '.join(node.modifier.labels)}) drops {sorted(routing - labels)}")
        elif isinstance(node, promql.BinaryExpr) and node.modifier is not None and node.modifier.matching:
            labels = set(node.modifier.matching.labels)
            on = "Include" in str(node.modifier.matching.type)  # on (...); Exclude is ignoring (...)
            if on and labels and not routing <= labels:
                found.append(f"on ({', '.join(sorted(labels))}) ignores {sorted(routing - labels)}")
            if not on and labels & routing:
                found.append(f"ignoring ({', '.join(sorted(labels))}) ignores routing labels")
    return found

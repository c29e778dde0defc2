"""The import order docs/development.md documents, checked on every module: no arrow points back.

Each part of the package has a rank; a module may import only from parts of a lower rank, or
from its own part. The side packages (the simulator, pull-config, the rules) sit beside the
exporter at the rank below the command line: only the command line (and the tests) import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exporter" / "idaas_sync_exporter"
# Lowest first. Everything in a part may import the parts of lower ranks.
RANKS = {
    # Leaves: text and files from outside, logging, links, pacing, memory, the version.
    "__init__": 0,
    "text": 0,
    "files": 1,
    "links": 0,
    "logs": 1,
    "memory": 0,
    "pacing": 0,
    "histogram": 0,
    "api": 4,
    # Configuration: a leaf above the API (it names regions, endpoints and credential sources).
    "config": 5,
    "collect": 7,
    "metrics": 8,
    "service": 9,
    "web": 10,
    "runtime": 11,
    # Beside the exporter: never imported by it.
    "simulator": 11,
    "pullconfig": 11,
    "rules": 11,
    "cli": 12,
    "launcher": 13,
    "__main__": 14,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_part(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports() -> list[tuple[str, str, str]]:
    """(importing file, its part, the imported part) for every import of the package by the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        module = ".".join(("idaas_sync_exporter", *relative.parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("idaas_sync_exporter"):
                names = (
                    [node.module]
                    if node.module != "idaas_sync_exporter"
                    else [
                        f"idaas_sync_exporter.{alias.name}" if _is_part(alias.name) else node.module
                        for alias in node.names
                    ]
                )
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("idaas_sync_exporter")]
            else:
                continue
            found += [(str(relative), _part(module), _part(name)) for name in names]
    return found


def test_every_part_has_a_rank() -> None:
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.glob("*")}
    parts -= {"__pycache__"}
    assert parts <= set(RANKS), f"give these a rank here and in docs/development.md: {sorted(parts - set(RANKS))}"


def test_no_import_points_against_the_documented_order() -> None:
    against = sorted(
        f"{source}: {part} (rank {RANKS[part]}) imports {imported} (rank {RANKS[imported]})"
        for source, part, imported in _imports()
        if imported != part and RANKS[imported] >= RANKS[part] and imported != "__init__"
    )
    assert against == []


@pytest.mark.parametrize(("part", "imported"), [("collect", "metrics"), ("runtime", "simulator"), ("api", "collect")])
def test_the_check_sees_an_arrow_against_the_order(part: str, imported: str) -> None:
    assert RANKS[imported] >= RANKS[part]

"""A target's tally is copied, stored and read back by its fields: nothing shared, nothing lost, the file unchanged."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from idaas_sync_exporter.collect.counting import (
    Exemplar,
    FailedJob,
    LastJob,
    Stored,
    TargetTally,
    _stored_fields,
)


def full_tally() -> TargetTally:
    """A tally with every field away from its default, so the checks below cover each one."""
    tally = TargetTally(
        jobs={("auto", "success"): 3, ("manual", "failed"): 1},
        objects={("user", "created", "success"): 5, ("group", "deleted", "failed"): 1},
        errors={"IdentityProvider.ConnectionFailed": 1},
        duration_buckets=[0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        duration_sum=123.25,
        duration_count=4,
        last_job=LastJob("sync_4", "failed", 1_790_000_000_000, 1_790_000_060_500, {("user", "created", "success"): 2}),
        last_success_end_ms=1_789_999_990_000,
        job_exemplars={
            ("auto", "success"): Exemplar("sync_3", 1_789_999_990_000),
            ("manual", "failed"): Exemplar("sync_4", None),
        },
        error_exemplars={"IdentityProvider.ConnectionFailed": Exemplar("sync_4", 1_790_000_060_500)},
        last_failure=FailedJob(
            "sync_4", "failed", "IdentityProvider.ConnectionFailed", 1_790_000_000_000, 1_790_000_060_500
        ),
    )
    defaults = TargetTally()
    left_default = [
        each.name
        for each in dataclasses.fields(TargetTally)
        if getattr(tally, each.name) == getattr(defaults, each.name)
    ]
    assert left_default == [], "give these fields a value here"
    return tally


def mutable_parts(value: Any, path: str = "tally") -> dict[int, str]:
    """Every object inside ``value`` that could be changed in place, by id, with where it was found."""
    found: dict[int, str] = {}

    def walk(item: Any, where: str) -> None:
        if item is None or isinstance(item, str | bytes | int | float):
            return
        if isinstance(item, dict):
            found[id(item)] = where
            for key, inner in item.items():
                walk(key, f"{where} key {key!r}")
                walk(inner, f"{where}[{key!r}]")
        elif isinstance(item, list | set | bytearray):
            found[id(item)] = where
            for index, inner in enumerate(item):
                walk(inner, f"{where}[{index}]")
        elif isinstance(item, tuple | frozenset):
            for index, inner in enumerate(item):
                walk(inner, f"{where}[{index}]")
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            if not vars(type(item))["__dataclass_params__"].frozen:
                found[id(item)] = where
            for each in dataclasses.fields(item):
                walk(getattr(item, each.name), f"{where}.{each.name}")
        else:
            raise TypeError(f"{where}: teach this test whether a {type(item).__name__} can change in place")

    walk(value, path)
    return found


def test_a_copy_is_equal_and_shares_nothing_that_could_change() -> None:
    tally = full_tally()
    copy = tally.copy()
    assert copy == tally
    original_parts = mutable_parts(tally)
    shared = {where for identity, where in mutable_parts(copy).items() if identity in original_parts}
    assert shared == set()


def test_changing_a_copy_leaves_the_original_as_it_was() -> None:
    tally = full_tally()
    before = orjson.dumps(tally.to_json())
    copy = tally.copy()
    copy.jobs[("auto", "success")] += 1
    copy.objects.clear()
    copy.errors["other"] = 1
    copy.duration_buckets[0] += 1
    assert copy.last_job is not None
    copy.last_job.objects[("user", "deleted", "success")] = 1
    copy.job_exemplars.clear()
    copy.error_exemplars.clear()
    assert orjson.dumps(tally.to_json()) == before


@pytest.mark.parametrize("tally", [full_tally(), TargetTally()], ids=["full", "empty"])
def test_a_tally_round_trips_through_its_json_exactly(tally: TargetTally) -> None:
    written = orjson.dumps(tally.to_json())  # as the store writes it
    read = TargetTally.from_json(json.loads(written))  # as the store reads it
    assert read == tally
    assert orjson.dumps(read.to_json()) == written


def test_the_stored_document_keeps_its_format() -> None:
    # The state file's shape: names, order and rows. Changing it needs a schema version and a migration.
    assert full_tally().to_json() == {
        "jobs": [["auto", "success", 3], ["manual", "failed", 1]],
        "objects": [["user", "created", "success", 5], ["group", "deleted", "failed", 1]],
        "errors": {"IdentityProvider.ConnectionFailed": 1},
        "duration_buckets": [0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        "duration_sum": 123.25,
        "duration_count": 4,
        "last_job": {
            "job_id": "sync_4",
            "status": "failed",
            "start_ms": 1_790_000_000_000,
            "end_ms": 1_790_000_060_500,
            "objects": [["user", "created", "success", 2]],
        },
        "last_success_end_ms": 1_789_999_990_000,
        "job_exemplars": [["auto", "success", "sync_3", 1_789_999_990_000], ["manual", "failed", "sync_4", None]],
        "error_exemplars": [["IdentityProvider.ConnectionFailed", "sync_4", 1_790_000_060_500]],
        "last_failure": {
            "job_id": "sync_4",
            "status": "failed",
            "error_code": "IdentityProvider.ConnectionFailed",
            "start_ms": 1_790_000_000_000,
            "end_ms": 1_790_000_060_500,
        },
    }
    assert list(full_tally().to_json()) == [each.name for each in dataclasses.fields(TargetTally)]


def test_a_document_from_before_exemplars_and_failures_reads_their_defaults() -> None:
    document = full_tally().to_json()
    for name in ("job_exemplars", "error_exemplars", "last_failure"):
        del document[name]
    read = TargetTally.from_json(document)
    assert (read.job_exemplars, read.error_exemplars, read.last_failure) == ({}, {}, None)
    assert read.jobs == full_tally().jobs


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jobs", [["auto", 3]]),  # a cell short
        ("objects", [["user", "created", "success", "failed", 5]]),  # a cell too many
        ("job_exemplars", [["auto", "success", 7, None]]),  # a job id that is no text
        ("error_exemplars", [5]),  # no row at all
    ],
)
def test_a_damaged_row_is_an_error_the_store_treats_as_damage(name: str, value: Any) -> None:
    document = full_tally().to_json()
    document[name] = value
    with pytest.raises((ValueError, TypeError, KeyError)):  # what the store moves a file aside for
        TargetTally.from_json(document)


def test_a_field_that_does_not_say_how_it_is_stored_is_refused() -> None:
    @dataclass
    class Half:
        said: int = field(default=0, metadata={"stored": Stored(copy=int, dump=int, load=lambda raw, name: raw[name])})
        unsaid: int = 0

    with pytest.raises(TypeError, match="unsaid"):
        _stored_fields(Half)

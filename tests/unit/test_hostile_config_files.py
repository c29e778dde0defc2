"""What a configuration file holds cannot exhaust memory, hang the reader, or make an error long or many lines.

Aliases of one long text, explicit tags, merge keys and keys that build the same value, keys and
values with control characters, FIFOs and devices in a file's place, and target ids that could never
fit in a listing's URL.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from idaas_sync_exporter.config.settings import SettingsError, load_settings
from idaas_sync_exporter.config.settings import shown as shown_setting
from idaas_sync_exporter.config.tenancy import load_tenancy
from idaas_sync_exporter.config.yamlfile import YamlFileError, read_yaml
from idaas_sync_exporter.files import SmallFileError, escaped, read_small_file, shown
from idaas_sync_exporter.pullconfig.config import PullConfigError, validate

QUICK_SECONDS = 5
# The most a refusal or a message may allocate at its peak: far below what any bomb here asks for.
PEAK_BYTES = 8 * 1024 * 1024


def _problem(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(str(path))
    (problem,) = caught.value.problems
    assert "\n" not in problem and "\x1b" not in problem
    return problem


def _yaml_refusal(tmp_path: Path, content: str) -> str:
    config = tmp_path / "x.yml"
    config.write_text(content)
    with pytest.raises(YamlFileError) as caught:
        read_yaml(str(config))
    message = str(caught.value)
    assert message.startswith(f"{config}:") and message.isprintable()
    assert len(message.removeprefix(str(config))) < 200, message
    return message.removeprefix(str(config))


# -- one long text, aliased many times --------------------------------------------


def test_aliases_of_a_long_text_are_refused_past_the_file_bound_quickly_and_in_little_memory(tmp_path: Path) -> None:
    config = tmp_path / "amp.yml"
    config.write_text("x: &x " + "A" * 5000 + "\ninstance_ids: [" + ",".join(["*x"] * 5000) + "]\n")
    assert config.stat().st_size < 30_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problem = _problem(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < QUICK_SECONDS
    assert peak < PEAK_BYTES, f"peak {peak} bytes"
    assert f"{config}:2: the aliases up to *x stand for more than 1024 KiB of text" in problem


def test_aliases_of_a_long_text_within_the_bound_are_described_not_written_out(tmp_path: Path) -> None:
    config = tmp_path / "amp.yml"
    config.write_text("instance_ids: [&x " + "A" * 4000 + "," + ",".join(["*x"] * 249) + "]\n")
    tracemalloc.start()
    try:
        problem = _problem(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak {peak} bytes"
    assert problem.startswith(f"{config}:1:15: instance_ids (got a list of 250 items): ")
    # Measured without the file's path, whose length depends on where pytest puts tmp_path.
    assert len(problem.removeprefix(str(config))) < 250


def test_a_shown_value_never_builds_the_whole_repr() -> None:
    huge = ["A" * 1_000_000] * 1000  # a gigabyte once written out
    long_text, large_number = "B" * 10_000_000, 10**5000
    tracemalloc.start()
    try:
        texts = [shown_setting(huge), shown(long_text), shown({"k": huge}), shown(large_number)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak {peak} bytes"
    assert texts[0] == "a list of 1000 items" and texts[2] == "a mapping of 1 keys"
    assert texts[1] == "'" + "B" * 80 + "'…"
    assert texts[3] == "an integer of about 5000 digits"


@pytest.mark.parametrize("text", ["\x1b[2J" * 100, "\u202e" * 300, "a\nb" * 100, "\U0001f600\x00" * 200])
def test_a_shown_text_is_one_short_line_whatever_its_characters(text: str) -> None:
    for message in (shown(text), escaped(text)):
        assert message.isprintable() and len(message) <= 82, message


# -- tags, merge keys, keys that build the same value ------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("log_level: !!bool maybe\n", ":1: the value at column 12 is not a valid bool; quote it to make it text"),
        ("instance_ids: !!timestamp x\n", ":1: the tag '!!timestamp' at column 15 is not accepted"),
        ("a: !!binary aGVsbG8=\n", ":1: the tag '!!binary' at column 4 is not accepted"),
        ("a: !!set {x, y}\n", ":1: the tag '!!set' at column 4 is not accepted"),
        ("a: !!python/object/apply:os.system [id]\n", ":1: the tag '!!python/object/apply:os.system' at column 4"),
        ("a: !<" + "x" * 3000 + "> 1\n", ":1: the tag '" + "x" * 40 + "'… at column 4 is not accepted"),
        ("a: !custom 1\n", ":1: the tag '!custom' at column 4 is not accepted"),
    ],
)
def test_explicit_tags_other_than_plain_types_are_refused_in_one_line(
    tmp_path: Path, content: str, message: str
) -> None:
    assert _yaml_refusal(tmp_path, content).startswith(message)


def test_explicit_plain_tags_are_still_accepted(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    config.write_text('a: !!str 1\nb: !!int "2"\nc: !!bool "true"\nd: !!float 1\ne: !!null ""\n')
    assert read_yaml(str(config)) == {"a": "1", "b": 2, "c": True, "d": 1.0, "e": None}


@pytest.mark.parametrize(
    "content", ["<<: {log_level: debug}\nlog_level: info\n", "<<: [{a: 1}, {a: 2}]\nb: 1\n", "a: {<<: {b: 1}}\n"]
)
def test_merge_keys_are_refused(tmp_path: Path, content: str) -> None:
    assert "merge keys (<<) are not accepted; write the keys out in each mapping" in _yaml_refusal(tmp_path, content)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("true: 1\nTrue: 2\n", ":2: True is given twice (first on line 1 as true); keep one"),
        ("~: 1\nnull: 2\n", ":2: null is given twice (first on line 1 as '~'); keep one"),
        ("1: a\n0x1: b\n", ":2: 0x1 is given twice (first on line 1 as 1); keep one"),
        ("a:\n  1: x\n  true: y\n", ":3: true is given twice (first on line 2 as 1); keep one"),
        ("log_level: info\nlog_level: debug\n", ":2: log_level is given twice (first on line 1); keep one"),
    ],
)
def test_keys_that_build_the_same_value_are_refused(tmp_path: Path, content: str, message: str) -> None:
    assert _yaml_refusal(tmp_path, content) == message


def test_a_quoted_key_is_not_the_same_as_a_number(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    config.write_text("'1': a\n1: b\n")
    assert read_yaml(str(config)) == {"1": "a", 1: "b"}


def test_a_long_undefined_alias_is_named_cut(tmp_path: Path) -> None:
    assert "found undefined alias" in _yaml_refusal(tmp_path, "a: *" + "z" * 5000 + "\n")


# -- keys and values echoed in messages ------------------------------------------


def test_an_unknown_key_is_named_cut_and_escaped(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    # An explicit key (?): a plain one may be at most 1024 characters long.
    config.write_text('instance_ids: [idaas_a]\n? "bad\\nkey\\e[2J' + "k" * 5000 + '"\n: 1\n')
    problem = _problem(config)
    assert problem.startswith(f"{config}:2:3: 'bad\\nkey\\x1b[2j") and problem.endswith(
        "…: unknown setting; see docs/configuration.md"
    )
    assert len(problem.removeprefix(str(config))) < 150


def test_two_spellings_named_escaped(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    config.write_text('poll_interval_seconds: 30\n"POLL_INTERVAL_SECONDS\\e": 60\n')
    # The control character makes the second a key of its own: unknown, named escaped.
    assert "'poll_interval_seconds\\x1b': unknown setting; did you mean poll_interval_seconds?" in _problem(config)


def test_pull_config_keys_and_values_are_named_bounded_and_escaped() -> None:
    config: dict[str, object] = {
        "IncrementalCallbackStatus": "E" * 100_000,
        "PeriodicSyncConfig": {"K\nK" * 1000: 1, "PeriodicSyncType": "\x1b[2J" * 1000},
        **{f"unknown{n}\n": n for n in range(10_000)},
    }
    with pytest.raises(PullConfigError) as caught:
        validate(config)
    problems = caught.value.problems
    assert len(problems) < 12, problems
    for problem in problems:
        assert problem.isprintable() and len(problem) < 300, problem
    assert "the file: more unknown keys left out; fix the ones above first" in problems


# -- files that are not small regular files -----------------------------------------


def _refused_quickly(path: Path | str) -> str:
    """The refusal of ``path``; read in a daemon thread, so that a read that hangs fails the test instead."""
    outcome: list[BaseException | object] = []

    def read() -> None:
        try:
            outcome.append(read_yaml(str(path)))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(QUICK_SECONDS)
    assert not reader.is_alive(), f"reading {path} did not end within {QUICK_SECONDS} s"
    (result,) = outcome
    assert isinstance(result, YamlFileError), result
    return str(result)


def test_a_fifo_a_device_and_a_directory_in_place_of_a_config_file_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yml"
    os.mkfifo(fifo)
    assert _refused_quickly(fifo) == f"{fifo} is not a regular file (a FIFO); point it at the configuration file"
    link = tmp_path / "link.yml"
    link.symlink_to(fifo)
    assert "is not a regular file (a FIFO)" in _refused_quickly(link)
    assert _refused_quickly("/dev/zero").startswith("/dev/zero is not a regular file (a character device)")
    assert "is not a regular file (a directory)" in _refused_quickly(tmp_path)
    with pytest.raises(SettingsError) as caught:
        load_settings(str(fifo))
    assert caught.value.problems == [
        f"config: {fifo} is not a regular file (a FIFO); point it at the configuration file"
    ]


def test_a_sparse_file_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    sparse = tmp_path / "big.yml"
    with sparse.open("wb") as handle:
        handle.truncate(1 << 30)
    assert _refused_quickly(sparse) == (
        f"{sparse} is larger than 1024 KiB; more than any configuration needs; check that this is the right file"
    )


def test_a_small_file_path_with_control_characters_is_named_escaped(tmp_path: Path) -> None:
    path = tmp_path / "a\nb\x1b"
    with pytest.raises(SmallFileError) as caught:
        read_small_file(str(path), 10, too_large="", not_regular="")
    message = str(caught.value)
    assert message.isprintable() and message.endswith("No such file or directory")


def test_a_small_file_is_read_whole_up_to_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_small_file(str(path), 10, too_large="t", not_regular="n") == b"x" * 10
    with pytest.raises(SmallFileError, match=r"is larger than 9 bytes; t$"):
        read_small_file(str(path), 9, too_large="t", not_regular="n")


# -- target ids that cannot fit in a listing's URL ------------------------------------


def test_a_thousand_target_ids_are_refused_naming_the_bound_and_why(tmp_path: Path) -> None:
    config = tmp_path / "tids.yml"
    ids = [f"idp_{n:025d}" for n in range(1000)]
    config.write_text("instance_ids: [idaas_a]\ntarget_ids: [" + ",".join(ids) + "]\n")
    problem = _problem(config)
    assert problem == (
        f"{config}:2:13: target_ids (got a list of 1000 items): 1000 target ids are more than the 100 that fit "
        "in the URL of one job listing (every poll would fail); filter by target_types or directions instead"
    )


def test_target_ids_too_long_to_fit_together_are_refused() -> None:
    ids = ",".join(f"idp_{n}_" + "x" * 60 for n in range(90))
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"instance_ids": "idaas_a", "target_ids": ids})
    (problem,) = caught.value.problems
    assert "characters of the listing URL once encoded, more than the 5000 that fit (every poll would fail)" in problem
    assert len(problem) < 300
    fitting = ",".join(f"idp_{n:025d}" for n in range(100))
    assert len(load_settings(overrides={"instance_ids": "idaas_a", "target_ids": fitting}).target_ids) == 100


def test_an_instance_s_own_target_ids_have_the_same_bound(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    ids = ",".join(f"idp_{n}" for n in range(101))
    config.write_text(f"instances:\n  - id: idaas_a\n    target_ids: [{ids}]\n")
    settings = load_settings(str(config), {"state_path": ""})
    with pytest.raises(SettingsError) as caught:
        load_tenancy(settings, str(config))
    problem = " ".join(caught.value.problems)
    assert "101 target ids are more than the 100 that fit in the URL of one job listing" in problem

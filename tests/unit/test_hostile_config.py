"""What operators hand us as configuration cannot hang, exhaust or silently misconfigure the exporter.

YAML bombs, oversized files and lists, duplicate keys, console URL patterns that choose the link's
host, instance ids that bypass the file's rule, non-ASCII shard ordinals and misspelled variables.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exporter.rules.config import RulesConfigError
from exporter.rules.config import load as load_rules_config
from exporter.settings import SettingsError, load_settings
from exporter.web.config import WebConfigError
from exporter.web.config import load as load_web_config
from exporter.yamlfile import MAX_YAML_BYTES, YamlFileError, read_yaml

# 9 levels of 9 aliases each: about 387 million strings once expanded, in 340 bytes.
BILLION_LAUGHS = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(
            f"{this}: &{this} [{','.join([f'*{prev}'] * 9)}]\n"
            for prev, this in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "instance_ids: *i\n",
    ]
)


def _refusal(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(str(path))
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert "\n" not in problem
    return problem


def test_a_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yml"
    config.write_text(BILLION_LAUGHS)
    assert config.stat().st_size < 400
    started = time.perf_counter()
    problem = _refusal(config)
    assert time.perf_counter() - started < 5
    assert f"{config}:2: the alias *a stands for a list or mapping" in problem


def test_aliases_of_single_values_still_work(tmp_path: Path) -> None:
    config = tmp_path / "anchors.yml"
    config.write_text("region_id: &region ap-southeast-1\ninstances:\n  - id: idaas_a\n    region: *region\n")
    assert read_yaml(str(config))["instances"][0]["region"] == "ap-southeast-1"


def test_an_alias_of_itself_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "loop.yml"
    config.write_text("target_ids: &loop [a, *loop]\n")
    assert "the alias *loop stands for a list or mapping" in _refusal(config)


def test_a_file_over_the_size_bound_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    config = tmp_path / "big.yml"
    config.write_text("target_ids:\n" + "  - t\n" * (MAX_YAML_BYTES // 5))
    started = time.perf_counter()
    problem = _refusal(config)
    assert time.perf_counter() - started < 5
    assert f"{config} is larger than 1024 KiB" in problem


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    config = tmp_path / "deep.yml"
    config.write_text("[" * 100_000)
    assert "nested more than 32 levels deep" in _refusal(config)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x: 2024-13-01\n", "x.yml:1: 2024-13-01 is not a valid timestamp"),
        ("x: " + "1" * 5000 + "\n", "x.yml:1: '1111111111"),
    ],
)
def test_values_pyyaml_cannot_build_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "x.yml"
    config.write_text(content)
    with pytest.raises(YamlFileError) as caught:
        read_yaml(str(config))
    assert message in str(caught.value) and "quote it to make it text" in str(caught.value)
    assert len(str(caught.value).removeprefix(str(config))) < 200


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yml"
    config.write_bytes("region_id: caf\xe9\n".encode("latin-1"))
    assert f"{config}: not UTF-8 text (byte 14)" in _refusal(config)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "instance_ids: [a]\nendpoint: a.example\nlog_level: info\nendpoint: b.example\n",
            "x.yml:4: endpoint is given twice (first on line 2)",
        ),
        (
            "accounts:\n  - name: a\n    access_key:\n      id_env: A_ID\n"
            "      secret_env: A_SECRET\n      secret_env: B_SECRET\n",
            "x.yml:6: secret_env is given twice (first on line 5)",
        ),
        ("accounts: []\ninstances: []\naccounts:\n  - name: b\n", "x.yml:3: accounts is given twice (first on line 1)"),
        ("directions: {a: 1, a: 2}\n", "x.yml:1: a is given twice (first on line 1)"),
    ],
)
def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "x.yml"
    config.write_text(content)
    assert message in _refusal(config)


def test_every_yaml_file_goes_through_the_bounded_reader(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yml"
    bomb.write_text(BILLION_LAUGHS)
    with pytest.raises(RulesConfigError, match="stands for a list or mapping"):
        load_rules_config(bomb)
    with pytest.raises(WebConfigError, match="stands for a list or mapping"):
        load_web_config(str(bomb))
    twice = tmp_path / "twice.yml"
    twice.write_text("stale_seconds: 60\nstale_seconds: 90\n")
    with pytest.raises(RulesConfigError, match="stale_seconds is given twice"):
        load_rules_config(twice)

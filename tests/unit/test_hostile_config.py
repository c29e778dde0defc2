"""What operators hand us as configuration cannot hang, exhaust or silently misconfigure the exporter.

YAML bombs, oversized files and lists, duplicate keys, console URL patterns that choose the link's
host, instance ids that bypass the file's rule, non-ASCII shard ordinals and misspelled variables.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from idaas_sync_exporter.cli import main
from idaas_sync_exporter.config.settings import (
    ENV_PREFIX,
    REVISION_VARIABLE,
    SettingsError,
    load_settings,
    unknown_variables,
)
from idaas_sync_exporter.config.shards import Shard, ShardError, resolve
from idaas_sync_exporter.config.tenancy import load_tenancy
from idaas_sync_exporter.config.yamlfile import MAX_YAML_BYTES, YamlFileError, read_yaml
from idaas_sync_exporter.rules.config import RulesConfigError
from idaas_sync_exporter.rules.config import load as load_rules_config
from idaas_sync_exporter.web.config import WebConfigError
from idaas_sync_exporter.web.config import load as load_web_config

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
        ("x: 2024-13-01\n", "x.yml:1: the value at column 4 is not a valid timestamp"),
        ("x: " + "1" * 5000 + "\n", "x.yml:1: the value at column 4 is not a valid int"),
    ],
)
def test_values_pyyaml_cannot_build_are_one_line(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "x.yml"
    config.write_text(content)
    with pytest.raises(YamlFileError) as caught:
        read_yaml(str(config))
    assert message in str(caught.value) and "quote it to make it text" in str(caught.value)
    # The value may be a secret written in the file: it is located, never quoted.
    assert content[3:13] not in str(caught.value)
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


def test_two_thousand_target_ids_too_many_are_refused_quickly(tmp_path: Path) -> None:
    many = ",".join(f"idp_{n}" for n in range(2_000_000))
    started = time.perf_counter()
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"target_ids": many})
    assert time.perf_counter() - started < 5
    (problem,) = caught.value.problems
    assert problem.startswith("--target-ids (got 'idp_0,idp_1,") and "more than the 100 that fit in the URL" in problem
    assert len(problem) < 300
    # As a file, the same list is over the size bound before it is parsed.
    config = tmp_path / "many.yml"
    config.write_text("target_ids:\n" + "".join(f"  - idp_{n}\n" for n in range(2_000_000)))
    started = time.perf_counter()
    assert "is larger than 1024 KiB" in _refusal(config)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("key", "limit"),
    [("instance_ids", 1000), ("target_types", 10), ("directions", 10)],
)
def test_each_list_setting_has_a_bound(key: str, limit: int) -> None:
    with pytest.raises(SettingsError, match=f"at most {limit} items"):
        load_settings(overrides={key: ",".join(["idaas_a"] * (limit + 1))})


def test_a_config_file_with_too_many_instances_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    config.write_text("instances:\n" + "".join(f"  - id: idaas_{n}\n" for n in range(1001)))
    with pytest.raises(SettingsError) as caught:
        load_tenancy(load_settings(str(config)), str(config))
    assert caught.value.problems == [
        f"{config}:2:3: instances: List should have at most 1000 items after validation, not 1001"
    ]


@pytest.mark.parametrize("bad", ["<script>", "idaas a", "i" * 65, "idaas_a\nidaas_b", "idaas_é"])
def test_an_instance_id_follows_one_rule_from_every_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_INSTANCE_IDS", f"idaas_ok,{bad}")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert problem.startswith("IDAAS_EXPORTER_INSTANCE_IDS") and "is not an instance id: use 1 to 64 letters" in problem
    monkeypatch.delenv("IDAAS_EXPORTER_INSTANCE_IDS")
    config = tmp_path / "x.yml"
    config.write_text(yaml.safe_dump({"instances": [{"id": bad}]}))
    with pytest.raises(
        SettingsError, match=r"x\.yml:2:7: instances\[0\]\.id: '.*' is not an instance id: use 1 to 64 letters"
    ):
        load_tenancy(load_settings(str(config)), str(config))
    assert main(["pull-config", "get", "--instance-id", bad, "--identity-provider-id", "idp_x"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("idaas-sync-exporter: error: --instance-id: ") and "is not an instance id" in line


def test_a_misspelled_variable_is_refused_naming_the_setting_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + "POLL_INTERVAL_SECOND", "secret-looking-value")
    monkeypatch.setenv(ENV_PREFIX + "LISTEN_ADRESS", "127.0.0.1:1")
    monkeypatch.setenv(ENV_PREFIX + "NOTHING_LIKE_IT", "x")
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"instance_ids": "idaas_a"})
    assert caught.value.problems == [
        f"{ENV_PREFIX}LISTEN_ADRESS: unknown variable; did you mean {ENV_PREFIX}LISTEN_ADDRESS? "
        "rename or unset it (settings: docs/configuration.md)",
        f"{ENV_PREFIX}NOTHING_LIKE_IT: unknown variable; no setting has that name; "
        "rename or unset it (settings: docs/configuration.md)",
        f"{ENV_PREFIX}POLL_INTERVAL_SECOND: unknown variable; did you mean {ENV_PREFIX}POLL_INTERVAL_SECONDS? "
        "rename or unset it (settings: docs/configuration.md)",
    ]
    assert "secret-looking-value" not in str(caught.value)


def test_the_commands_that_read_settings_exit_2_on_a_misspelled_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_PREFIX + "LISTEN_ADRESS", "hidden-value")
    for command in (
        ["once", "--demo"],
        ["serve", "--demo"],
        ["pull-config", "get", "--instance-id", "idaas_a", "--identity-provider-id", "idp"],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"idaas-sync-exporter: invalid setting: {ENV_PREFIX}LISTEN_ADRESS: unknown variable; "
            f"did you mean {ENV_PREFIX}LISTEN_ADDRESS? rename or unset it (settings: docs/configuration.md)"
        ]
        assert "hidden-value" not in err


def test_variables_that_are_not_settings_but_ours_or_kubernetes_stay_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REVISION_VARIABLE, "0123abc")
    # What Kubernetes sets for a Service named idaas-exporter in the pod's namespace.
    monkeypatch.setenv(ENV_PREFIX + "SERVICE_HOST", "10.96.0.12")
    monkeypatch.setenv(ENV_PREFIX + "SERVICE_PORT", "10129")
    monkeypatch.setenv(ENV_PREFIX + "SERVICE_PORT_HTTP_METRICS", "10129")
    monkeypatch.setenv(ENV_PREFIX + "PORT", "tcp://10.96.0.12:10129")
    monkeypatch.setenv(ENV_PREFIX + "PORT_10129_TCP", "tcp://10.96.0.12:10129")
    monkeypatch.setenv(ENV_PREFIX + "PORT_10129_TCP_PROTO", "tcp")
    monkeypatch.setenv(ENV_PREFIX + "PORT_10129_TCP_PORT", "10129")
    monkeypatch.setenv(ENV_PREFIX + "PORT_10129_TCP_ADDR", "10.96.0.12")
    assert load_settings(overrides={"instance_ids": "idaas_a"}).instance_ids == ["idaas_a"]
    # The same names with a value Kubernetes never writes are someone's setting, misspelled.
    monkeypatch.setenv(ENV_PREFIX + "PORT", "9000")
    with pytest.raises(SettingsError, match=f"{ENV_PREFIX}PORT: unknown variable"):
        load_settings(overrides={"instance_ids": "idaas_a"})


def test_every_variable_the_project_uses_is_accepted() -> None:
    root = Path(__file__).resolve().parents[2]
    sources = [root / "Dockerfile", root / "README.md"]
    for folder in ("deploy", "docs", "bench", "exporter", "tests", "grafana"):
        sources += [path for path in (root / folder).rglob("*") if path.is_file() and path.suffix != ".pyc"]
    used = set()
    for path in sources:
        if path.resolve() == Path(__file__).resolve():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            # Lines that show the refusal of a misspelled name, as the documentation does, are examples.
            if "unknown variable" not in line:
                used |= set(re.findall(ENV_PREFIX + r"[A-Z0-9_]*[A-Z0-9]", line))
    assert f"{ENV_PREFIX}INSTANCE_IDS" in used and REVISION_VARIABLE in used
    assert unknown_variables(dict.fromkeys(used, "x")) == []


def test_a_misspelled_key_in_the_file_names_the_closest_setting(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    config.write_text("instance_ids: [idaas_a]\npoll_interval_second: 30\n")
    assert f"{config}:2:1: poll_interval_second: unknown setting; did you mean poll_interval_seconds?" in _refusal(
        config
    )


def test_two_spellings_of_one_setting_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "x.yml"
    config.write_text("poll-interval-seconds: 30\npoll_interval_seconds: 60\n")
    assert _refusal(config) == (
        f"config: {config}: poll-interval-seconds and poll_interval_seconds are the same setting "
        "(poll_interval_seconds); keep one"
    )


def test_a_long_bad_value_is_quoted_cut(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"instance_ids": "idaas_a", "region_id": "r" * 100_000})
    (problem,) = caught.value.problems
    assert len(problem) < 300 and "…" in problem


def test_an_endpoint_with_a_password_is_refused_without_repeating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--instance-ids", "i", "--state-path", "", "--endpoint", "https://user:pw@eiam.example"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("idaas-sync-exporter: invalid setting: --endpoint: the endpoint must not carry a user name")
    assert "pw" not in line
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"instance_ids": "idaas_a", "endpoint": "https://user:hunter2@eiam.example"})
    assert "hunter2" not in str(caught.value) and "must not carry a user name or password" in str(caught.value)
    config = tmp_path / "x.yml"
    config.write_text("instances:\n  - id: idaas_a\n    endpoint: https://user:hunter2@eiam.example\n")
    with pytest.raises(SettingsError) as caught:
        load_tenancy(load_settings(str(config)), str(config))
    assert "hunter2" not in str(caught.value) and "instances[0].endpoint:" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"instance_ids": "idaas_a", "endpoint": "eiam.example/" + "p" * 100_000})
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("https://{job_id}", "host is written out before any placeholder"),
        ("https://x.example{job_id}/", "host is written out before any placeholder"),
        ("https://console.example:{job_id}/", "host is written out before any placeholder"),
        ("https://user@console.example/{job_id}", "must be an https:// URL"),
        ("http://console.example/{job_id}", "must be an https:// URL"),
        ("https://console.example/{job_id:>30000000}", "has {job_id} with a format spec or conversion"),
        ("https://console.example/{job_id!r}", "has {job_id} with a format spec or conversion"),
        ("https://console.example/{job_id.__class__}", "unknown placeholder {job_id.__class__}"),
        ("https://console.example/{target_id[0]}", "unknown placeholder {target_id[0]}"),
        ("https://console.example/ {job_id}", "must not contain spaces or control characters"),
        ("https://console.example/" + "a" * 3000, "is 3024 characters long"),
    ],
)
def test_a_console_pattern_cannot_let_a_job_choose_the_link(pattern: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides={"instance_ids": "idaas_a", "console_job_url": pattern})
    (line,) = caught.value.problems
    assert line.startswith("--console-job-url (got ") and problem in line
    assert len(line) < 400


@pytest.mark.parametrize(
    "pattern",
    [
        "https://yundun.console.aliyun.com/?p=idaas",
        "https://console.example/{instance_id}/jobs/{job_id}?target={target_id}&d={direction}#{target_type}",
        "https://[::1]:8443/{job_id}",
        "https://console.example?job={job_id}",
    ],
)
def test_console_patterns_with_a_fixed_host_are_accepted(pattern: str) -> None:
    settings = load_settings(overrides={"instance_ids": "idaas_a", "console_job_url": pattern})
    assert settings.console_job_url == pattern


@pytest.mark.parametrize("hostname", ["exporter-\u0663", "exporter-\uff11", "exporter-1\n", "exporter-\u00b2"])
def test_a_shard_ordinal_is_ascii_digits_only(hostname: str) -> None:
    with pytest.raises(ShardError, match="has no StatefulSet ordinal"):
        resolve(4, None, hostname)
    assert resolve(4, None, "exporter-3") == Shard(3, 4)

"""One loader and one way of telling a file's problems: positions, every problem, no secret quoted."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from idaas_sync_exporter.config.settings import SettingsError, load_settings
from idaas_sync_exporter.config.tenancy import load_tenancy
from idaas_sync_exporter.config.validation import MAX_PROBLEMS, Document, describe, load_document, locate
from idaas_sync_exporter.config.yamlfile import read_marked_yaml
from idaas_sync_exporter.pullconfig.command import load_file
from idaas_sync_exporter.pullconfig.config import PullConfigError
from idaas_sync_exporter.rules.config import RulesConfigError
from idaas_sync_exporter.rules.config import load as load_rules
from idaas_sync_exporter.web.config import WebConfigError
from idaas_sync_exporter.web.config import load as load_web


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    port: int = Field(1, ge=1)


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = "x"
    items: list[Inner] = []


def _problems(tmp_path: Path, text: str, model: type[BaseModel] = Outer) -> list[str]:
    path = tmp_path / "f.yml"
    path.write_text(text)
    document = load_document(str(path))
    with pytest.raises(ValidationError) as caught:
        model.model_validate(document.data)
    return [problem.removeprefix(f"{path}:") for problem in describe(caught.value, document, model=model)]


def test_positions_are_those_of_the_value_or_of_an_unknown_key(tmp_path: Path) -> None:
    text = "name: 5\nitems:\n  - port: 0\n  -   port: 2\n      prot: 3\n"
    assert _problems(tmp_path, text) == [
        "1:7: name: must be a string",
        "3:11: items[0].port: Input should be greater than or equal to 1",
        "5:7: items[1].prot: unknown key (allowed here: port)",
    ]


def test_a_missing_value_is_placed_where_its_mapping_is(tmp_path: Path) -> None:
    class Needs(BaseModel):
        inner: Inner
        other: int

    path = tmp_path / "f.yml"
    path.write_text("inner:\n  port: 3\n")
    document = load_document(str(path))
    with pytest.raises(ValidationError) as caught:
        Needs.model_validate(document.data)
    assert describe(caught.value, document) == [f"{path}:1:1: other: required"]


def test_marks_follow_keys_as_the_values_they_build(tmp_path: Path) -> None:
    path = tmp_path / "f.yml"
    path.write_text("1: a\n'1': b\nlist: [x, {y: z}]\n")
    marked = read_marked_yaml(str(path))
    assert marked.position([1]) == (1, 4)
    assert marked.position(["1"]) == (2, 6)
    assert marked.position(["list", 1, "y"]) == (3, 15)
    assert marked.position(["list", 1, "y"], of_key=True) == (3, 12)
    assert marked.position(["absent", 0]) == (1, 1)  # the document, where the key belongs


def test_every_problem_is_told_up_to_a_bound_and_unknown_keys_are_counted(tmp_path: Path) -> None:
    items = "".join(f"  - port: {-n}\n" for n in range(50))
    problems = _problems(tmp_path, "items:\n" + items)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == "30 more problems left out; fix the ones above first"
    unknown = _problems(tmp_path, "".join(f"k{n}: 1\n" for n in range(40)))
    assert len(unknown) == 6 and unknown[-1] == "the file: more unknown keys left out; fix the ones above first"


def test_problems_across_entries_are_placed_by_the_path_they_open_with(tmp_path: Path) -> None:
    path = tmp_path / "f.yml"
    path.write_text("accounts:\n  - name: a\n  - name: a\n")
    document = load_document(str(path))
    assert locate(document, "accounts[1].name: 'a' is already the name of accounts[0]") == (
        f"{path}:3:11: accounts[1].name: 'a' is already the name of accounts[0]"
    )
    assert locate(Document("x.yml", {}), "instances: list them") == "x.yml: instances: list them"


def test_every_file_kind_names_its_problems_alike(tmp_path: Path) -> None:
    """The settings, the tenancy part, the rules, the web config and a pull-config file: one form."""
    settings = tmp_path / "exporter.yaml"
    settings.write_text("instance_ids: [idaas_a]\nlog_level: loud\ndirections: [up]\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(str(settings))
    assert refused.value.problems == [
        f"{settings}:2:12: log_level (got 'loud'): 'loud' is not one of debug, info, warning, error",
        f"{settings}:3:13: directions (got a list of 1 items): 'up' is not one of ingress, egress",
    ]
    settings.write_text("instances:\n  - id: idaas_a\n    poll_interval_seconds: 0\n")
    with pytest.raises(SettingsError) as refused:
        load_tenancy(load_settings(str(settings), {"state_path": ""}), str(settings))
    assert refused.value.problems == [
        f"{settings}:3:28: instances[0].poll_interval_seconds: Input should be greater than or equal to 1"
    ]
    rules = tmp_path / "rules.yml"
    rules.write_text("failed_window: soon\nstale_seconds: -1\n")
    with pytest.raises(RulesConfigError) as rules_refused:
        load_rules(rules)
    assert rules_refused.value.problems == [
        f"rules config: {rules}:1:16: failed_window: must be a Prometheus duration such as 15m",
        f"rules config: {rules}:2:16: stale_seconds: Input should be greater than 0",
    ]
    pull = tmp_path / "idp.yml"
    pull.write_text("IncrementalCallbackStatus: enabled\nPeriodicSyncConfig:\n  PeriodicSyncType: weekly\n")
    with pytest.raises(PullConfigError) as pull_refused:
        load_file(str(pull))
    assert pull_refused.value.problems == [
        f"{pull}:3:21: PeriodicSyncConfig.PeriodicSyncType (got 'weekly'): must be one of cron, time"
    ]


def test_a_web_config_tells_every_problem_and_never_a_password_or_hash(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "http_server_config:\n  headers:\n    X-Powered-By: me\n"
        f"basic_auth_users:\n  alice: '{hashed}'\n  bob: hunter2-plain\n  carol: '{hashed[:-1]}'\n"
    )
    with pytest.raises(WebConfigError) as caught:
        load_web(str(web))
    assert caught.value.problems == [
        f"web config: {web}:3:5: http_server_config.headers.X-Powered-By: must be one of Content-Security-Policy, "
        "X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, Strict-Transport-Security",
        f"web config: {web}:6:8: basic_auth_users.bob: must be a bcrypt hash ($2y$...), not a password",
        f"web config: {web}:7:10: basic_auth_users.carol: is not a bcrypt hash of cost 4 to 16; "
        "make one with htpasswd -nbBC 10 '' PASSWORD",
    ]
    assert "hunter2" not in str(caught.value) and hashed[10:] not in str(caught.value)


def test_a_secret_setting_is_never_quoted_whichever_file_gives_it(tmp_path: Path) -> None:
    settings = tmp_path / "exporter.yaml"
    settings.write_text("instance_ids: [idaas_a]\naccess_key_secret: [s3cret-value]\n")
    with pytest.raises(SettingsError) as refused:
        load_settings(str(settings))
    assert "s3cret" not in str(refused.value.problems)
    assert refused.value.problems[0].startswith(f"{settings}:2:20: access_key_secret: ")


DOCS_EXAMPLE = """\
accounts:
  - name: identity-team
    access_key:
      id_env: IDENTITY_KEY_ID
      secret_env: IDENTITY_KEY_SECRET
  - name: customer-a
    assume_role:
      role_arn: acs:ram::1234567890123456:role/idaas reader
      source_account: identity-team
instances:
  - id: idaas_a
    account: customer-a
  - id: idaas_b
    account: customer-b
"""


def test_the_error_lines_docs_configuration_shows_are_what_the_exporter_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("exporter.yaml").write_text(DOCS_EXAMPLE)
    monkeypatch.setenv("IDENTITY_KEY_ID", "LTAI5tAbc")
    settings = load_settings(None, {"state_path": ""})
    printed = []
    for text in (DOCS_EXAMPLE, DOCS_EXAMPLE.replace("idaas reader", "idaas-reader")):
        Path("exporter.yaml").write_text(text)
        with pytest.raises(SettingsError) as refused:
            load_tenancy(settings, "exporter.yaml")
        printed += [f"idaas-sync-exporter: invalid setting: {problem}" for problem in refused.value.problems]
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    shown = page.split("naming its place in the file:\n\n```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert shown == printed

"""Accounts of the config file from a hostile world: a secret in the wrong field is named, never shown.

A secret pasted where the name of its variable or the path of its file belongs is a valid name or
path, so every problem with a secret's variable or file names the field only; and the files the
credentials library reads itself (an OIDC token, a CLI profile, the default chain's) are checked
like key files before it reads them: a FIFO, a device or a huge file is refused in one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.accounts import Account, credentials_for, read_environment_keys
from exporter.api.credentials import CredentialsError
from exporter.settings import SettingsError, load_settings
from exporter.tenancy import parse_tenancy_file, plan_tenancy
from tests.conftest import AK_ID

# A real secret is 30 letters and digits starting with a letter: a valid variable name and path.
PASTED_SECRET = "Xp7BzQ0rTs9KdLm2NvW4yHj6UcEa8G"
PASTED_TOKEN = "CAIS+/sEc2" + "q9Zt" * 20 + "=="


def _never_shown(text: str, *secrets: str) -> None:
    """Fails without printing ``text``, which would show the secret in the test output."""
    for secret in secrets:
        if secret in text:
            pytest.fail("a pasted secret is in the text", pytrace=False)


def _problems(document: str, environ: dict[str, str] | None = None) -> list[str]:
    settings = load_settings(overrides={"state_path": ""})
    with pytest.raises(SettingsError) as refused:
        plan_tenancy(settings, yaml.safe_load(document), environ=environ or {}, file_name="x.yml")
    return list(refused.value.problems)


def test_a_secret_pasted_as_a_variable_name_or_a_path_is_never_shown() -> None:
    problems = _problems(
        f"""
accounts:
  - name: prod
    access_key: {{id_env: AK_ID, secret_env: {PASTED_SECRET}}}
  - name: prod2
    access_key: {{id: {AK_ID}, secret_file: 9{PASTED_SECRET[:-1]}, security_token_env: T{PASTED_SECRET}}}
  - name: prod3
    access_key: {{id: {AK_ID}, secret_env: S, security_token_file: /{PASTED_SECRET}}}
instances: [{{id: idaas_x, account: prod}}]
""",
        {"AK_ID": AK_ID, "S": "s" * 30},
    )
    _never_shown(str(problems), PASTED_SECRET, PASTED_SECRET[:-1])
    assert sorted(problems) == [
        "x.yml: accounts[0].access_key.secret_env: the environment variable it names "
        "(the name is not shown: it may be a pasted secret) is not set or empty; "
        "set it, or read the value from a file (*_file)",
        "x.yml: accounts[1].access_key.secret_file: cannot read the file it names "
        "(the path is not shown: it may be a pasted secret): No such file or directory",
        "x.yml: accounts[1].access_key.security_token_env: the environment variable it names "
        "(the name is not shown: it may be a pasted secret) is not set or empty; "
        "set it, or read the value from a file (*_file)",
        "x.yml: accounts[2].access_key.security_token_file: cannot read the file it names "
        "(the path is not shown: it may be a pasted secret): No such file or directory",
    ]


def test_a_pasted_token_that_is_no_variable_name_is_not_quoted() -> None:
    key = {"id": AK_ID, "secret_env": "S", "security_token_env": PASTED_TOKEN}
    document = {"accounts": [{"name": "a", "access_key": key}]}
    with pytest.raises(SettingsError) as refused:
        parse_tenancy_file(document)
    _never_shown(str(refused.value.problems), PASTED_TOKEN[:10])
    assert refused.value.problems == [
        "accounts[0].access_key.security_token_env: must be an environment variable name "
        "(letters, digits and '_') (the value is not shown: it may be a pasted secret)"
    ]


def test_a_bad_value_in_a_secrets_variable_or_file_names_the_field_only(tmp_path: Path) -> None:
    key_file = tmp_path / PASTED_SECRET
    key_file.write_text("two\nlines\n")
    accounts = list(
        parse_tenancy_file(
            {
                "accounts": [
                    {"name": "a", "access_key": {"id": AK_ID, "secret_env": PASTED_SECRET}},
                    {"name": "b", "access_key": {"id": AK_ID, "secret_file": str(key_file)}},
                ]
            }
        ).accounts
    )
    problems = read_environment_keys(accounts, {PASTED_SECRET: "has a space"})
    _never_shown(str(problems), PASTED_SECRET)
    assert [problem.split(": the AccessKey secret has")[0] for problem in problems] == [
        "accounts[0].access_key.secret_env",
        "accounts[1].access_key.secret_file",
    ]


def test_the_variable_and_path_of_an_id_are_still_shown(tmp_path: Path) -> None:
    problems = _problems(
        f"accounts: [{{name: a, access_key: {{id_env: MISSING_ID, secret_env: S}}}}, "
        f"{{name: b, access_key: {{id_file: {tmp_path}/absent, secret_env: S}}}}]\ninstances: [{{id: x, account: a}}]",
        {"S": "s" * 30},
    )
    assert problems == [
        "x.yml: accounts[0].access_key.id_env: the environment variable MISSING_ID is not set or empty; "
        "set it, or read the value from a file (*_file)",
        f"x.yml: accounts[1].access_key.id_file: cannot read {tmp_path}/absent: No such file or directory",
    ]


async def test_a_secret_file_gone_at_run_time_is_named_by_its_field_only(tmp_path: Path) -> None:
    key_file = tmp_path / PASTED_SECRET
    key_file.write_text("s" * 30)
    account = Account.model_validate({"name": "a", "access_key": {"id": AK_ID, "secret_file": str(key_file)}})
    provider = credentials_for(account, {"a": account}, environ={})
    assert (await provider.get()).access_key_id == AK_ID
    key_file.unlink()
    with pytest.raises(CredentialsError) as refused:
        await provider.get()
    _never_shown(str(refused.value), PASTED_SECRET)
    assert "secret_file: cannot read the file it names (the path is not shown" in str(refused.value)

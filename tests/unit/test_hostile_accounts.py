"""Accounts of the config file from a hostile world: a secret in the wrong field is named, never shown.

A secret pasted where the name of its variable or the path of its file belongs is a valid name or
path, so every problem with a secret's variable or file names the field only; and the files the
credentials library reads itself (an OIDC token, a CLI profile, the default chain's) are checked
like key files before it reads them: a FIFO, a device or a huge file is refused in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from idaas_sync_exporter.api import credentials as credentials_module
from idaas_sync_exporter.api.credentials import (
    MAX_OIDC_TOKEN_BYTES,
    MAX_PROFILE_FILE_BYTES,
    CredentialsError,
    CredentialsProvider,
    DefaultChainCredentialsProvider,
    default_chain_files,
)
from idaas_sync_exporter.config.accounts import Account, credentials_for, read_environment_keys
from idaas_sync_exporter.config.settings import SettingsError, load_settings
from idaas_sync_exporter.config.tenancy import parse_tenancy_file, plan_tenancy
from tests.conftest import AK_ID

MARKER = "MARKER-7c2e0a-never-shown"
# A file the library must not read is refused this fast; reading a FIFO never ends.
QUICK_SECONDS = 2.0
ROLE = "acs:ram::123456:role/r"
OIDC_PROVIDER = "acs:ram::123456:oidc-provider/p"
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


@pytest.mark.parametrize(
    "path",
    ["/run/" + PASTED_TOKEN * 4, f"/run/{PASTED_SECRET}\x1b[2J", PASTED_SECRET],
    ids=["long", "control character", "plain"],  # an id made of the path would show the secret
)
def test_a_secret_files_path_is_not_shown_however_a_message_would_quote_it(tmp_path: Path, path: str) -> None:
    accounts = list(
        parse_tenancy_file(
            {"accounts": [{"name": "a", "access_key": {"id": AK_ID, "secret_env": "S", "security_token_file": path}}]}
        ).accounts
    )
    problems = read_environment_keys(accounts, {"S": "s" * 30})
    _never_shown(str(problems), PASTED_TOKEN[5:15], PASTED_SECRET[:10])
    assert problems[0].startswith("accounts[0].access_key.security_token_file: cannot read the file it names")


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


def test_a_secret_pasted_as_a_source_account_is_not_quoted() -> None:
    problems = _problems(
        f"accounts: [{{name: a, assume_role: {{role_arn: '{ROLE}', source_account: {PASTED_SECRET}}}}}, "
        "{name: b, default_chain: }]\ninstances: [{id: x, account: a}]"
    )
    _never_shown(str(problems), PASTED_SECRET)
    assert problems == [
        "x.yml: accounts[0].assume_role.source_account: no account has the name given "
        "(the value is not shown: it may be a pasted secret); accounts are a, b"
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


# -- files the credentials library reads itself --------------------------------------------


@pytest.fixture
def bad_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A FIFO, a device, a directory, an empty and a huge file; a reader left on the FIFO is let go after."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge"
    huge.write_text(MARKER * (MAX_PROFILE_FILE_BYTES // len(MARKER) + 1))
    empty = tmp_path / "empty"
    empty.write_text("")
    yield {
        "a FIFO": fifo,
        "a character device": Path("/dev/null"),
        "a directory": tmp_path,
        "empty": empty,
        "larger than": huge,
    }
    _let_go(fifo)


def _let_go(fifo: Path) -> None:
    """Lets a reader blocked opening ``fifo`` go: a library thread left there would keep the tests from ending."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


async def _refused(provider: CredentialsProvider, *fifos: Path) -> str:
    """The one-line refusal of ``provider``; a reader it left blocked on one of ``fifos`` is let go first.

    Let go here, not after the test: the test's event loop waits for its threads when it closes.
    """
    try:
        with pytest.raises(CredentialsError) as refused:
            await asyncio.wait_for(provider.get(), QUICK_SECONDS)
    finally:
        for fifo in fifos:
            _let_go(fifo)
    text = str(refused.value)
    _never_shown(text, MARKER)
    assert "\n" not in text
    return text


def _oidc(token_file: Path | None) -> Account:
    source: dict[str, str] = {"role_arn": ROLE, "oidc_provider_arn": OIDC_PROVIDER, "sts_endpoint": "127.0.0.1:9"}
    if token_file is not None:
        source["oidc_token_file"] = str(token_file)
    return Account.model_validate({"name": "a", "oidc": source})


@pytest.mark.parametrize("kind", ["a FIFO", "a character device", "a directory", "empty", "larger than"])
@pytest.mark.parametrize("from_environment", [False, True])
async def test_an_oidc_token_file_unfit_to_read_is_refused_before_the_library_reads_it(
    bad_files: dict[str, Path], kind: str, from_environment: bool
) -> None:
    path = bad_files[kind]
    if kind == "larger than":
        path.write_text(MARKER * (MAX_OIDC_TOKEN_BYTES // len(MARKER) + 1))
    account = _oidc(None if from_environment else path)
    environ = {"ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(path)} if from_environment else {}
    text = await _refused(credentials_for(account, {"a": account}, environ=environ), bad_files["a FIFO"])
    named_by = " (ALIBABA_CLOUD_OIDC_TOKEN_FILE)" if from_environment else ""
    assert text.startswith(f"account a (oidc): the OIDC token file{named_by} {path} ")
    assert kind in text


async def test_a_token_files_path_with_a_control_character_is_shown_escaped(tmp_path: Path) -> None:
    fifo = tmp_path / "token\x1b[2J\n"
    os.mkfifo(fifo)
    account = _oidc(fifo)
    text = await _refused(credentials_for(account, {"a": account}, environ={}), fifo)
    assert text.isprintable() and "is not a regular file (a FIFO)" in text


async def test_a_role_over_an_oidc_account_checks_the_token_file_too(bad_files: dict[str, Path]) -> None:
    oidc = _oidc(bad_files["a FIFO"])
    role = Account.model_validate(
        {"name": "r", "assume_role": {"role_arn": ROLE, "source_account": "a", "sts_endpoint": "127.0.0.1:9"}}
    )
    text = await _refused(credentials_for(role, {"a": oidc, "r": role}, environ={}), bad_files["a FIFO"])
    assert f"the OIDC token file {bad_files['a FIFO']} is not a regular file (a FIFO)" in text


@pytest.mark.parametrize("kind", ["a FIFO", "a character device", "larger than"])
async def test_a_cli_profile_file_unfit_to_read_is_refused_naming_the_account(
    bad_files: dict[str, Path], kind: str
) -> None:
    path = bad_files[kind]
    account = Account.model_validate({"name": "a", "cli_profile": {"file": str(path)}})
    text = await _refused(credentials_for(account, {"a": account}, environ={}), bad_files["a FIFO"])
    assert text.startswith(f"account a (cli_profile): the CLI profile file {path} ")
    assert kind in text


@pytest.mark.parametrize(
    ("variable", "what"),
    [
        ("HOME", "the CLI profile file"),
        ("ALIBABA_CLOUD_CREDENTIALS_FILE", "the credentials file"),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "the OIDC token file (ALIBABA_CLOUD_OIDC_TOKEN_FILE)"),
    ],
)
async def test_the_default_chains_files_are_checked_before_it_reads_them(
    tmp_path: Path, bad_files: dict[str, Path], variable: str, what: str
) -> None:
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True)
    os.mkfifo(home / ".aliyun" / "config.json")
    environ = {"HOME": str(tmp_path / "nobody"), "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "false"}
    if variable == "HOME":
        environ["HOME"] = str(home)
    else:
        environ[variable] = str(bad_files["larger than"])
    environ |= {"ALIBABA_CLOUD_ROLE_ARN": ROLE, "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": OIDC_PROVIDER}
    fifo = home / ".aliyun" / "config.json"
    text = await _refused(DefaultChainCredentialsProvider(environ=environ), fifo)
    assert text.startswith(f"the default credential chain: {what} ")
    account = Account.model_validate({"name": "a", "default_chain": {}})
    assert (await _refused(credentials_for(account, {"a": account}, environ=environ), fifo)).startswith(
        f"account a (default_chain): {what} "
    )


def test_the_default_chain_reads_no_file_past_an_access_key_in_the_environment(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    assert default_chain_files(environ) == []
    environ["ALIBABA_CLOUD_CLI_PROFILE_DISABLED"] = "TRUE"
    del environ["ALIBABA_CLOUD_ACCESS_KEY_ID"]
    assert [file.what for file in default_chain_files(environ)] == ["the credentials file"]


def test_a_library_file_unfit_to_read_stops_the_exporter_at_start(bad_files: dict[str, Path], tmp_path: Path) -> None:
    arns = f"role_arn: '{ROLE}', oidc_provider_arn: '{OIDC_PROVIDER}'"
    problems = _problems(
        f"""
accounts:
  - {{name: a, oidc: {{{arns}, oidc_token_file: {bad_files["a FIFO"]}}}}}
  - {{name: b, oidc: {{{arns}, oidc_token_file: {tmp_path}/later}}}}
  - {{name: c, cli_profile: {{file: {bad_files["larger than"]}}}}}
instances: [{{id: idaas_x, account: a}}]
"""
    )
    assert problems == [
        f"x.yml: accounts[0].oidc: the OIDC token file {bad_files['a FIFO']} is not a regular file (a FIFO); "
        "point it at the file itself",
        f"x.yml: accounts[2].cli_profile: the CLI profile file {bad_files['larger than']} is larger than "
        f"{MAX_PROFILE_FILE_BYTES} bytes; it is not that file",
    ]


async def test_library_files_are_checked_off_the_event_loop(
    bad_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked_in: list[int] = []
    real_check = credentials_module.library_file_problem

    def recording_check(file: credentials_module.LibraryFile) -> str | None:
        checked_in.append(threading.get_ident())
        return real_check(file)

    monkeypatch.setattr(credentials_module, "library_file_problem", recording_check)
    account = _oidc(bad_files["a FIFO"])
    await _refused(credentials_for(account, {"a": account}, environ={}), bad_files["a FIFO"])
    assert checked_in and threading.get_ident() not in checked_in

"""Credential values and key files from a hostile world: refused in one line that never shows them.

A value that cannot be a key (a line break, a control character, a space, another file's
contents) is refused where it is read, naming where it came from; a key file that is not a small
regular file (a FIFO, a device, a directory, a huge file) is refused at once, never read on the
event loop; and no transport or library error text carries a header value or a secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import string
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from idaas_sync_exporter.api.client import ClientOptions, EiamClient
from idaas_sync_exporter.api.credentials import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    SECURITY_TOKEN,
    Credentials,
    CredentialsError,
    CredentialsProvider,
    LibraryCredentialsProvider,
    StaticCredentialsProvider,
    checked_credential,
    scrub_library_text,
)
from idaas_sync_exporter.api.endpoint import resolve_endpoint
from idaas_sync_exporter.api.errors import TransportError
from idaas_sync_exporter.config import accounts
from idaas_sync_exporter.config.accounts import KeyFileError, credentials_for, read_environment_keys, read_key_file
from idaas_sync_exporter.config.settings import SettingsError, load_settings
from idaas_sync_exporter.config.tenancy import plan_tenancy
from idaas_sync_exporter.runtime import credentials_from
from idaas_sync_exporter.simulator.server import RunningSimulator
from tests.conftest import AK_ID, AK_SECRET, STS_ID, STS_SECRET, STS_TOKEN

MARKER = "MARKER-4f1d9c-never-shown"
# A key file is refused this fast whatever it is; reading a FIFO or /dev/zero never ends.
QUICK_SECONDS = 1.0


def _all_printable(text: str) -> bool:
    return "\n" not in text and "\r" not in text and text.isprintable()


def _never_shown(text: str, *secrets: str) -> None:
    """Fails without printing ``text``: a failure message quoting it would show the secret in the test output."""
    for secret in (MARKER, *secrets):
        if secret in text:
            pytest.fail("a value that must never be shown is in the text", pytrace=False)


# -- the values themselves ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "part", "problem"),
    [
        (f"CAIS{MARKER}\nsecond-line", SECURITY_TOKEN, "has a line break inside it"),
        (f"CAIS{MARKER}\r\nx", SECURITY_TOKEN, "has a line break inside it"),
        (f"CAIS\x00{MARKER}", SECURITY_TOKEN, "has a control character"),
        (f"CAIS\x1b[31m{MARKER}", SECURITY_TOKEN, "has a control character"),
        (f"CAIS\u0085{MARKER}", SECURITY_TOKEN, "has a space or tab inside it"),
        (f"{MARKER} other", ACCESS_KEY_SECRET, "has a space or tab inside it"),
        (f"{MARKER}\u00e9", ACCESS_KEY_SECRET, "has a non-ASCII character"),
        (f"root:$6$salt:{MARKER}", ACCESS_KEY_ID, "other than letters, digits"),
        (f"SECRET={MARKER}", ACCESS_KEY_ID, "other than letters, digits"),
        (MARKER * 400, SECURITY_TOKEN, "longer than 8192 characters"),
        (MARKER * 10, ACCESS_KEY_SECRET, "longer than 128 characters"),
        ("  \n", ACCESS_KEY_SECRET, "is empty"),
    ],
)
def test_a_value_that_cannot_be_a_key_is_refused_naming_the_source_never_the_value(
    value: str, part: Any, problem: str
) -> None:
    with pytest.raises(CredentialsError) as refused:
        checked_credential(value, part, "IDAAS_EXPORTER_SECURITY_TOKEN")
    text = str(refused.value)
    _never_shown(text, "CAIS")
    assert text.startswith("IDAAS_EXPORTER_SECURITY_TOKEN: ") and problem in text and _all_printable(text)


def test_surrounding_whitespace_is_dropped_as_echo_and_kubernetes_leave_it() -> None:
    assert checked_credential(f"{STS_TOKEN}\n", SECURITY_TOKEN, "x") == STS_TOKEN
    assert checked_credential(f" {AK_SECRET}\r\n", ACCESS_KEY_SECRET, "x") == AK_SECRET
    assert checked_credential("LTAI5tAbc.def_0-1", ACCESS_KEY_ID, "x") == "LTAI5tAbc.def_0-1"
    long_token = "CAIS" + "A/b+=" * 400  # real tokens grow past 2 KiB with a session policy
    assert checked_credential(long_token, SECURITY_TOKEN, "x") == long_token


def test_credentials_refuse_an_unusable_value_however_they_are_built() -> None:
    with pytest.raises(CredentialsError) as refused:
        Credentials(STS_ID, SecretStr(STS_SECRET), SecretStr(f"{STS_TOKEN}\n{MARKER}"), "somewhere")
    _never_shown(str(refused.value))
    assert "credentials from somewhere: the STS security token has a line break" in str(refused.value)


def test_static_settings_are_stripped_or_refused_under_their_names() -> None:
    provider = StaticCredentialsProvider(STS_ID, SecretStr(STS_SECRET + "\n"), SecretStr(STS_TOKEN + "\n"))
    credentials = asyncio.run(provider.get())
    assert credentials.access_key_secret.get_secret_value() == STS_SECRET
    assert credentials.security_token is not None and credentials.security_token.get_secret_value() == STS_TOKEN
    with pytest.raises(CredentialsError, match=r"^the token setting: the STS security token has a control"):
        StaticCredentialsProvider(
            STS_ID,
            SecretStr(STS_SECRET),
            SecretStr(f"CAIS\x07{MARKER}"),
            names=("the id", "the secret", "the token setting"),
        )


def test_a_bad_settings_value_stops_the_exporter_at_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDAAS_EXPORTER_SECURITY_TOKEN", f"CAIS\x1b{MARKER}")
    settings = load_settings(overrides={"state_path": "", "access_key_id": STS_ID, "access_key_secret": STS_SECRET})
    with pytest.raises(SettingsError) as refused:
        credentials_from(settings)
    _never_shown(str(refused.value.problems))
    (problem,) = refused.value.problems
    assert problem.startswith("security_token (IDAAS_EXPORTER_SECURITY_TOKEN, --security-token or the config file): ")
    assert "control character" in problem and _all_printable(problem)


# -- key files -----------------------------------------------------------------


def _refused_quickly(path: Path | str) -> str:
    """The refusal of ``path``; read in a daemon thread, so that a read that hangs fails the test instead."""
    outcome: list[BaseException | str] = []

    def read() -> None:
        try:
            outcome.append(read_key_file(str(path)))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(QUICK_SECONDS)
    assert not reader.is_alive(), f"reading {path} did not end within {QUICK_SECONDS} s"
    (result,) = outcome
    assert isinstance(result, KeyFileError), result
    return str(result)


def test_a_fifo_a_device_a_directory_and_a_huge_file_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _refused_quickly(fifo) == f"{fifo} is not a regular file (a FIFO); point it at a file holding only the key"
    assert "is not a regular file (a character device)" in _refused_quickly("/dev/zero")
    assert "is not a regular file (a directory)" in _refused_quickly(tmp_path)
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as handle:
        handle.truncate(1 << 30)
    assert _refused_quickly(sparse) == f"{sparse} is larger than 16384 bytes; it should hold one key only"
    link = tmp_path / "link-to-fifo"
    link.symlink_to(fifo)  # judged by what it points to
    assert "is not a regular file (a FIFO)" in _refused_quickly(link)


def test_a_file_swapped_for_a_fifo_between_the_check_and_the_open_is_caught_on_the_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "key"
    key.write_text(AK_SECRET + "\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_open = os.open

    def swap_then_open(path: str, flags: int, *args: Any) -> int:
        key.unlink()
        fifo.rename(key)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    assert "is not a regular file (a FIFO)" in _refused_quickly(key)


def _environ_link(tmp_path: Path) -> Path:
    link = tmp_path / "id-link"
    link.symlink_to("/proc/self/environ")
    return link


@pytest.mark.parametrize("kind", ["own file", "/proc/self/environ"])
def test_an_id_file_pointing_at_another_file_is_refused_without_its_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("HOSTILE_MARKER_SECRET", MARKER)
    if kind == "own file":
        other = tmp_path / "other-secret"
        other.write_text(f"first line\n{MARKER}\n")
        link = tmp_path / "id-link"
        link.symlink_to(other)
    else:
        link = _environ_link(tmp_path)
    document = yaml.safe_load(f"accounts: [{{name: a, access_key: {{id_file: {link}, secret_env: S}}}}]")
    problems = read_environment_keys(plan_accounts(document), {"S": AK_SECRET})
    _never_shown(str(problems), AK_SECRET)
    assert len(problems) == 1
    assert problems[0].startswith(f"accounts[0].access_key.id_file {link}: the AccessKey id has")
    assert _all_printable(problems[0])


def plan_accounts(document: dict[str, Any]) -> list[Any]:
    from idaas_sync_exporter.config.tenancy import parse_tenancy_file

    return list(parse_tenancy_file(document).accounts)


def test_environment_values_are_stripped_and_checked_at_start(tmp_path: Path) -> None:
    document = yaml.safe_load(
        "accounts: [{name: a, access_key: {id_env: I, secret_env: S, security_token_env: T}}]\ninstances: [{id: x}]"
    )
    settings = load_settings(overrides={"state_path": ""})
    bad = {"I": STS_ID, "S": STS_SECRET, "T": f"CAIS\x00{MARKER}"}
    with pytest.raises(SettingsError) as refused:
        plan_tenancy(settings, document, environ=bad, file_name="x.yml")
    _never_shown(str(refused.value.problems), STS_SECRET)
    (problem,) = refused.value.problems
    assert problem.startswith("x.yml: accounts[0].access_key.security_token_env: the STS security token has")
    good = {"I": STS_ID + "\n", "S": STS_SECRET + "\n", "T": STS_TOKEN + "\n"}
    tenancy = plan_tenancy(settings, document, environ=good, file_name="x.yml")
    account = tenancy.accounts["a"]
    assert account is not None
    credentials = asyncio.run(credentials_for(account, {"a": account}, environ=good).get())
    assert credentials.access_key_id == STS_ID
    assert credentials.security_token is not None and credentials.security_token.get_secret_value() == STS_TOKEN


async def test_a_key_file_turned_bad_at_run_time_fails_the_request_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTILE_MARKER_SECRET", MARKER)
    id_file, token_file = tmp_path / "id", tmp_path / "token"
    id_file.write_text(STS_ID + "\n")
    token_file.write_text(STS_TOKEN + "\n")
    document = yaml.safe_load(
        f"accounts: [{{name: a, access_key: {{id_file: {id_file}, secret_env: S, security_token_file: {token_file}}}}}]"
    )
    (account,) = plan_accounts(document)
    provider = credentials_for(account, {"a": account}, environ={"S": STS_SECRET})
    assert (await provider.get()).access_key_id == STS_ID
    token_file.write_text(f"{STS_TOKEN}\n{MARKER}\n")
    os.utime(token_file, ns=(1, 1))
    text = await _refusal(provider)
    assert "security_token_file: the STS security token has a line break" in text
    assert str(token_file) not in text  # a secret's path may be a pasted secret
    token_file.write_text(STS_TOKEN)
    id_file.unlink()
    id_file.symlink_to("/proc/self/environ")
    assert f"id_file {id_file}: the AccessKey id has" in await _refusal(provider)
    id_file.unlink()
    os.mkfifo(id_file)
    assert f"id_file: {id_file} is not a regular file (a FIFO)" in await _refusal(provider)


async def _refusal(provider: CredentialsProvider) -> str:
    started = time.monotonic()
    with pytest.raises(CredentialsError) as refused:
        await provider.get()
    assert time.monotonic() - started < QUICK_SECONDS
    text = str(refused.value)
    _never_shown(text, STS_TOKEN, STS_SECRET)
    assert text.startswith("account a (access_key id from ") and _all_printable(text)
    return text


async def test_key_files_are_never_read_on_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text(AK_SECRET)
    document = yaml.safe_load(f"accounts: [{{name: a, access_key: {{id: {AK_ID}, secret_file: {secret}}}}}]")
    (account,) = plan_accounts(document)
    loop_thread = threading.get_ident()
    readers: list[int] = []
    real_read = accounts.read_key_file

    def slow_read(path: str) -> str:
        readers.append(threading.get_ident())
        time.sleep(0.3)  # a slow disk, or an open that waits
        return real_read(path)

    monkeypatch.setattr(accounts, "read_key_file", slow_read)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    credentials = await credentials_for(account, {"a": account}, environ={}).get()
    ticking.cancel()
    assert credentials.access_key_secret.get_secret_value() == AK_SECRET
    assert readers and loop_thread not in readers
    assert ticks >= 10  # the loop kept running while the file was read


# -- error texts of other libraries ----------------------------------------------


def test_a_library_error_never_shows_credentials_quoted_in_it() -> None:
    sts_answer = (
        "error retrieving credentials from ram_role_arn result: "
        f'{{"Credentials": {{"AccessKeyId": "STS.x", "AccessKeySecret": "{MARKER}a", '
        f'"SecurityToken": "CAIS+/{MARKER}b\\"c", "Expiration": "x"}}}}'
    )
    url = f"Max retries exceeded with url: /?AccessKeyId=LTAI&SecurityToken=CAIS{MARKER}&Signature={MARKER}%3D"
    truncated = f"result: {{'AccessKeySecret': '{MARKER}"
    for text in (sts_answer, url, truncated, f"bad\x1b[2J\x00 {MARKER}"):
        scrubbed = scrub_library_text(text, [MARKER])
        _never_shown(scrubbed)
        assert _all_printable(scrubbed), "a control character stayed"
    assert scrub_library_text(url, []).endswith("SecurityToken=**********&Signature=**********")
    assert "SignatureDoesNotMatch" in scrub_library_text('http_code: 400, result: {"Code":"SignatureDoesNotMatch"}', [])


_SECRET_NAMES = (
    "AccessKeySecret",
    "SecurityToken",
    "access_key_secret",
    "x-acs-security-token",
    "Signature",
    "password",
)
# Letters and digits of real secrets, base64's '+/=' and the separators a value must not be cut at.
_VALUE_ALPHABET = st.sampled_from([*string.ascii_letters, *string.digits, *"+/=-_.,&;: ]})"])


def _shapes(name: str, value: str) -> dict[str, str]:
    """``value`` after ``name`` as JSON, a Python repr (str and bytes), a URL query (plain and encoded) and in lists."""
    query = urllib.parse.urlencode({name: value})
    return {
        "JSON": json.dumps({name: value}),
        "JSON list": json.dumps({name: [value, "other"]}),
        "repr": repr({name: value}),
        "bytes repr": repr({name: value.encode()}),
        "bytes list repr": repr({name: [value.encode()]}),
        "header pairs": repr([(name, value), ("next", "x")]),
        "query": f"/?Action=Assume&{query}&Version=1",
        "encoded query": f"url: /%3F{urllib.parse.quote(query)}%26Version%3D1",
    }


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(_SECRET_NAMES),
    value=st.text(_VALUE_ALPHABET, min_size=12, max_size=40),
    before=st.text(string.ascii_letters + " :,", max_size=20),
)
def test_no_shape_of_a_named_secret_survives_the_scrub(name: str, value: str, before: str) -> None:
    empty = _shapes(name, "")
    for shape, text in _shapes(name, value).items():
        scrubbed = scrub_library_text(f"{before} result: {text} end", [])
        # Eight characters of the value in a row are a part of it, unless the text around it has them anyway.
        around = scrub_library_text(f"{before} result: {empty[shape]} end", [])
        for written in {value, urllib.parse.quote_plus(value), urllib.parse.quote(urllib.parse.quote_plus(value))}:
            parts = {written[start : start + 8] for start in range(len(written) - 7)}
            if any(part in scrubbed and part not in around for part in parts):
                pytest.fail(f"a part of the secret survived in the {shape} shape", pytrace=False)


@pytest.mark.parametrize(
    "text", ["a" * 20_000, "a-" * 10_000, "xsecretx" * 2_500, "secret " * 3_000, "(" + '"' * 20_000]
)
def test_a_long_library_error_is_scrubbed_in_linear_time(text: str) -> None:
    started = time.monotonic()
    scrub_library_text(text * 3, [])
    assert time.monotonic() - started < 0.5


def test_the_three_reported_bypasses_are_masked() -> None:
    for text in (
        f"result: {{'AccessKeySecret': b'{MARKER}'}}",
        f"url /?SecurityToken%3D{MARKER}&x=1",
        f'result: {{"AccessKeySecret":["{MARKER}"]}}',
    ):
        _never_shown(scrub_library_text(text, []))


async def test_a_library_providers_bad_value_is_refused_naming_the_account() -> None:
    class Model:
        def get_access_key_id(self) -> str:
            return STS_ID

        def get_access_key_secret(self) -> str:
            return STS_SECRET

        def get_security_token(self) -> str:
            return f"{STS_TOKEN}\x7f{MARKER}"

        def get_provider_name(self) -> str:
            return "oidc_role_arn"

    class Source:
        async def get_credentials_async(self) -> Model:
            return Model()

    provider = LibraryCredentialsProvider(Source, label="account b (oidc)")
    with pytest.raises(CredentialsError) as refused:
        await provider.get()
    _never_shown(str(refused.value), STS_TOKEN)
    assert str(refused.value).startswith("account b (oidc): the STS security token has a control character")


# -- transport errors ------------------------------------------------------------


class _Unchecked:
    """Credentials as a broken provider might hand them over, past every check."""

    def __init__(self, token: str) -> None:
        self.access_key_id = STS_ID
        self.access_key_secret = SecretStr(STS_SECRET)
        self.security_token = SecretStr(token)

    async def get(self) -> Credentials:
        return cast(Credentials, self)


def _client(endpoint: str, credentials: Any) -> EiamClient:
    return EiamClient(
        endpoint=resolve_endpoint("cn-hangzhou", endpoint),
        credentials=credentials,
        options=ClientOptions(max_attempts=1, requests_per_second=1000, burst=1000),
    )


async def test_an_illegal_header_value_is_named_by_its_header_never_shown(simulator: RunningSimulator) -> None:
    client = _client(simulator.endpoint, _Unchecked(f"{STS_TOKEN}\n{MARKER}"))
    try:
        with pytest.raises(TransportError) as refused:
            await client.call("ListInstances", {})
    finally:
        await client.aclose()
    _never_shown(str(refused.value), STS_TOKEN)
    assert str(refused.value) == (
        "ListInstances failed: LocalProtocolError: "
        "the x-acs-security-token header value is not a legal HTTP header value"
    )


async def test_a_refused_connection_keeps_its_os_error_code() -> None:
    client = _client("http://127.0.0.1:1", StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)))
    try:
        with pytest.raises(TransportError) as refused:
            await client.call("ListInstances", {})
    finally:
        await client.aclose()
    assert str(refused.value) == (
        "ListInstances failed: ConnectError: the connection could not be made (ECONNREFUSED: Connection refused)"
    )


@pytest.fixture
def garbage_server() -> Iterator[str]:
    """Answers every connection with a header line the HTTP parser refuses, quoting MARKER."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(f"HTTP/1.1 200 OK\r\nX-Leak: {MARKER}\x00\r\n\r\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    listener.close()


async def test_a_protocol_error_of_the_answer_is_described_not_quoted(garbage_server: str) -> None:
    client = _client(garbage_server, StaticCredentialsProvider(AK_ID, SecretStr(AK_SECRET)))
    try:
        with pytest.raises(TransportError) as refused:
            await client.call("ListInstances", {})
    finally:
        await client.aclose()
    _never_shown(str(refused.value))
    assert str(refused.value) == (
        "ListInstances failed: RemoteProtocolError: the server's answer broke the HTTP protocol"
    )


def test_every_httpx_error_class_has_fixed_words() -> None:
    from idaas_sync_exporter.api.client import _TRANSPORT_PHRASES

    leaves = {
        cls.__name__
        for cls in vars(httpx).values()
        if isinstance(cls, type) and issubclass(cls, httpx.TransportError) and not cls.__subclasses__()
    }
    assert leaves <= set(_TRANSPORT_PHRASES), leaves - set(_TRANSPORT_PHRASES)

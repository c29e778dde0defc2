"""Where the client's AccessKey comes from: explicit settings or the SDK's default chain.

Secrets are held as :class:`pydantic.SecretStr` from the moment they are read, so
a stray ``repr`` or log line shows ``**********`` instead of the value.

Every source ends in :class:`Credentials`, which refuses a value that could not be sent as an
HTTP header as it is (a line break, a control character, a space, a non-ASCII letter) or that
is far longer than any real key. The refusal names the source, never the value: a key file
that turns out to be another file (``/proc/self/environ``, ``/etc/shadow``) must not have its
contents printed in the log and on the landing page.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from idaas_sync_exporter.api.errors import EiamError
from idaas_sync_exporter.files import file_kind, shown_path

if TYPE_CHECKING:
    from alibabacloud_credentials.client import Client as ChainClient

# What each provider of the default chain reads, in the words an operator searches for.
_CHAIN_SOURCES = {
    "EnvironmentVariableCredentialsProvider": "ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET",
    "OIDCRoleArnCredentialsProvider": "OIDC/RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_*)",
    "CLIProfileCredentialsProvider": "~/.aliyun/config.json",
    "ProfileCredentialsProvider": "~/.alibabacloud/credentials.ini",
    "EcsRamRoleCredentialsProvider": "ECS RAM role",
    "CredentialsUriCredentialsProvider": "ALIBABA_CLOUD_CREDENTIALS_URI",
}
_HOW_TO_SET = (
    "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
    "(or IDAAS_EXPORTER_ACCESS_KEY_ID/_SECRET), or use RRSA or an ECS RAM role"
)


# Real AccessKey ids are ``LTAI`` and 20 letters or digits, STS ids ``STS.`` and about 25; secrets
# are 30 letters or digits. STS tokens are base64 text of about 1000 characters and grow with the
# session policy (STS's own notice: "can exceed 2K"), so their bound is generous.
MAX_ID_CHARS = 128
MAX_SECRET_CHARS = 128
MAX_TOKEN_CHARS = 8192
# An id is shown in logs (it names the key); its characters are those of real ids, so that no
# line of some other file can pass for one.
_ID_CHARACTERS = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class CredentialPart:
    """One of the three values of an AccessKey, in the words an error message uses."""

    name: str
    max_chars: int


ACCESS_KEY_ID = CredentialPart("AccessKey id", MAX_ID_CHARS)
ACCESS_KEY_SECRET = CredentialPart("AccessKey secret", MAX_SECRET_CHARS)
SECURITY_TOKEN = CredentialPart("STS security token", MAX_TOKEN_CHARS)


def credential_problem(value: str, part: CredentialPart) -> str | None:
    """What is wrong with ``value`` as ``part``, in words that never quote it; None if nothing."""
    if not value:
        return f"the {part.name} is empty"
    if any(character in "\r\n" for character in value):
        return f"the {part.name} has a line break inside it; it should be a single line"
    if any(character.isspace() for character in value):
        return f"the {part.name} has a space or tab inside it"
    if not value.isascii():
        return f"the {part.name} has a non-ASCII character"
    if not value.isprintable():
        return f"the {part.name} has a control character"
    if part is ACCESS_KEY_ID and not _ID_CHARACTERS.fullmatch(value):
        return f"the {part.name} has a character other than letters, digits, '.', '_' and '-'"
    if len(value) > part.max_chars:
        return f"the {part.name} is longer than {part.max_chars} characters; it is not a key"
    return None


def checked_credential(value: str, part: CredentialPart, source: str) -> str:
    """``value`` without surrounding whitespace, or CredentialsError naming ``source`` and the fix.

    Surrounding whitespace is dropped wherever the value comes from: ``echo key > file``, a
    Kubernetes Secret made from such a file and handed over as an environment variable, and a
    value pasted with a trailing space all end in it, and no real key has it.
    """
    value = value.strip()
    problem = credential_problem(value, part)
    if problem is not None:
        raise CredentialsError(
            f"{source}: {problem} (the value is not shown); put only the {part.name} there, on one line"
        )
    return value


class CredentialsError(EiamError):
    """No usable AccessKey could be obtained; the message names where we looked and how to set one.

    A poll failure like any other: the poll is counted as failed and ``idaas_up`` drops to 0.
    """

    def __init__(self, message: str) -> None:
        self.action = "credentials"
        super().__init__(message)

    @property
    def metric_code(self) -> str:
        return "CredentialsError"


def chain_failure_message(error: Exception) -> str:
    """One line naming the chain's sources that were tried; never the providers' raw text."""
    tried = [
        _CHAIN_SOURCES.get(name, name.removesuffix("CredentialsProvider"))
        for name in dict.fromkeys(re.findall(r"(\w+CredentialsProvider)", str(error)))
    ]
    where = ", ".join(tried) if tried else "the default credential chain"
    return f"no Alibaba Cloud credentials found (tried {where}); {_HOW_TO_SET}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An AccessKey ready to sign with; constructing one with an unusable value raises CredentialsError.

    Providers clean and check each value with :func:`checked_credential` first, naming where it
    came from; the check here is the last line, for a value that reached it some other way.
    """

    access_key_id: str
    access_key_secret: SecretStr = field(repr=False)
    security_token: SecretStr | None = field(default=None, repr=False)
    provider_name: str = "static_ak"

    def __post_init__(self) -> None:
        values = [(self.access_key_id, ACCESS_KEY_ID), (self.access_key_secret.get_secret_value(), ACCESS_KEY_SECRET)]
        if self.security_token is not None:
            values.append((self.security_token.get_secret_value(), SECURITY_TOKEN))
        for value, part in values:
            problem = credential_problem(value, part)
            if problem is not None:
                raise CredentialsError(f"credentials from {self.provider_name}: {problem} (the value is not shown)")

    def __repr__(self) -> str:
        token = ", security_token=**********" if self.security_token else ""
        return (
            f"Credentials(access_key_id={self.access_key_id!r}, "
            f"access_key_secret=**********{token}, provider_name={self.provider_name!r})"
        )


def credentials_of(
    access_key_id: str, access_key_secret: str, security_token: str | None, provider_name: str, *, source: str
) -> Credentials:
    """Credentials of values a library handed over, each cleaned and checked; errors name ``source``."""
    token = (security_token or "").strip()
    return Credentials(
        checked_credential(access_key_id, ACCESS_KEY_ID, source),
        SecretStr(checked_credential(access_key_secret, ACCESS_KEY_SECRET, source)),
        SecretStr(checked_credential(token, SECURITY_TOKEN, source)) if token else None,
        provider_name,
    )


# The credentials library reads these files whole, with no bound and no check of what they are: a
# device would fill the memory and a FIFO hold a thread forever. An OIDC token is a JWT of a few KiB;
# the CLI's config.json and the credentials.ini hold a few profiles.
MAX_OIDC_TOKEN_BYTES = 64 * 1024
MAX_PROFILE_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LibraryFile:
    """A file the credentials library will read, in the words an error message uses."""

    what: str
    path: str
    max_bytes: int


def library_file_problem(file: LibraryFile) -> str | None:
    """What makes ``file`` unfit for the library to read (never its contents), or None.

    A file that is not there is the library's to report: the default chain looks for files that
    need not exist, and an OIDC token file may still be being mounted. An empty file is refused,
    as /proc files say size 0 whatever they hold: the library would send such a "token" to STS.
    """
    named = f"{file.what} {shown_path(file.path)}"
    try:
        status = os.stat(file.path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{named}: cannot read it: {exc.strerror}"
    if not stat.S_ISREG(status.st_mode):
        return f"{named} is not a regular file ({file_kind(status.st_mode)}); point it at the file itself"
    if status.st_size > file.max_bytes:
        return f"{named} is larger than {file.max_bytes} bytes; it is not that file"
    if status.st_size == 0:
        return f"{named} is empty (or a /proc file, whose size is unknown)"
    return None


def default_chain_files(environ: Mapping[str, str]) -> list[LibraryFile]:
    """The files the library's default chain reads, as its own code finds them in ``environ``.

    The chain stops at the environment's AccessKey when there is one; past it every file is
    checked, also one a source before it in the chain would have made unnecessary.
    """
    if environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID") and environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        return []
    files = []
    token_file = environ.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE")
    if token_file and environ.get("ALIBABA_CLOUD_ROLE_ARN") and environ.get("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"):
        files.append(
            LibraryFile("the OIDC token file (ALIBABA_CLOUD_OIDC_TOKEN_FILE)", token_file, MAX_OIDC_TOKEN_BYTES)
        )
    home = environ.get("HOME") or environ.get("HOMEPATH") or os.path.expanduser("~")
    if environ.get("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "false").lower() != "true":
        files.append(
            LibraryFile("the CLI profile file", os.path.join(home, ".aliyun", "config.json"), MAX_PROFILE_FILE_BYTES)
        )
    credentials_file = environ.get("ALIBABA_CLOUD_CREDENTIALS_FILE") or os.path.join(
        home, ".alibabacloud", "credentials.ini"
    )
    files.append(LibraryFile("the credentials file", credentials_file, MAX_PROFILE_FILE_BYTES))
    return files


async def check_library_files(files: list[LibraryFile], label: str) -> None:
    """CredentialsError naming ``label`` and the file if one of ``files`` is unfit to read; stat off the loop."""
    if not files:
        return
    # A stat of a hung network mount blocks; never on the event loop.
    problems = await asyncio.to_thread(lambda: [problem for file in files if (problem := library_file_problem(file))])
    if problems:
        raise CredentialsError(f"{label}: {problems[0]}")


class CredentialsProvider(Protocol):
    async def get(self) -> Credentials:
        """Return credentials valid for the next request (refreshing as needed)."""
        ...


class StaticCredentialsProvider:
    """AccessKey id/secret (and optional STS token) given explicitly in settings."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: SecretStr,
        security_token: SecretStr | None = None,
        *,
        names: tuple[str, str, str] = ("access_key_id", "access_key_secret", "security_token"),
    ) -> None:
        """``names`` are how an error message calls the three values (the setting, its variable)."""
        if not access_key_id or not access_key_secret.get_secret_value():
            raise CredentialsError(f"AccessKey id and secret must both be non-empty; {_HOW_TO_SET}")
        key_id = checked_credential(access_key_id, ACCESS_KEY_ID, names[0])
        secret = checked_credential(access_key_secret.get_secret_value(), ACCESS_KEY_SECRET, names[1])
        token = security_token.get_secret_value().strip() if security_token is not None else ""
        if token:
            token = checked_credential(token, SECURITY_TOKEN, names[2])
        self._credentials = Credentials(
            key_id,
            SecretStr(secret),
            SecretStr(token) if token else None,
            "static_sts" if token else "static_ak",
        )

    async def get(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentialsProvider({self._credentials!r})"


class DefaultChainCredentialsProvider:
    """The alibabacloud-credentials default chain: env, OIDC/RRSA, CLI profile, ini file, ECS role.

    The chain caches and refreshes STS credentials itself; we ask it before every
    request so a rotated token is picked up without a restart.
    """

    def __init__(self, client: ChainClient | None = None, environ: Mapping[str, str] | None = None) -> None:
        self._client = client
        # The library reads its environment when it is imported: the process's.
        self._environ = os.environ if environ is None else environ

    def _chain(self) -> ChainClient:
        # Built lazily: constructing the chain starts a background refresh thread
        # and reads the environment, which tests and `--help` should not pay for.
        if self._client is None:
            from alibabacloud_credentials.client import Client as ChainClient

            self._client = ChainClient()
            silence_library_log()
        return self._client

    async def get(self) -> Credentials:
        await check_library_files(default_chain_files(self._environ), "the default credential chain")
        try:
            model = await self._chain().get_credential_async()
        except Exception as exc:  # the chain raises bare Exceptions of several kinds
            raise CredentialsError(chain_failure_message(exc)) from None
        if not model.access_key_id or not model.access_key_secret:
            raise CredentialsError(f"the default credential chain returned an empty AccessKey; {_HOW_TO_SET}")
        provider = model.provider_name or "default"
        return credentials_of(
            model.access_key_id,
            model.access_key_secret,
            model.security_token,
            provider,
            source=f"the default credential chain ({_CHAIN_SOURCES.get(provider, provider)})",
        )

    def __repr__(self) -> str:
        return "DefaultChainCredentialsProvider()"


# An error text of a credentials library is shown in logs and on the landing page; bound it.
_MAX_ERROR_CHARS = 300
_MAX_SCANNED_CHARS = 64 * 1024
# The library quotes STS's whole answer in some errors ("result: {...}") and an HTTP library may
# quote the request URL with its query: a value after one of these names is a credential, also
# one the ``secrets`` list cannot know (STS's answer, a chained role's token). The name may be
# quoted, and followed by ':' or '=' (JSON, a repr, a query), or by ',' when it opens a tuple or
# list (a header pair such as ('x-acs-security-token', '...')).
_SECRET_NAME = re.compile(
    r"""(?P<item>[(\[]\s*\\?["']?)?(?<![\w-])(?=[\w-]*?(?:secret|token|signature|password))[\w-]++\\?["']?\s*(?:[:=]|(?(item),|(?!)))\s*""",
    re.IGNORECASE,
)
# A separator written percent-encoded (SecurityToken%3D..., also twice: %253D) is a separator too;
# only these are decoded, as decoding a ',' or '&' inside a value would cut the value short.
# A name is matched as a whole word, from its start and never given back: tried from inside a long
# word, or backed off through it, it would cost the square of the word's length.
_ENCODED_SEPARATOR = re.compile(r"%(?:25)*(3[dDaA])")
_MASK = "**********"


def scrub_library_text(text: str, secrets: list[str]) -> str:
    """A library's error text fit for a log line: secrets masked, one line of printable text, bounded."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    # Only a few hundred characters are kept; cutting first bounds the work, and a value cut short
    # is masked to the end like any unclosed value.
    text = text[:_MAX_SCANNED_CHARS]
    text = _ENCODED_SEPARATOR.sub(lambda match: chr(int(match[1], 16)), text)
    text = _mask_named_values(text)
    text = " ".join(text.split())
    text = "".join(character if character.isprintable() else "?" for character in text)
    return text[:_MAX_ERROR_CHARS]


def _mask_named_values(text: str) -> str:
    """``text`` with the whole value after each secret-ish name masked, however it is written.

    The value runs to the next separator at its own nesting, so a quoted string (b'...' too), a
    list or an object after the name is masked whole; an unclosed quote or bracket masks the rest.
    """
    pieces = []
    done = 0
    for match in _SECRET_NAME.finditer(text):
        if match.start() < done:  # the name is inside a value already masked
            continue
        end = _value_end(text, match.end())
        pieces += [text[done : match.end()], _MASK]
        done = end
    return "".join(pieces) + text[done:]


def _value_end(text: str, start: int) -> int:
    """Where the value starting at ``start`` ends: a separator outside quotes and brackets, or a closing bracket."""
    depth = 0
    quote = ""
    index = start
    while index < len(text):
        character = text[index]
        if quote:
            if character == "\\":
                index += 1
            elif character == quote:
                quote = ""
        elif character in "\"'":
            quote = character
        elif character in "[{(":
            depth += 1
        elif character in "]})":
            if depth == 0:
                return index
            depth -= 1
        elif depth == 0 and (character in ",;&" or character.isspace()):
            return index
        index += 1
    return index


def silence_library_log() -> None:
    """Keep alibabacloud-credentials' own log off stderr.

    Its provider modules attach a plain StreamHandler to the ``credentials`` logger when they are
    imported and log each failed refresh with a traceback, several times per failure, which breaks
    the one-line logfmt/JSON log. The failure still reaches the log once, from the poll that it
    failed, as a one-line error naming the account.
    """
    library_log = logging.getLogger("credentials")
    for handler in list(library_log.handlers):
        library_log.removeHandler(handler)
    library_log.propagate = False
    # Modules imported later add handlers again; a level above CRITICAL drops records before any handler.
    library_log.setLevel(logging.CRITICAL + 1)


class LibraryCredentialsProvider:
    """Any alibabacloud-credentials provider (AssumeRole, OIDC, ECS RAM role, CLI profile, ...).

    ``factory`` builds the provider on first use and again after it failed to build, so a
    source that is not there yet (an OIDC token file still being mounted) is retried on the
    next poll. ``secrets`` lists values an error text must never show, ``files`` the files the
    library will read, checked before each request.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        label: str,
        secrets: Callable[[], list[str]] = list,
        files: Callable[[], list[LibraryFile]] = list,
    ) -> None:
        self._factory = factory
        self._provider: Any = None
        self._label = label
        self._secrets = secrets
        self._files = files

    async def get(self) -> Credentials:
        await check_library_files(self._files(), self._label)
        try:
            if self._provider is None:
                self._provider = self._factory()
                silence_library_log()
            model = await self._provider.get_credentials_async()
        except CredentialsError as exc:  # a check of ours (a key file): its text never quotes a value
            raise CredentialsError(f"{self._label}: {exc}") from None
        except Exception as exc:  # the library raises ValueError, CredentialException and bare Exceptions
            raise CredentialsError(f"{self._label}: {self._scrub(exc)}") from None
        key_id, secret = model.get_access_key_id(), model.get_access_key_secret()
        if not key_id or not secret:
            raise CredentialsError(f"{self._label}: the credential source returned an empty AccessKey")
        return credentials_of(
            key_id, secret, model.get_security_token(), model.get_provider_name() or "library", source=self._label
        )

    def _scrub(self, exc: Exception) -> str:
        return scrub_library_text(str(exc), self._secrets()) or type(exc).__name__

    def __repr__(self) -> str:
        return f"LibraryCredentialsProvider({self._label!r})"

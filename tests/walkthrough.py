"""A page's shell walk-through run as a person runs it: its blocks pasted, in order, into one shell.

The shell is one ``bash`` reading from a pipe, so variables exported by one block, background
jobs (``… &``) and ``kill %1`` work across blocks as in a terminal. Each block's output (stdout
and stderr together) and exit status are collected; the fixed ports of the page are replaced by
free ones, and everything the shell started is stopped by its process group if a step fails.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


@dataclass(frozen=True)
class PageBlock:
    lang: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip()


def section_blocks(page: Path, heading: str) -> list[PageBlock]:
    """The fenced blocks under ``heading`` (a whole line such as ``### Try it locally``), up to the next heading."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    found: list[PageBlock] = []
    index = start + 1
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if opening is not None:
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            found.append(PageBlock(opening["lang"], "\n".join(lines[index + 1 : end]) + "\n"))
            index = end + 1
            continue
        if line.startswith("#"):
            break
        index += 1
    return found


@dataclass(frozen=True)
class Step:
    status: int
    output: str


class Shell:
    """One bash session in ``cwd``; :meth:`run` pastes a block and waits for it to finish."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
            # Its own process group: the simulators and the exporter it starts in the background
            # share it, so a failed test can stop all of them at once, and only them.
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        with self._process.stdout:
            for line in self._process.stdout:
                self._lines.put(line)
        self._lines.put(None)

    def run(self, text: str, timeout: float = 60.0) -> Step:
        """Paste ``text``; its exit status and output once its last command has finished."""
        assert self._process.stdin is not None
        marker = f"__step_done_{uuid.uuid4().hex}__"
        self._process.stdin.write(text if text.endswith("\n") else text + "\n")
        self._process.stdin.write(f"echo {marker} $?\n")
        self._process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(
                    f"the block did not finish within {timeout:.0f} s:\n{text}\noutput so far:\n{''.join(output)}"
                ) from None
            if line is None:
                raise AssertionError(f"the shell exited during the block:\n{text}\noutput:\n{''.join(output)}")
            if line.startswith(marker):
                return Step(int(line.split()[1]), "".join(output))
            output.append(line)

    def close(self, timeout: float = 30.0) -> int:
        """End the session; the shell's exit status. Whatever it left running is stopped."""
        assert self._process.stdin is not None
        try:
            self._process.stdin.write("exit\n")
            self._process.stdin.close()
            status = self._process.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.kill()
            raise
        self._stop_group()
        # The background jobs held the output open too; it ends once they have.
        self._drained(timeout)
        return status

    def _drained(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._lines.get(timeout=max(0.0, deadline - time.monotonic())) is None:
                    return
            except queue.Empty:
                return

    def kill(self) -> None:
        self._stop_group()
        self._process.wait(timeout=30)

    def _stop_group(self) -> None:
        """SIGTERM to the session's process group (this shell's, by its id), then SIGKILL to what remains."""
        group = self._process.pid
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)


def with_ports(text: str, ports: dict[int, int]) -> str:
    """``text`` with each ``127.0.0.1:PORT`` of ``ports`` moved to its replacement."""
    for fixed, free in ports.items():
        text = text.replace(f"127.0.0.1:{fixed}", f"127.0.0.1:{free}")
    return text


# The local walk-through of several accounts and regions (docs/configuration.md, "Try it locally").
ROOT = Path(__file__).resolve().parents[1]
LOCAL_PAGE = ROOT / "docs" / "configuration.md"
LOCAL_HEADING = "### Try it locally"
# The page's fixed ports: the two regions' simulators, the STS stand-in, the exporter.
LOCAL_PORTS = (18081, 18082, 18443, 18129)
EXPORTER_PORT = 18129


class LocalExample:
    """The walk-through's shell in ``directory``, on free ports; its blocks are run by their first line."""

    def __init__(self, directory: Path, env: dict[str, str], ports: dict[int, int]) -> None:
        self.directory = directory
        self.blocks = section_blocks(LOCAL_PAGE, LOCAL_HEADING)
        self.ports = ports
        self.shell = Shell(directory, env)

    @property
    def commands(self) -> list[PageBlock]:
        return [block for block in self.blocks if block.lang == "sh"]

    def block(self, first_line: str) -> PageBlock:
        matches = [block for block in self.commands if block.first_line.startswith(first_line)]
        assert len(matches) == 1, f"{len(matches)} blocks of the walk-through start with {first_line!r}"
        return matches[0]

    def expected(self, block: PageBlock) -> str | None:
        """The ``text`` block right after ``block`` on the page: what it prints."""
        index = self.blocks.index(block)
        following = self.blocks[index + 1] if index + 1 < len(self.blocks) else None
        return following.text if following is not None and following.lang == "text" else None

    def run(self, text: str, timeout: float = 90.0) -> Step:
        """Paste ``text`` (a block's, perhaps edited, or a command of the test's own), on the free ports."""
        return self.shell.run(with_ports(text, self.ports), timeout)

    @property
    def exporter_port(self) -> int:
        return self.ports[EXPORTER_PORT]

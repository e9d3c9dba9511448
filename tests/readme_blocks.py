"""The README's fenced code blocks as data: where each one is, what it runs, and how the README
test treats it (tests/test_readme.py runs them; tests/readme_runner.py is the runner).

A line directly above a block's opening fence can direct the test:

    <!-- readme-test: skip (REASON) -->       not run; REASON (mandatory) is printed
    <!-- readme-test: background -->          started, left running until the end, then stopped
    <!-- readme-test: background (ready: tcp://127.0.0.1:8786, http://127.0.0.1:7860/) -->
                                              ... and the next block waits until each address
                                              answers (loopback addresses only)

Only shell blocks (```bash, ```sh, ```shell) run; ```python, plain ``` listings and the rest
are documentation. Anything else that looks like a directive is an error naming its line, so a
typo never silently turns a block off.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

SHELL_LANGS = ("bash", "sh", "shell")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Options of `mm2latent` commands that name what the command writes (`pipeline` writes its
# dataset under --data and its models under --runs).
OUTPUT_OPTIONS = ("--out", "--data", "--runs")
_DIRECTIVE = re.compile(r"^\s*<!--\s*readme-test:(.*?)-->\s*$")
_SKIP = re.compile(r"^skip\s*\((.*)\)$", re.DOTALL)
_BACKGROUND = re.compile(r"^background(?:\s*\(\s*ready:(.*)\))?$", re.DOTALL)
_FENCE = re.compile(r"^```(.*)$")


class ReadmeFormatError(ValueError):
    """A readme-test directive the harness cannot follow (names the README line)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    index: int  # 1-based position among the README's fenced blocks
    line: int  # README line number of the opening fence
    lang: str  # the fence's info string ("bash"; "" for a plain listing)
    code: str  # the lines between the fences
    skip_reason: str | None = None  # set by a skip directive
    background: bool = False  # set by a background directive: a server left running
    ready: tuple[str, ...] = ()  # addresses that answer once a background block is up

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL_LANGS

    @property
    def label(self) -> str:
        """How failure messages name the block (index 0: one the test itself runs)."""
        if self.index == 0:
            return f"the test's own block `{self.code}`"
        return f"README block {self.index} (README.md line {self.line}, ```{self.lang})"

    def commands(self) -> list[tuple[int, str]]:
        """(README line, command) for each logical command: continuations joined, comments and
        blank lines dropped."""
        found: list[tuple[int, str]] = []
        pending: list[str] = []
        start = 0
        for offset, raw in enumerate(self.code.splitlines(), start=1):
            if not pending:
                start = self.line + offset
            if raw.rstrip().endswith("\\"):
                pending.append(raw.rstrip()[:-1])
                continue
            text = " ".join(piece.strip() for piece in pending + [raw]).strip()
            pending = []
            if text and not text.startswith("#"):
                found.append((start, text))
        return found

    def expected_outputs(self) -> list[str]:
        """Local paths the block's commands must leave behind: every OUTPUT_OPTIONS value of an
        `mm2latent` command, and every file a `> FILE` redirection writes. URLs (s3://) and
        templates ({models}) are not checked here."""
        paths: list[str] = []
        for _, command in self.commands():
            words = _words(command)
            for i, word in enumerate(words):
                value = None
                if word == ">" and i + 1 < len(words):
                    value = words[i + 1]
                elif "mm2latent" in words[:i] and word in OUTPUT_OPTIONS and i + 1 < len(words):
                    value = words[i + 1]
                elif "mm2latent" in words[:i] and word.split("=", 1)[0] in OUTPUT_OPTIONS:
                    value = word.split("=", 1)[1]
                if value and not any(c in value for c in ("://", "{", "$", "*")):
                    paths.append(value)
        return list(dict.fromkeys(paths))


def _words(command: str) -> list[str]:
    """A command's words as the shell splits them, redirections apart, up to a comment (a word
    starting with #: `data/tiny#3` is a word, not a comment)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=">|&;")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: the shell will say so when the block runs
        words = command.split()
    comment = next((i for i, w in enumerate(words) if w.startswith("#")), len(words))
    return words[:comment]


def _parse_directive(body: str, line: int) -> dict:
    """The Block fields a directive sets."""
    body = body.strip()
    if (skip := _SKIP.match(body)) is not None:
        reason = skip.group(1).strip()
        if not reason:
            raise ReadmeFormatError(f"README.md line {line}: a skip directive needs its reason: "
                                    "<!-- readme-test: skip (why this block cannot run) -->")
        return {"skip_reason": reason}
    if (background := _BACKGROUND.match(body)) is not None:
        ready = tuple(a.strip() for a in (background.group(1) or "").split(",") if a.strip())
        for address in ready:
            _check_ready_address(address, line)
        return {"background": True, "ready": ready}
    raise ReadmeFormatError(
        f"README.md line {line}: unknown readme-test directive {body!r}; use "
        "'skip (REASON)', 'background' or 'background (ready: tcp://127.0.0.1:PORT)'.")


def _check_ready_address(address: str, line: int) -> None:
    """Readiness probes dial loopback only: nothing else may be reached from the tests."""
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "http") or parts.hostname not in LOOPBACK_HOSTS or not parts.port:
        raise ReadmeFormatError(
            f"README.md line {line}: ready address {address!r} must be tcp://127.0.0.1:PORT "
            "or http://127.0.0.1:PORT/PATH (loopback only).")


def parse_readme(text: str) -> list[Block]:
    """Every fenced block of `text`, with the directive written directly above it applied."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        directive = _DIRECTIVE.match(lines[i])
        if directive is not None and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
            raise ReadmeFormatError(f"README.md line {i + 1}: a readme-test directive must be "
                                    "the line directly above a block's opening ```.")
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ReadmeFormatError(f"README.md line {i + 1}: a code block is never closed.")
        above = _DIRECTIVE.match(lines[i - 1]) if i > 0 else None
        fields = _parse_directive(above.group(1), i) if above else {}
        blocks.append(Block(index=len(blocks) + 1, line=i + 1, lang=fence.group(1).strip(),
                            code="\n".join(lines[i + 1:end]), **fields))
        i = end + 1
    return blocks

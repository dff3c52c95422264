"""Erasing a person from the server's log files (D5): `<data_dir>/logs/*.jsonl` (and rotated
plain-text copies `*.jsonl.<n>`) are rewritten without every line that mentions one of the
person's identifiers: e-mail address, name, member id, API token ids, session ids, and the
pseudonyms of the addresses they logged in from.

Matching is on the line's text, in the forms a JSON log writes a value: as is, and JSON-escaped
(`\\u00e9` for a non-ASCII name). E-mail addresses match whatever their case; a name matches as
a whole word, case-sensitively (so "Ada" does not take every "adapter" line with it), as do IP
addresses the person gave; ids and pseudonyms match anywhere. Erring on the side of removal is
deliberate: a line about someone else that carries the same name or address pseudonym (a
shared office IP) goes too; logs are for operations, and a lost line costs less than a kept
identifier.

Each file is rewritten atomically: the kept lines go to a temporary file beside it (same
permissions), fsynced, then `os.replace`d over the original, and the directory fsynced. A file
with nothing to remove is left untouched. Lines a writer appends while a file is being
rewritten are picked up before the replace (the tail is read again), but a line written in the
instant between that read and the replace can be lost, and a writer holding the old file open
keeps writing to the replaced inode: the log writer must reopen its file when the inode changes
(logging.handlers.WatchedFileHandler does)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOG_GLOBS = ("*.jsonl", "*.jsonl.[0-9]*")
_ROTATED = re.compile(r"\.jsonl(\.\d+)?$")


@dataclass(frozen=True)
class Identifiers:
    """What identifies the person in a log line."""

    emails: frozenset[str] = frozenset()
    words: frozenset[str] = frozenset()  # names, IP addresses: matched as whole words
    ids: frozenset[str] = frozenset()  # member id, token ids, session ids, IP pseudonyms
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False,
                                                   compare=False)

    def __post_init__(self) -> None:
        parts: list[re.Pattern[str]] = []
        exact = sorted({f for v in self.ids if v for f in _forms(v)}, key=len, reverse=True)
        if exact:
            parts.append(re.compile("|".join(re.escape(v) for v in exact)))
        emails = sorted({f for v in self.emails if v for f in _forms(v)}, key=len, reverse=True)
        if emails:
            parts.append(re.compile("|".join(re.escape(v) for v in emails), re.IGNORECASE))
        names = sorted({f for v in self.words if v.strip() for f in _forms(v.strip())},
                       key=len, reverse=True)
        if names:
            alternatives = "|".join(re.escape(v) for v in names)
            parts.append(re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)"))
        object.__setattr__(self, "_patterns", tuple(parts))

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def mentioned_in(self, line: str) -> bool:
        return any(p.search(line) for p in self._patterns)


def _forms(value: str) -> set[str]:
    """The value as is and as JSON writers escape it (ASCII-only, or not)."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}


def log_files(logs_dir: Path) -> list[Path]:
    """The log files the scrub rewrites (none when the directory does not exist)."""
    if not logs_dir.is_dir():
        return []
    found = {p for pattern in LOG_GLOBS for p in logs_dir.glob(pattern)}
    return sorted(p for p in found if p.is_file() and not p.is_symlink()
                  and _ROTATED.search(p.name))


def scrub_logs(logs_dir: Path, who: Identifiers) -> dict[str, int]:
    """Remove every line mentioning `who` from the log files of `logs_dir`; returns the
    number of lines removed per file name (files with none removed are not listed). An
    absent directory is nothing to do."""
    removed: dict[str, int] = {}
    if not who or not logs_dir.is_dir():
        return removed
    # One scrub at a time (across processes): two erasures rewriting the same file from the
    # same original would each put back the lines the other removed.
    # The lock is on the directory itself: no lock file left among the logs.
    fd = os.open(logs_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for path in log_files(logs_dir):
            n = scrub_file(path, who)
            if n:
                removed[path.name] = n
    finally:
        os.close(fd)  # releases the lock
    return removed


def scrub_file(path: Path, who: Identifiers) -> int:
    """Rewrite one file without the lines mentioning `who`, atomically; lines removed."""
    with open(path, "rb") as src:
        if not any(who.mentioned_in(_text(line)) for line in _lines(src)):
            return 0
        src.seek(0)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".scrub",
                                        dir=path.parent)
        tmp = Path(tmp_name)
        try:
            os.fchmod(fd, os.stat(path).st_mode & 0o777)
            with os.fdopen(fd, "wb") as out:
                removed = _copy(src, out, who)
                # A writer may have appended since: take its lines too, filtered the same.
                while os.fstat(src.fileno()).st_size > src.tell():
                    removed += _copy(src, out, who)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)
    return removed


def _lines(src: IO[bytes]) -> Iterable[bytes]:
    while True:
        line = src.readline()
        if not line:
            return
        yield line


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="surrogateescape")


def _copy(src: IO[bytes], out: IO[bytes], who: Identifiers) -> int:
    removed = 0
    for line in _lines(src):
        if who.mentioned_in(_text(line)):
            removed += 1
        else:
            out.write(line)
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

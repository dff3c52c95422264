"""The log-file scrub of an erasure (D5, services.subject_logs) on real files: which lines go,
which stay, and how a file is rewritten (atomically, its mode kept, untouched when nothing
matches, nothing to do when the directory is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sealflow.services.subject_logs import Identifiers, log_files, scrub_logs

WHO = Identifiers(emails=frozenset({"Ada.L@Example.test"}),
                  words=frozenset({"Ada Lovelace", "Zoë", "10.1.2.3"}),
                  ids=frozenset({"5b0c-user-id", "ip_0123456789abcdef"}))


def lines(*events: object) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_an_absent_directory_is_nothing_to_do(tmp_path: Path) -> None:
    assert scrub_logs(tmp_path / "logs", WHO) == {}
    assert log_files(tmp_path / "nope") == []


def test_lines_naming_the_person_in_any_written_form_go_and_the_others_stay(
        tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    gone = [
        {"email": "ada.l@example.test"},  # any case
        {"msg": "invited ADA.L@EXAMPLE.TEST"},
        {"who": "Zoë"},  # JSON-escaped by json.dumps: "Zo\u00eb"
        {"who": "Ada Lovelace", "n": 1},
        {"user": "5b0c-user-id"},
        {"client": "ip_0123456789abcdef"},
        {"client_ip": "10.1.2.3"},
        {"path": "/x/5b0c-user-id/y"},  # ids match anywhere
    ]
    kept = [
        {"msg": "Adapter started"},  # a name matches as a whole word only
        {"who": "Zoëlle"},
        {"who": "ada lovelace"},  # names match case-sensitively
        {"client_ip": "110.1.2.34"},  # addresses as whole words too
        {"client": "ip_fedcba9876543210"},
    ]
    mixed = [x for pair in zip(gone, kept + [{}] * 3, strict=True) for x in pair if x]
    (logs / "app.jsonl").write_text(lines(*mixed))
    (logs / "app.jsonl").chmod(0o640)
    (logs / "app.jsonl.3").write_text(lines(gone[0], kept[0]))
    (logs / "notes.txt").write_text(lines(gone[0]))  # not a log file: left alone
    assert scrub_logs(logs, WHO) == {"app.jsonl": 8, "app.jsonl.3": 1}
    assert (logs / "app.jsonl").read_text() == lines(*kept)
    assert (logs / "app.jsonl").stat().st_mode & 0o777 == 0o640
    assert (logs / "app.jsonl.3").read_text() == lines(kept[0])
    assert "ada.l@example.test" in (logs / "notes.txt").read_text()
    assert not [p for p in logs.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    clean = logs / "clean.jsonl"
    clean.write_text(lines({"msg": "nothing personal"}))
    dirty = logs / "dirty.jsonl"
    dirty.write_bytes(b'{"bad": "\xff\xfe"}\n' + lines({"user": "5b0c-user-id"}).encode())
    before = (os.stat(clean).st_ino, os.stat(dirty).st_ino)
    assert scrub_logs(logs, WHO) == {"dirty.jsonl": 1}
    assert os.stat(clean).st_ino == before[0]  # untouched
    assert os.stat(dirty).st_ino != before[1]  # a new file took its name at once
    assert dirty.read_bytes() == b'{"bad": "\xff\xfe"}\n'  # bytes that are not UTF-8 kept


def test_no_identifiers_remove_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_text(lines({"msg": "x"}))
    assert not Identifiers(emails=frozenset({""}), words=frozenset({"  "}))
    assert scrub_logs(logs, Identifiers()) == {}

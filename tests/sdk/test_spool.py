from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from touchpoint.options import ConfigError
from touchpoint.record import Encoded
from touchpoint.spool import Spool


def batch(*ids: str) -> Encoded:
    out = Encoded()
    for mid in ids:
        raw = msgspec.json.encode({"type": "track", "messageId": mid, "event": "e", "userId": "u"})
        out.ids.append(mid)
        out.events.append(raw)
        out.nbytes += len(raw)
    return out


def test_batches_round_trip_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    assert spool.put(batch("a", "b")) and spool.put(batch("c"))
    assert (spool.events, len(list(tmp_path.glob("*.batch")))) == (3, 2)
    head = spool.oldest()
    assert head is not None
    entry, first = head
    assert first.ids == ["a", "b"]
    assert first.events == batch("a", "b").events
    spool.replace(entry, batch("b"))  # "a" was delivered
    assert spool.events == 2
    head = spool.oldest()
    assert head is not None and head[1].ids == ["b"]
    spool.remove(head[0])
    head = spool.oldest()
    assert head is not None and head[1].ids == ["c"]
    spool.remove(head[0])
    assert spool.oldest() is None and spool.events == 0 and spool.nbytes == 0
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_full_spool_refuses_new_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 150)
    assert spool.put(batch("a"))
    assert not spool.put(batch("b", "c"))
    assert spool.events == 1
    spool.close()


def test_a_dead_owners_batches_are_adopted_once(tmp_path: Path) -> None:
    dead = Spool(tmp_path, 10**6)
    dead.put(batch("a", "b"))
    dead.put(batch("c"))
    (tmp_path / f"{dead._token}.0000000000000099.tmp").write_bytes(b"half-written")
    dead._lock.close()  # type: ignore[union-attr]  # the process died: its flock is gone
    heir = Spool(tmp_path, 10**6)
    assert heir.recovered == 3
    ids = []
    while (head := heir.oldest()) is not None:
        ids.extend(head[1].ids)
        heir.remove(head[0])
    assert ids == ["a", "b", "c"]  # order kept
    assert not list(tmp_path.glob("*.tmp"))
    assert Spool(tmp_path, 10**6).recovered == 0  # nothing is adopted twice


def test_a_live_owners_batches_are_left_alone(tmp_path: Path) -> None:
    owner = Spool(tmp_path, 10**6)
    owner.put(batch("a"))
    other = Spool(tmp_path, 10**6)
    assert other.recovered == 0 and other.events == 0
    assert owner.oldest() is not None
    owner.close()
    other.close()


def test_batches_without_any_lock_file_are_adopted(tmp_path: Path) -> None:
    (tmp_path / "123-deadbeef.0000000000000000.batch").write_bytes(
        b'{"type":"track","messageId":"x","event":"e","userId":"u"}\n'
    )
    assert Spool(tmp_path, 10**6).recovered == 1


def test_damaged_lines_are_counted_as_unreadable(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    spool.put(batch("a", "b"))
    [path] = tmp_path.glob("*.batch")
    path.write_bytes(path.read_bytes().replace(b'"messageId":"b"', b'"messageId":'))
    head = spool.oldest()
    assert head is not None and head[1].ids == ["a"]
    assert spool.unreadable == 1
    os.unlink(path)
    spool.remove(head[0])
    spool.put(batch("c"))
    [path] = tmp_path.glob("*.batch")
    path.unlink()
    assert spool.oldest() is None and spool.unreadable == 2


def test_an_unusable_directory_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="spool_dir"):
        Spool(blocker / "spool", 10**6)

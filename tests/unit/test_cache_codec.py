"""Cache values are plain JSON, checked on the way back; nothing is ever unpickled."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from cachelib import FileSystemCache, SimpleCache

from proxyapi.cache.codec import Entry, EntryCodec
from proxyapi.cache.responses import CATEGORY, ResponseCache, _pack
from proxyapi.cache.store import CacheStore
from proxyapi.config import CacheConfig, ConfigError
from proxyapi.private_dir import ensure_private_dir
from proxyapi.upstream import Answer

ANSWER = Answer("up", b'{"id": "x", "caf\xc3\xa9": 1}', 1)


class Boom:
    """Unpickling this runs code: what an attacker would plant."""

    ran = False

    def __reduce__(self) -> tuple[object, ...]:
        return (setattr, (Boom, "ran", True))


def test_round_trip_keeps_bytes_and_structure() -> None:
    codec = EntryCodec()
    entry = Entry({"body": b"\x00\xffbin", "usage": [1, 2, 3], "n": None}, 12.5, 60, 1, "pxc:k")
    raw = codec.dumps(entry)
    assert raw.startswith(b"pxj1:") and b"$b64" in raw
    assert codec.loads(raw) == entry


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps(Boom()),
        b"!" + pickle.dumps(Boom()),  # cachelib's Redis framing of a pickle
        b"pxj1:not json",
        b'pxj1:{"k": "a"}',
        b'pxj1:{"k": "a", "s": "now", "t": 1, "x": 0, "v": 1}',
        b'pxj1:{"k": "a", "s": NaN, "t": 1, "x": 0, "v": 1}',
        b'pxj1:{"k": "a", "s": 1, "t": -1, "x": 0, "v": 1}',
        b'pxj1:{"k": "a", "s": 1, "t": 1, "x": 0, "v": {"$b64": "***"}}',
        b"pxj1:" + b"[" * 5000 + b"]" * 5000,
    ],
)
def test_anything_else_is_a_miss_never_an_exception(raw: bytes) -> None:
    codec = EntryCodec()
    assert codec.loads(raw) is None
    assert codec.rejected == 1
    assert not Boom.ran


def test_signed_values_bind_the_key_and_refuse_forgeries() -> None:
    signed = EntryCodec(b"k" * 32)
    entry = Entry("v", 1.0, 10, key="pxc:a")
    raw = signed.dumps(entry)
    assert raw.startswith(b"pxs1:") and signed.loads(raw) == entry
    assert signed.loads(EntryCodec().dumps(entry)) is None  # unsigned
    assert signed.loads(EntryCodec(b"x" * 32).dumps(entry)) is None  # another secret
    tampered = raw.replace(b'"v"', b'"w"', 1).replace(b'"v":"v"', b'"v":"w"')
    assert signed.loads(tampered) is None
    assert EntryCodec().loads(raw) is None  # a signed value, read without the secret


def test_the_store_refuses_an_entry_copied_from_another_key() -> None:
    backend = SimpleCache()
    backend.serializer = EntryCodec()
    store = CacheStore(backend, CacheConfig(), "simple")
    store.set("responses", "a", {"x": 1})
    store.set("responses", "b", {"x": 2})
    # An attacker with write access copies a's value over b's key.
    backend._cache[store.full_key("responses", "b")] = backend._cache[
        store.full_key("responses", "a")
    ]
    assert store.get("responses", "a").value == {"x": 1}  # type: ignore[union-attr]
    assert store.get("responses", "b") is None
    assert store.stats()["totals"]["rejected"] == 1


def test_files_hold_json_and_a_planted_pickle_is_a_miss(tmp_path: Path) -> None:
    backend = FileSystemCache(str(tmp_path), threshold=0)
    backend.serializer = EntryCodec()
    store = CacheStore(backend, CacheConfig(), "filesystem")
    store.set(CATEGORY, "k", _pack(ANSWER))
    (path,) = [p for p in tmp_path.iterdir()]
    assert b"pxj1:" in path.read_bytes() and b"\x80\x04" not in path.read_bytes()
    assert store.get(CATEGORY, "k").value["body"] == ANSWER.body  # type: ignore[union-attr]
    # The same file rewritten as cachelib would write a pickle.
    path.write_bytes(path.read_bytes()[:4] + pickle.dumps(Boom()))
    assert store.get(CATEGORY, "k") is None and not Boom.ran


@pytest.mark.parametrize(
    "value",
    [
        {"body": "not bytes", "provider": "up", "usage": None},
        {"body": b"x", "provider": "up", "usage": [1, 2]},
        {"body": b"x", "provider": "up", "usage": [1, 2, -3]},
        {"body": b"x", "provider": "up", "usage": None, "extra": 1},
        [1, 2, 3],
    ],
)
def test_a_cached_answer_of_the_wrong_shape_is_a_miss(value: object) -> None:
    backend = SimpleCache()
    backend.serializer = EntryCodec()
    store = CacheStore(backend, CacheConfig(), "simple")
    responses = ResponseCache(store, CacheConfig(), atomic_add=False)
    store.set(CATEGORY, "k", value)
    from proxyapi.cache.responses import Plan

    assert responses.lookup(Plan("k", read=True)) is None


def test_private_folders_are_created_0700_and_others_refused(tmp_path: Path) -> None:
    made = ensure_private_dir(tmp_path / "a" / "cache", "cache.dir")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    open_one = tmp_path / "open"
    open_one.mkdir()
    open_one.chmod(0o777)
    with pytest.raises(ConfigError, match="can be written by other users"):
        ensure_private_dir(open_one, "cache.dir")
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        ensure_private_dir(link, "cache.dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        ensure_private_dir(tmp_path / "file", "cache.dir")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another user's folder")
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to another user"):
        ensure_private_dir(theirs, "cache.dir")

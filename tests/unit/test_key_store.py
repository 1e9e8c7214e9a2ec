"""The managed-key stores: both keep keys and their audit log the same way, atomically, across
processes and hosts, and skip what they did not write; the records refuse what they cannot read
back and never hold a secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import multiprocessing
import os
import random
import sqlite3
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from proxyapi.config.values import hash_key
from proxyapi.keys import (
    PLAINTEXT_PREFIX,
    AuditEntry,
    KeyNameTaken,
    KeyStore,
    KeyStoreError,
    ManagedKey,
    RedisKeyStore,
    SQLiteKeyStore,
    check,
    decode,
    decode_audit,
    encode,
    encode_audit,
    hint_of,
    key_digest,
    new_id,
    new_plaintext,
)
from proxyapi.keys.records import MAX_AUDIT_PAGE, MAX_ENCODED
from tests.fakes.redis_server import free_port

NOW = 1_800_000_000.0
NS = "ns"


def make_key(name: str = "alice", **changes: Any) -> ManagedKey:
    plaintext = new_plaintext()
    fields: dict[str, Any] = {
        "id": new_id(),
        "name": name,
        "digest": key_digest(plaintext, None),
        "hint": hint_of(plaintext),
        "settings": {
            "models": ["gpt-4o*"],
            "limits": ["60/minute"],
            "budget": [{"usd": 50, "period": "month", "warn_at": 0.8}],
            "max_concurrent": 4,
        },
        "metadata": {"team": "search", "ticket": "OPS-1"},
        "created_at": NOW,
        "updated_at": NOW,
        "created_by": "cli:alice",
    }
    fields.update(changes)
    return ManagedKey(**fields)


def audit_for(
    key: ManagedKey, /, action: str = "create", at: float = NOW, **detail: Any
) -> AuditEntry:
    return AuditEntry(
        at=at,
        actor="key:root",
        action=action,
        key_id=key.id,
        key_name=key.name,
        client="203.0.113.7",
        detail=detail,
    )


def as_dict(key: ManagedKey) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(key))
    return data


# --- the stores, and how to plant what they would not write ---------------------------------


@dataclass
class Backend:
    store: KeyStore
    plant_key: Callable[[str, str, Any], None]  # (id, name, raw record)
    plant_audit: Callable[[Any], None]  # raw audit entry


def sqlite_backend(path: Path) -> Backend:
    store = SQLiteKeyStore(path)

    def run(sql: str, args: tuple[Any, ...]) -> None:
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(sql, args)

    return Backend(
        store,
        lambda key_id, name, raw: run("INSERT INTO keys VALUES (?, ?, ?)", (key_id, name, raw)),
        lambda raw: run("INSERT INTO audit (data) VALUES (?)", (raw,)),
    )


def redis_backend(client: redis.Redis) -> Backend:
    def plant_key(key_id: str, name: str, raw: Any) -> None:
        client.hset(f"{{{NS}:keys}}:all", key_id, raw)
        client.hset(f"{{{NS}:keys}}:names", name, key_id)

    return Backend(
        RedisKeyStore(client, NS),
        plant_key,
        lambda raw: client.xadd(f"{{{NS}:keys}}:audit", {"data": raw}),
    )


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["sqlite", "redis", "redis-decoding"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        found = sqlite_backend(tmp_path / "keys.sqlite3")
        yield found
        found.store.close()
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url, decode_responses=request.param == "redis-decoding")
    yield redis_backend(client)
    client.close()


@pytest.fixture
def store(backend: Backend) -> KeyStore:
    return backend.store


def audit_actions(store: KeyStore) -> list[tuple[str, str]]:
    return [(e.action, e.key_name) for _, e in store.audit_log(limit=MAX_AUDIT_PAGE)]


# --- both stores ------------------------------------------------------------------------------


def test_create_get_load_replace_delete(store: KeyStore) -> None:
    assert store.load() == (0, [])
    alice, bob = make_key("alice"), make_key("bob", settings={}, metadata={})
    store.create(bob, audit_for(bob))
    store.create(alice, audit_for(alice, admin=False))
    assert store.get(alice.id) == alice
    assert store.get(new_id()) is None
    assert store.get("not an id") is None
    version, keys = store.load()
    assert keys == [alice, bob]  # by name

    rotated = replace(
        alice,
        digest=key_digest(new_plaintext(), None),
        previous_digest=alice.digest,
        previous_until=NOW + 3600,
        updated_at=NOW + 1,
    )
    assert store.replace(rotated, audit_for(rotated, "rotate", grace=3600)) is True
    assert store.get(alice.id) == rotated
    assert store.load() == (version + 1, [rotated, bob])

    assert store.delete(bob.id, audit_for(bob, "delete")) is True
    assert store.get(bob.id) is None
    assert store.load() == (version + 2, [rotated])
    assert audit_actions(store) == [
        ("delete", "bob"),
        ("rotate", "alice"),
        ("create", "alice"),
        ("create", "bob"),
    ]
    # Its name is free again, for a new key (with a new id).
    again = make_key("bob")
    store.create(again, audit_for(again))
    assert store.get(again.id) == again


def test_the_version_changes_on_every_write_and_not_on_reads(store: KeyStore) -> None:
    seen = [store.version()]
    assert seen == [0]
    key = make_key()
    store.create(key, audit_for(key))
    seen.append(store.version())
    for i in range(3):
        key = replace(key, metadata={"n": str(i)})
        store.replace(key, audit_for(key, "update", metadata={"n": str(i)}))
        seen.append(store.version())
    store.delete(key.id, audit_for(key, "delete"))
    seen.append(store.version())
    assert len(set(seen)) == len(seen) == 6
    # Reading changes nothing.
    store.load()
    store.get(key.id)
    store.audit_log()
    assert store.version() == seen[-1]
    assert store.load()[0] == seen[-1]


def test_a_taken_name_is_refused_and_nothing_changes(store: KeyStore) -> None:
    first = make_key("alice")
    store.create(first, audit_for(first))
    before = (store.load(), store.audit_log())
    other = make_key("alice")
    with pytest.raises(KeyNameTaken, match="alice"):
        store.create(other, audit_for(other))
    assert (store.load(), store.audit_log()) == before
    assert store.get(other.id) is None


def test_an_id_is_not_created_twice(store: KeyStore) -> None:
    key = make_key("alice")
    store.create(key, audit_for(key))
    version = store.version()
    twin = replace(key, name="bob")
    with pytest.raises(ValueError, match="id"):
        store.create(twin, audit_for(twin))
    assert store.version() == version
    assert [k.name for k in store.load()[1]] == ["alice"]


def test_replace_keeps_the_name_and_needs_the_key(store: KeyStore) -> None:
    key = make_key("alice")
    store.create(key, audit_for(key))
    before = (store.load(), store.audit_log())
    renamed = replace(key, name="mallory")
    with pytest.raises(ValueError, match="name"):
        store.replace(renamed, audit_for(renamed, "update"))
    missing = make_key("carol")
    assert store.replace(missing, audit_for(missing, "update")) is False
    assert (store.load(), store.audit_log()) == before


def test_delete_of_a_missing_key_is_false_without_an_audit_entry(store: KeyStore) -> None:
    key = make_key("alice")
    store.create(key, audit_for(key))
    before = (store.load(), store.audit_log())
    ghost = make_key("ghost")
    assert store.delete(ghost.id, audit_for(ghost, "delete")) is False
    # The audit entry must name the key it deletes.
    with pytest.raises(ValueError, match="not named"):
        store.delete(key.id, audit_for(replace(key, name="bob"), "delete"))
    with pytest.raises(ValueError, match="audit entry"):
        store.delete(key.id, audit_for(ghost, "delete"))
    assert (store.load(), store.audit_log()) == before


def test_an_audit_entry_belongs_to_its_key(store: KeyStore) -> None:
    alice, bob = make_key("alice"), make_key("bob")
    with pytest.raises(ValueError, match="audit entry"):
        store.create(alice, audit_for(bob))
    store.create(alice, audit_for(alice))
    with pytest.raises(ValueError, match="audit entry"):
        store.replace(alice, audit_for(bob, "update"))
    with pytest.raises(ValueError, match="digest"):
        store.replace(alice, audit_for(alice, "update", digest=alice.digest))
    assert store.version() == 1


def test_the_audit_log_pages_back_newest_first(store: KeyStore) -> None:
    keys = [make_key(f"k{i}") for i in range(5)]
    details: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        detail = {"models": [f"m{i}", "gpt-*"], "budget": {"usd": 1.5 * i}, "note": None}
        details.append(detail)
        store.create(key, audit_for(key, at=NOW + i, **detail))
    update = replace(keys[0], metadata={"x": "y"})
    store.replace(update, audit_for(update, "update", at=NOW + 9, metadata={"x": "y"}))

    everything = store.audit_log()
    assert [(e.action, e.key_name) for _, e in everything] == [
        ("update", "k0"),
        *[("create", f"k{i}") for i in reversed(range(5))],
    ]
    assert [e.detail for _, e in everything[1:]] == details[::-1]
    assert everything[0][1] == audit_for(update, "update", at=NOW + 9, metadata={"x": "y"})
    assert all(isinstance(cursor, str) for cursor, _ in everything)

    pages, before = [], None
    while True:
        page = store.audit_log(limit=2, before=before)
        if not page:
            break
        pages.append(page)
        before = page[-1][0]
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [entry for page in pages for entry in page] == everything
    assert store.audit_log(limit=1, before=everything[-1][0]) == []

    for limit in (0, -1, MAX_AUDIT_PAGE + 1, True, 2.0):
        with pytest.raises(ValueError, match="limit"):
            store.audit_log(limit=limit)  # type: ignore[arg-type]
    for cursor in ("", "x", "1-2-3", "-1", "9" * 40):
        with pytest.raises(ValueError, match="cursor"):
            store.audit_log(before=cursor)


HOSTILE_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "garbage bytes": lambda d: b"\xff\xfe\x00garbage",
    "not json": lambda d: "{'id': 1}",
    "a list": lambda d: json.dumps([d]),
    "null": lambda d: "null",
    "a field too many": lambda d: json.dumps({**d, "extra": 1}),
    "a field missing": lambda d: json.dumps({k: v for k, v in d.items() if k != "hint"}),
    "a bool for a time": lambda d: json.dumps({**d, "created_at": True}),
    "text for a time": lambda d: json.dumps({**d, "expires_at": "never"}),
    "a negative time": lambda d: json.dumps({**d, "updated_at": -1.0}),
    "an infinite time": lambda d: json.dumps({**d, "created_at": "INF"}).replace('"INF"', "1e400"),
    "NaN": lambda d: json.dumps({**d, "revoked_at": float("nan")}),
    "huge metadata": lambda d: json.dumps({**d, "metadata": {f"k{i}": "v" for i in range(17)}}),
    "a long metadata value": lambda d: json.dumps({**d, "metadata": {"k": "v" * 257}}),
    "a number in metadata": lambda d: json.dumps({**d, "metadata": {"k": 1}}),
    "an unprintable name": lambda d: json.dumps({**d, "name": "al\x07ice"}),
    "a name with a newline": lambda d: json.dumps({**d, "name": "alice\n"}),
    "an uppercase digest": lambda d: json.dumps({**d, "digest": d["digest"].upper()}),
    "a bad id": lambda d: json.dumps({**d, "id": "key_../../etc"}),
    "a long hint": lambda d: json.dumps({**d, "hint": "pk-abcdefghijk…"}),
    "settings not a mapping": lambda d: json.dumps({**d, "settings": ["admin"]}),
    "an unknown setting": lambda d: json.dumps({**d, "settings": {"sha256": "0" * 64}}),
    "a half rotation": lambda d: json.dumps({**d, "previous_digest": "0" * 64}),
    "deep settings": lambda d: json.dumps(
        {**d, "settings": {"models": [[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]}}
    ),
    "too long": lambda d: json.dumps({**d, "created_by": "x" * MAX_ENCODED}),
}


@pytest.mark.parametrize("case", HOSTILE_KEYS)
def test_decode_refuses_what_encode_would_not_write(case: str) -> None:
    data = as_dict(make_key())
    assert decode(json.dumps(data)) is not None
    assert decode(HOSTILE_KEYS[case](data)) is None


@pytest.mark.parametrize("raw", [None, 1, 1.5, ["x"], {"id": "x"}, bytearray(b"{}"), "", b""])
def test_decode_takes_only_text_or_bytes(raw: Any) -> None:
    assert decode(raw) is None
    assert decode_audit(raw) is None


def test_planted_keys_are_skipped(backend: Backend) -> None:
    store = backend.store
    good = make_key("good")
    store.create(good, audit_for(good))
    data = as_dict(make_key("planted"))
    for i, case in enumerate(HOSTILE_KEYS):
        backend.plant_key(new_id(), f"planted{i}", HOSTILE_KEYS[case](data))
    # A sound record under another id than its own, and one under an odd id.
    backend.plant_key(new_id(), "planted", json.dumps(data))
    backend.plant_key("key_!", "odd", json.dumps(data))
    assert store.load()[1] == [good]
    assert store.get(data["id"]) is None
    assert store.get("key_!") is None
    # A planted name is taken, even by a key that does not decode: nothing is overwritten.
    other = make_key("planted3")
    with pytest.raises(KeyNameTaken):
        store.create(other, audit_for(other))


HOSTILE_AUDIT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "garbage bytes": lambda d: b"\x80\x81",
    "not an object": lambda d: json.dumps([d]),
    "a field too many": lambda d: json.dumps({**d, "seq": 1}),
    "an unknown action": lambda d: json.dumps({**d, "action": "truncate"}),
    "a bool for a time": lambda d: json.dumps({**d, "at": False}),
    "a digest in detail": lambda d: json.dumps({**d, "detail": {"digest": "0" * 64}}),
    "a digest as a value": lambda d: json.dumps({**d, "detail": {"old": "a" * 64}}),
    "a secret as a value": lambda d: json.dumps({**d, "detail": {"x": [new_plaintext()]}}),
    "detail not a mapping": lambda d: json.dumps({**d, "detail": "all of it"}),
    "an unprintable client": lambda d: json.dumps({**d, "client": "1.2.3.4\r\nX: y"}),
    "an empty actor": lambda d: json.dumps({**d, "actor": ""}),
    "a bad key name": lambda d: json.dumps({**d, "key_name": "a b"}),
}


@pytest.mark.parametrize("case", HOSTILE_AUDIT)
def test_decode_audit_refuses_what_encode_audit_would_not_write(case: str) -> None:
    data = json.loads(encode_audit(audit_for(make_key(), note="fine", hint="pk-abcd…")))
    assert decode_audit(json.dumps(data)) is not None
    assert decode_audit(HOSTILE_AUDIT[case](data)) is None


def test_planted_audit_entries_are_skipped_and_pages_stay_full(backend: Backend) -> None:
    store = backend.store
    keys = [make_key(f"k{i}") for i in range(3)]
    data = json.loads(encode_audit(audit_for(keys[0])))
    for key in keys:
        store.create(key, audit_for(key))
        for case in HOSTILE_AUDIT:
            backend.plant_audit(HOSTILE_AUDIT[case](data))
    assert [e.key_name for _, e in store.audit_log()] == ["k2", "k1", "k0"]
    first = store.audit_log(limit=2)
    assert [e.key_name for _, e in first] == ["k2", "k1"]
    assert [e.key_name for _, e in store.audit_log(limit=2, before=first[-1][0])] == ["k0"]


def test_stores_refuse_keys_they_could_not_read_back(store: KeyStore) -> None:
    bad = make_key(settings={"models": ("a", "b")})  # a tuple would come back a list
    with pytest.raises(ValueError, match="settings"):
        store.create(bad, audit_for(bad))
    assert store.version() == 0
    assert store.audit_log() == []


def test_many_threads_write_one_store(store: KeyStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                key = make_key(f"t{t}-{i}")
                store.create(key, audit_for(key))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    version, keys = store.load()
    assert (version, len(keys)) == (40, 40)


# --- across processes and hosts ---------------------------------------------------------------

EACH = 25


def run_in_processes(target: Callable[[int], None], count: int) -> None:
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        # Python 3.12+ warns of forking a process with threads; gunicorn does it too.
        warnings.filterwarnings("ignore", message=".*use of fork\\(\\) may lead to deadlocks")
        procs = [context.Process(target=target, args=(i,)) for i in range(count)]
        for proc in procs:
            proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0] * count


def create_many(store: KeyStore, worker: int) -> None:
    for i in range(EACH):
        key = make_key(f"w{worker}-{i}")
        store.create(key, audit_for(key))
        if i % 5 == 0:  # a name both workers try: exactly one of them gets it
            shared = make_key(f"shared-{i}")
            with suppress(KeyNameTaken):
                store.create(shared, audit_for(shared))


def check_after_workers(store: KeyStore, workers: int) -> None:
    version, keys = store.load()
    shared = len(range(0, EACH, 5))
    assert len(keys) == workers * EACH + shared
    assert {k.name for k in keys} >= {f"w{w}-{i}" for w in range(workers) for i in range(EACH)}
    audit = store.audit_log(limit=MAX_AUDIT_PAGE)
    # One version bump and one audit entry per key written, none for a refused name.
    assert version == len(keys) == len(audit)
    assert {e.key_id for _, e in audit} == {k.id for k in keys}


def test_sqlite_workers_share_one_file(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "keys.sqlite3")
    # The parent has an open connection when the workers fork: they must not use it.
    assert store.load() == (0, [])
    try:
        run_in_processes(lambda worker: create_many(store, worker), 2)
        check_after_workers(store, 2)
    finally:
        store.close()


def test_redis_hosts_share_one_store(redis_url: str) -> None:
    def host(worker: int) -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            create_many(RedisKeyStore(client, NS), worker)
        finally:
            client.close()

    run_in_processes(host, 2)
    client = redis.Redis.from_url(redis_url)
    try:
        check_after_workers(RedisKeyStore(client, NS), 2)
        assert RedisKeyStore(client, "other").load() == (0, [])
    finally:
        client.close()


# --- SQLite -----------------------------------------------------------------------------------


def test_sqlite_audit_rows_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = SQLiteKeyStore(path)
    key = make_key()
    store.create(key, audit_for(key))
    store.close()
    with closing(sqlite3.connect(path)) as conn:
        for sql in (
            "UPDATE audit SET data = '{}'",
            "DELETE FROM audit",
            "DELETE FROM audit WHERE seq = 1",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (1,)
    assert [e for _, e in SQLiteKeyStore(path).audit_log()] == [audit_for(key)]


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = SQLiteKeyStore(path)
    key = make_key()
    store.create(key, audit_for(key))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists() or name == path:
            assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
    store.close()


def test_sqlite_bad_paths_fail_at_startup(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as missing:
        SQLiteKeyStore(tmp_path / "no such folder" / "keys.sqlite3")
    assert isinstance(missing.value.__cause__, OSError)

    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "link.sqlite3"
    link.symlink_to(target)
    with pytest.raises(KeyStoreError) as linked:
        SQLiteKeyStore(link)
    assert isinstance(linked.value.__cause__, OSError)

    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(KeyStoreError) as garbage:
        SQLiteKeyStore(junk)
    assert isinstance(garbage.value.__cause__, sqlite3.Error)


def test_sqlite_reopens_after_close_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = SQLiteKeyStore(path)
    key = make_key()
    store.create(key, audit_for(key))
    store.close()
    assert store.get(key.id) == key  # a new connection
    store.close()
    assert SQLiteKeyStore(path).load() == (1, [key])  # the schema is made only once


# --- Redis ------------------------------------------------------------------------------------


def test_redis_errors_are_key_store_errors() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    store = RedisKeyStore(client, NS)
    key = make_key()
    calls: list[Callable[[], Any]] = [
        store.version,
        store.load,
        lambda: store.get(key.id),
        lambda: store.create(key, audit_for(key)),
        lambda: store.replace(key, audit_for(key, "update")),
        lambda: store.delete(key.id, audit_for(key, "delete")),
        store.audit_log,
    ]
    for call in calls:
        with pytest.raises(KeyStoreError) as failed:
            call()
        assert isinstance(failed.value.__cause__, redis.ConnectionError)
    client.close()


def test_redis_planted_version_or_types_are_key_store_errors(redis_client: redis.Redis) -> None:
    store = RedisKeyStore(redis_client, NS)
    redis_client.set(f"{{{NS}:keys}}:version", "not a number")
    for call in (store.version, store.load):
        with pytest.raises(KeyStoreError, match="version"):
            call()
    redis_client.set(f"{{{NS}:keys}}:all", "a string, not a hash")
    key = make_key()
    with pytest.raises(KeyStoreError) as failed:
        store.create(key, audit_for(key))
    assert isinstance(failed.value.__cause__, redis.ResponseError)


def test_redis_scripts_survive_a_script_flush(redis_client: redis.Redis) -> None:
    store = RedisKeyStore(redis_client, NS)
    first, second = make_key("a"), make_key("b")
    store.create(first, audit_for(first))
    assert store.load() == (1, [first])
    redis_client.script_flush()  # as a restarted or failed-over server has no scripts
    assert store.load() == (1, [first])
    store.create(second, audit_for(second))
    assert store.replace(second, audit_for(second, "update")) is True
    assert store.delete(first.id, audit_for(first, "delete")) is True
    assert store.load() == (4, [second])


def test_redis_keeps_one_slot_and_trims_the_audit_log(redis_client: redis.Redis) -> None:
    store = RedisKeyStore(redis_client, NS, audit_max=10)
    key = make_key()
    store.create(key, audit_for(key))
    for i in range(300):
        store.replace(key, audit_for(key, "update", n=i))
    # Apps built by earlier tests of this process go on publishing their worker figures
    # ({<namespace>:stats}:...) into the session's Redis from a background thread.
    names = sorted(k.decode() for k in redis_client.keys("*") if b":stats}:" not in k)
    assert names == [f"{{{NS}:keys}}:{part}" for part in ("all", "audit", "names", "version")]
    assert len({key_slot(n.encode()) for n in names}) == 1
    # MAXLEN ~ trims whole stream nodes (100 entries each), so about 10 are kept, not exactly.
    assert 10 <= redis_client.xlen(f"{{{NS}:keys}}:audit") <= 200
    assert store.audit_log(limit=1)[0][1].detail == {"n": 299}
    with pytest.raises(ValueError, match="audit_max"):
        RedisKeyStore(redis_client, NS, audit_max=0)


def test_redis_drops_keys_that_share_a_name(redis_client: redis.Redis) -> None:
    backend = redis_backend(redis_client)
    key = make_key("alice")
    backend.store.create(key, audit_for(key))
    twin = make_key("alice")
    backend.plant_key(twin.id, "alice-twin", encode(twin))
    # Which "alice" would be the real one is not the store's guess to make: neither is kept.
    assert backend.store.load()[1] == []


# --- the records ------------------------------------------------------------------------------


def test_key_digest_with_and_without_a_pepper() -> None:
    plaintext = new_plaintext()
    plain = key_digest(plaintext, None)
    peppered = key_digest(plaintext, b"pepper" * 6)
    assert plain == hash_key(plaintext) == hashlib.sha256(plaintext.encode()).hexdigest()
    assert peppered == hmac.new(b"pepper" * 6, plaintext.encode(), hashlib.sha256).hexdigest()
    assert peppered != plain
    assert key_digest(plaintext, b"other") != peppered
    assert all(len(d) == 64 and d == d.lower() for d in (plain, peppered))
    with pytest.raises(ValueError, match="empty"):
        key_digest(plaintext, b"")


def test_hints_show_no_more_than_four_characters() -> None:
    for _ in range(50):
        plaintext = new_plaintext()
        hint = hint_of(plaintext)
        assert hint == plaintext[:7] + "…"
        assert hint.startswith(PLAINTEXT_PREFIX)
        shown = hint.removeprefix(PLAINTEXT_PREFIX).removesuffix("…")
        assert len(shown) == 4
    assert hint_of("sk-imported-secret") == "sk-i…"
    assert hint_of("pk-") == "pk-…"
    assert hint_of("pk-\n\t\x00x") == "pk-…"


def test_new_secrets_and_ids() -> None:
    plaintexts = {new_plaintext() for _ in range(100)}
    ids = {new_id() for _ in range(100)}
    assert len(plaintexts) == len(ids) == 100
    assert all(p.startswith("pk-") and len(p) == 46 for p in plaintexts)
    assert all(i.startswith("key_") and len(i) == 28 for i in ids)


def test_decode_of_encode_is_the_key() -> None:
    full = make_key(
        expires_at=NOW + 86400,
        revoked_at=NOW + 10,
        previous_digest="a" * 64,
        previous_until=NOW + 60,
        metadata={f"k{i}": "v" * 256 for i in range(16)},
        settings={"admin": True, "max_tokens": 4096, "models": ["\ud800lone"]},
    )
    for key in (make_key(), make_key(settings={}, metadata={}), full):
        assert decode(encode(key)) == key
        assert decode(encode(key).encode()) == key
    # A time given as an int comes back as the same number.
    whole = make_key(created_at=1_800_000_000, updated_at=1_800_000_001)
    assert decode(encode(whole)) == whole
    entry = audit_for(full, "update", models=["a"], expires_at=None)
    assert decode_audit(encode_audit(entry)) == entry


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "not a name"},
        {"id": "k1"},
        {"digest": "xyz"},
        {"settings": {"sha256": "0" * 64}},
        {"settings": {"limits": {1, 2}}},
        {"settings": {"budget": float("inf")}},
        {"metadata": {"": "empty key"}},
        {"metadata": {"k": "line\nbreak"}},
        {"created_at": float("nan")},
        {"expires_at": True},
        {"previous_until": NOW},
        {"created_by": ""},
    ],
)
def test_encode_refuses_what_decode_would(changes: dict[str, Any]) -> None:
    key = make_key(**changes)
    with pytest.raises(ValueError):
        check(key)
    with pytest.raises(ValueError):
        encode(key)


@pytest.mark.parametrize(
    "detail",
    [
        {"digest": "0" * 64},
        {"previous_digest": None},
        {"plaintext": "x"},
        {"old": "F" * 64},
        {"key": new_plaintext()},
        {"nested": {"deep": [new_plaintext()]}},
    ],
)
def test_an_audit_entry_never_holds_a_secret(detail: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="detail"):
        encode_audit(audit_for(make_key(), **detail))


def test_mangled_records_never_raise() -> None:
    rng = random.Random(7)
    good = [encode(make_key()), encode_audit(audit_for(make_key(), grace=60))]
    for _ in range(3000):
        raw = bytearray(rng.choice(good).encode())
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            op = rng.randrange(3)
            if op == 0:
                raw[at] = rng.randrange(256)
            elif op == 1:
                del raw[at]
            else:
                raw.insert(at, rng.choice(b'{}[]",:0e-.tfn\\u'))
        decode(bytes(raw))
        decode_audit(bytes(raw))

"""The store of Responses API responses: pins, kept conversations, tenants, hostile values."""

from __future__ import annotations

from typing import Any

import pytest
from cachelib import FileSystemCache, SimpleCache

from proxyapi.cache.codec import Entry, EntryCodec
from proxyapi.cache.store import CacheStore
from proxyapi.config import CacheConfig
from proxyapi.response_store import CATEGORY, ResponseStore, Stored, input_items

ALICE = "alice:0123456789abcdef"
BOB = "bob:fedcba9876543210"


def make(backend: Any = None, max_bytes: int = 1 << 20, keep: bool = True) -> ResponseStore:
    backend = backend or SimpleCache()
    backend.serializer = EntryCodec()
    return ResponseStore(
        CacheStore(backend, CacheConfig(), "simple"), ttl=60, max_bytes=max_bytes, keep=keep
    )


def response(rid: str = "resp_1") -> dict[str, Any]:
    return {"id": rid, "object": "response", "output": [], "status": "completed"}


def test_input_items_turns_a_string_into_one_user_message() -> None:
    assert input_items("hi") == [{"type": "message", "role": "user", "content": "hi"}]
    assert input_items([{"role": "user", "content": "a"}, "junk"]) == [
        {"role": "user", "content": "a"}
    ]
    assert input_items(None) == []


def test_a_kept_response_comes_back_with_its_conversation() -> None:
    store = make()
    items = [{"role": "user", "content": "caf\u00e9 \u2028"}, {"type": "message", "content": []}]
    assert store.keep(ALICE, response(), items)
    found = store.lookup(ALICE, "resp_1")
    assert found == Stored("resp_1", response=response(), items=items)


def test_a_pin_names_the_provider() -> None:
    store = make()
    assert store.pin(ALICE, "resp_up", "openai")
    assert store.lookup(ALICE, "resp_up") == Stored("resp_up", provider="openai")


def test_another_tenant_sees_nothing_and_cannot_delete() -> None:
    store = make()
    store.keep(ALICE, response(), [])
    assert store.lookup(BOB, "resp_1") is None
    assert not store.delete(BOB, "resp_1")
    assert store.lookup(ALICE, "resp_1") is not None
    assert store.delete(ALICE, "resp_1")
    assert store.lookup(ALICE, "resp_1") is None


def test_an_entry_copied_to_another_tenant_key_is_refused() -> None:
    """Someone with write access to the store copies Alice's value under Bob's key."""
    store = make()
    store.keep(ALICE, response(), [{"role": "user", "content": "secret"}])
    backend = store.store.backend
    alice_full = store.store.full_key(CATEGORY, store._key(ALICE, "resp_1"))
    bob_full = store.store.full_key(CATEGORY, store._key(BOB, "resp_1"))
    entry = backend.get(alice_full)
    # Copied as it is (the entry names its own key) and re-keyed (the owner inside is Alice's).
    backend.set(bob_full, entry)
    assert store.lookup(BOB, "resp_1") is None
    backend.set(bob_full, Entry(entry.value, entry.stored_at, entry.ttl, key=bob_full))
    assert store.lookup(BOB, "resp_1") is None


@pytest.mark.parametrize(
    "value",
    [
        "text",
        [],
        {"v": 2, "owner": ALICE, "id": "resp_1", "provider": "x"},
        {"v": 1, "owner": ALICE, "id": "resp_other", "provider": "x"},
        {"v": 1, "owner": ALICE, "id": "resp_1", "response": "{", "items": "[]"},
        {"v": 1, "owner": ALICE, "id": "resp_1", "response": '{"id": "resp_2"}', "items": "[]"},
        {"v": 1, "owner": ALICE, "id": "resp_1", "response": '{"id": "resp_1"}', "items": "[1]"},
        {"v": 1, "owner": ALICE, "id": "resp_1", "response": '{"id": "resp_1"}', "items": 5},
        {"v": 1, "owner": ALICE, "id": "resp_1", "response": "[" * 5000, "items": "[]"},
    ],
)
def test_a_stored_value_of_the_wrong_shape_is_a_miss(value: Any) -> None:
    store = make()
    key = store._key(ALICE, "resp_1")
    store.store.set(CATEGORY, key, value, 60)
    assert store.lookup(ALICE, "resp_1") is None
    assert store.store.codec is not None and store.store.codec.rejected == 1


def test_a_conversation_over_the_limit_is_not_kept() -> None:
    store = make(max_bytes=100)
    assert not store.keep(ALICE, response(), [{"role": "user", "content": "x" * 200}])
    assert store.lookup(ALICE, "resp_1") is None


def test_store_false_in_the_config_keeps_no_response_but_pins() -> None:
    store = make(keep=False)
    assert not store.keep(ALICE, response(), [])
    assert store.pin(ALICE, "resp_up", "openai")
    assert store.lookup(ALICE, "resp_up") is not None


def test_a_deep_conversation_survives_the_file_backend(tmp_path: Any) -> None:
    """Tool schemas nest deeper than the entry codec's limit: the conversation is kept as text."""
    store = make(FileSystemCache(str(tmp_path), threshold=0))
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"properties": {"x": deep}}
    kept = response()
    kept["tools"] = [{"type": "function", "name": "f", "parameters": deep}]
    assert store.keep(ALICE, kept, [{"role": "user", "content": "hi"}])
    found = store.lookup(ALICE, "resp_1")
    assert found is not None and found.response == kept

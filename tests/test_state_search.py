"""Text search over the event log through the trigram index (``opsloop/state/_search.py``), on SQLite and
on the real local Postgres: it finds what a scan finds, for any input, indexed or not yet indexed."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsloop._ids import new_id
from opsloop.state import NewEvent, StateStore, open_store

from .conftest import PG_DSN, wait_for


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/state.sqlite", fsync=False)
    else:
        s = open_store(request.getfixturevalue("pg_url"))
    assert s.search_index, "the local Postgres has pg_trgm; the index must be made"
    s.search_scan_first = 0  # these logs are small: read the index for all but the events not indexed yet
    yield s
    s.close()


def index_all(store: StateStore) -> None:
    while store.index_search(50):
        pass
    assert store.search_indexed_upto() >= store.max_seq()


def ids(store: StateStore, text: str, **kw: object) -> list[str]:
    return [e.id for e in store.list_events(search=text, limit=10_000, **kw)]  # type: ignore[arg-type]


def scanned(store: StateStore, text: str, **kw: object) -> list[str]:
    store.search_index = False
    try:
        return ids(store, text, **kw)
    finally:
        store.search_index = True


def sample_events() -> list[NewEvent]:
    now = time.time()
    raw = b'{"email": "Ada.Lovelace@Example.com", "plan": "pro"}'  # a webhook: the payload is stored as its body
    return [
        NewEvent(id=new_id("evt_"), name="hook", endpoint="signup", received_at=now, body=raw,
                 payload_text=raw.decode(), payload={"email": "Ada.Lovelace@Example.com", "plan": "pro"}),
        NewEvent(id=new_id("evt_"), name="deal", received_at=now, payload={"note": "50% off the Enterprise plan"}),
        NewEvent(id=new_id("evt_"), name="deal", received_at=now, status="quarantined", endpoint="signup",
                 payload={"note": "fine"}, error={"schema_errors": [{"message": "'email' is a required property"}]}),
        NewEvent(id=new_id("evt_"), name="hook", received_at=now, status="rejected",
                 error={"reason": "bad signature: no Webhook-Signature header"}),
    ]


def test_search_finds_payload_body_and_error_text_indexed_or_not(store: StateStore) -> None:
    events = sample_events()
    store.append_events(events)
    for indexed in (False, True):
        if indexed:
            index_all(store)
        assert ids(store, "lovelace@EXAMPLE") == [events[0].id]  # in the body the payload is stored as
        assert ids(store, "enterPRISE") == [events[1].id]  # in a payload
        assert ids(store, "required prop") == [events[2].id]  # in an error
        assert ids(store, "webhook-signature") == [events[3].id]
        assert ids(store, events[2].id) == [events[2].id]  # an event id
        assert ids(store, "signup") == []  # the endpoint is not searched
        assert ids(store, "plan", status="received") == [events[1].id, events[0].id]
        assert ids(store, "plan", before_seq=store.list_events(limit=1)[0].seq - 2) == [events[0].id]
        assert ids(store, "no such text") == []


def test_non_ascii_text_is_found_however_it_was_stored(store: StateStore) -> None:
    """opsloop's own JSON escapes non-ASCII (``json.dumps``: é is \\u00e9); a webhook body keeps the sender's
    bytes (raw UTF-8 or escapes). A search typed as a person types it finds each, in either case."""
    now = time.time()
    raw = '{"name": "Zoë Ölçer", "city": "Montréal"}'.encode()  # the sender's UTF-8, stored as the body
    sent_escaped = b'{"name": "Zo\\u00eb \\u00d6l\\u00e7er", "city": "Montr\\u00e9al"}'
    events = [
        NewEvent(id=new_id("evt_"), name="hook", received_at=now, body=raw, payload_text=raw.decode(),
                 payload={"name": "Zoë Ölçer", "city": "Montréal"}),
        NewEvent(id=new_id("evt_"), name="hook", received_at=now, body=sent_escaped,
                 payload_text=sent_escaped.decode(), payload={"name": "Zoë Ölçer", "city": "Montréal"}),
        NewEvent(id=new_id("evt_"), name="own", received_at=now, payload={"name": "ZOË ÖLÇER", "city": "MONTRÉAL"}),
        NewEvent(id=new_id("evt_"), name="own", received_at=now, payload={"note": "plain"},
                 error={"reason": "Bitte prüfen: Größe"}),
        NewEvent(id=new_id("evt_"), name="own", received_at=now, payload={"quote": 'she said "oui"', "emoji": "🚀 go"}),
    ]
    store.append_events(events)
    stored = store.query("SELECT payload FROM events WHERE id = ?", (events[2].id,))[0][0]
    assert "\\u00cb" in stored  # the escaped form this test is about
    everyone = [events[2].id, events[1].id, events[0].id]
    for indexed in (False, True):
        if indexed:
            index_all(store)
        assert ids(store, "Zoë") == everyone
        assert ids(store, "zoë ölçer") == everyone
        assert ids(store, "ZOË ÖLÇER") == everyone
        assert ids(store, "montréal") == everyone
        assert ids(store, "é") == everyone  # one character: a scan
        assert ids(store, "prüfen") == [events[3].id]  # in an error
        assert ids(store, "GRÖSSE") == []  # ß is not SS: a search finds what was written
        assert ids(store, 'said "oui"') == [events[4].id]  # the quotes JSON escaped
        assert ids(store, "🚀 go") == [events[4].id]  # past the BMP: a surrogate pair in JSON
        assert ids(store, "zoe") == []  # no accent folding


def test_an_error_set_later_is_found_and_a_purged_event_is_not(store: StateStore) -> None:
    now = time.time()
    kept = NewEvent(id=new_id("evt_"), name="a", received_at=now, payload={"x": "alpha"})
    gone = NewEvent(id=new_id("evt_"), name="a", received_at=now, payload={"x": "alphabet"}, expires_at=now - 10)
    store.append_events([kept, gone])
    index_all(store)
    store.fail_event(kept.id, "loader", "column Umlaut_Count does not exist")
    assert ids(store, "umlaut_count does") == [kept.id]
    store.mark_events([kept.id], "failed", error={"reason": "HubSpot said 429 Too Many Requests"})
    assert ids(store, "too many") == [kept.id] and ids(store, "does not exist") == []
    assert ids(store, "alpha") == [gone.id, kept.id]
    assert store.purge_expired() == 1
    assert ids(store, "alpha") == [kept.id]
    index_all(store)
    assert ids(store, "alphabet") == []


ALPHABET = "abcAB 0129%_\\\"'*()-:^.,{}@éÉ\t"
ODD = ['"', '""', "*", "a*", "NEAR(a b)", "NEAR(", "AND", "OR", "NOT", "^ab", "col:ab", "-ab", "'", "''", "%",
       "%%", "_", "__", "\\", "a", "ab", "Ab", "é", "ÉÉÉ", "{\"", "x" * 10_000, "ab" * 5000, "a%b", "a_b", "\t",
       "\x00ab", "(((", ")", "a OR b", "\"a\" AND \"b\"", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "evt_"]


def test_any_input_finds_what_a_scan_finds(store: StateStore) -> None:
    rng = random.Random(7)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    now = time.time()
    events = [NewEvent(id=new_id("evt_"), name="gen", received_at=now, payload={"t": t},
                       error={"e": texts[-1 - n]} if n % 3 == 0 else None) for n, t in enumerate(texts)]
    store.append_events(events[:200])
    index_all(store)
    store.append_events(events[200:])  # not indexed yet: scanned
    queries = [*ODD, *(t[i : i + rng.randint(1, 8)] for t in texts[:120] for i in [rng.randint(0, 10)])]
    for query in queries:
        assert ids(store, query) == scanned(store, query), repr(query[:40])
    index_all(store)
    for query in queries:
        assert ids(store, query) == scanned(store, query), repr(query[:40])


def test_a_common_text_fills_the_page_from_the_newest_events(store: StateStore) -> None:
    store.search_scan_first = 100
    events = [NewEvent(id=new_id("evt_"), name="gen", received_at=time.time(), payload={"n": n, "tag": "common"})
              for n in range(400)]
    store.append_events(events)
    index_all(store)
    expected = [e.id for e in reversed(events)]
    assert [e.id for e in store.list_events(search="common", limit=51)] == expected[:51]
    assert [e.id for e in store.list_events(search="common", limit=150)] == expected[:150]  # index below the scan
    page = store.list_events(search="common", limit=51, before_seq=store.max_seq() - 10)
    assert [e.id for e in page] == expected[11:62]


def test_the_background_indexer_keeps_up_with_appends(store: StateStore) -> None:
    batch = [NewEvent(id=new_id("evt_"), name="bulk", received_at=time.time(), payload={"n": f"item-{n:05d}"})
             for n in range(2000)]
    store.append_events(batch)
    wait_for(lambda: store.search_indexed_upto() == store.max_seq(), 30, what="the indexer to catch up")
    assert ids(store, "item-01234") == [batch[1234].id]


def test_an_upgraded_store_indexes_the_events_it_had(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A store migrated before 0005, holding events, takes the migration; the indexer then indexes the old
    events (the search finds them through the index, with no scan of the tail)."""
    from opsloop.state.sqlite import SQLiteStateStore

    old = SQLiteStateStore(tmp_path / "old.sqlite", fsync=False)
    old.migrate(upto=4)
    assert not old.search_index
    events = sample_events()
    old.append_events(events)
    assert ids(old, "lovelace") == [events[0].id]  # before: a scan
    old.close()
    store = open_store(f"sqlite:///{tmp_path}/old.sqlite", fsync=False)
    try:
        assert store.search_index
        wait_for(lambda: store.search_indexed_upto() == store.max_seq(), 30, what="the old events indexed")
        assert ids(store, "lovelace") == [events[0].id] and ids(store, "required prop") == [events[2].id]
        found = store.query("SELECT rowid FROM events_search WHERE events_search MATCH '\"lovelace\"'")
        assert [r[0] for r in found] == [store.get_event(events[0].id).seq]  # type: ignore[union-attr]
    finally:
        store.close()


@pytest.mark.postgres
def test_an_upgraded_postgres_store_indexes_the_events_it_had(pg_url: str) -> None:
    from opsloop.state.postgres import PostgresStateStore

    old = PostgresStateStore(pg_url)
    old.migrate(upto=4)
    events = sample_events()
    old.append_events(events)
    old.close()
    store = open_store(pg_url)
    try:
        assert store.search_index
        wait_for(lambda: store.search_indexed_upto() == store.max_seq(), 30, what="the old events indexed")
        assert ids(store, "lovelace") == [events[0].id] and ids(store, "required prop") == [events[2].id]
        assert store.query("SELECT COUNT(*) FROM event_search")[0][0] == 3  # the rejected one has no payload
    finally:
        store.close()


@pytest.fixture
def unprivileged_pg_url(pg_database: str) -> Iterator[str]:
    """A fresh database (pg_trgm not in it) and a role that owns a schema there but may not create extensions."""
    import psycopg

    role = f"opsloop_noext_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    database = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC')
        # its tables go to schema public, which it owns (a ?schema= in the URL needs CREATE on the database)
        conn.execute(f'ALTER SCHEMA public OWNER TO "{role}"')
    host = PG_DSN.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql://{role}@{host}/{database}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_database.rsplit("/", 1)[1]}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_without_pg_trgm_postgres_search_scans(unprivileged_pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(unprivileged_pg_url)
    try:
        assert not store.search_index
        assert any("pg_trgm" in r.getMessage() for r in caplog.records)
        events = sample_events()
        store.append_events(events)
        assert store.index_search() == 0  # nothing copied for an index that is not there
        assert ids(store, "lovelace@EXAMPLE") == [events[0].id] and ids(store, "required prop") == [events[2].id]
        for query in ODD:
            assert ids(store, query) == scanned(store, query)
    finally:
        store.close()

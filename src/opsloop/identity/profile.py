"""Looking up one person: by person id, ``system:record_id`` or any identifier value (normalised)."""

from __future__ import annotations

from typing import TypedDict

from ._normalize import python_normalizer
from ._sql import Conn, IdentityError
from .config import IdentityConfig


def find_person(db: Conn, cfg: IdentityConfig, query: str) -> str:
    """The person id for ``query``; raises ``IdentityError`` saying what was tried."""
    if not db.one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                  "AND table_name = 'graph'"):
        raise IdentityError("identities are not resolved yet; run `opsloop identity build` first")
    person = query
    for _ in range(20):  # follow merges: an old id still finds the person it was merged into
        found = db.rows("SELECT merged_into, retired_at FROM identity.persons WHERE person_id = ?", (person,))
        if not found:
            break
        merged_into, retired_at = found[0]
        if retired_at is None:
            return person
        if merged_into is None:
            raise IdentityError(f"person {query} no longer exists (all of their records were deleted)")
        person = str(merged_into)
    if ":" in query:
        system, _, record_id = query.partition(":")
        hit = db.one("SELECT person_id FROM identity.graph WHERE system = ? AND record_id = ?", (system, record_id))
        if hit:
            return str(hit)
    people: set[str] = set()
    for id_type, icfg in cfg.identifiers.items():
        value = python_normalizer(icfg)(query)
        if value is None:
            continue
        for (pid,) in db.rows("SELECT DISTINCT g.person_id FROM identity.identifiers i JOIN identity.graph g "
                              "USING (nid) WHERE i.id_type = ? AND i.value = ?", (id_type, value)):
            people.add(str(pid))
    if len(people) == 1:
        return people.pop()
    if people:
        raise IdentityError(f"{query!r} belongs to {len(people)} people: {', '.join(sorted(people))}; "
                            "pass one of these ids")
    raise IdentityError(f"no person with id, record (system:record_id) or identifier {query!r}; "
                        "check the spelling, or run `opsloop identity build` if the record is new")


class Identifier(TypedDict):
    type: str
    value: str
    systems: list[str]
    """The systems whose records carry it."""


class Profile(TypedDict):
    """One person: identifiers, linked records, golden fields with provenance, segments, merged persons."""

    person_id: str
    identifiers: list[Identifier]
    records: list[dict[str, object]]
    """``system``, ``record_id``, ``updated_at`` of each linked record."""
    fields: dict[str, dict[str, object]]
    """Golden field -> ``value``, ``source`` (the system it came from), ``updated_at``."""
    segments: list[str]
    merged_from: list[str]


def profile(db: Conn, field_names: list[str], person_id: str) -> Profile:
    """Identifiers, linked records per system and golden fields with provenance."""
    identifiers = [
        Identifier(type=str(t), value=str(v), systems=[str(x) for x in s] if isinstance(s, list | tuple) else [])
        for t, v, s in db.rows(
            "SELECT i.id_type, i.value, array_agg(DISTINCT r.system ORDER BY r.system) FROM identity.identifiers i "
            "JOIN identity.graph g USING (nid) JOIN identity.records r USING (nid) WHERE g.person_id = ? "
            "GROUP BY i.id_type, i.value ORDER BY 1, 2", (person_id,))
    ]
    records = [
        {"system": s, "record_id": rid, "updated_at": u}
        for s, rid, u in db.rows(
            "SELECT r.system, r.record_id, r.updated_at FROM identity.graph g JOIN identity.records r USING (nid) "
            "WHERE g.person_id = ? ORDER BY r.system, r.record_id", (person_id,))
    ]
    golden = db.dicts("SELECT * FROM identity.golden_records WHERE person_id = ?", (person_id,))
    row = golden[0] if golden else {}
    fields = {name: {"value": row.get(name), "source": row.get(f"{name}__source"),
                     "updated_at": row.get(f"{name}__updated_at")} for name in field_names}
    segments: list[str] = []
    if db.one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
              "AND table_name = 'segment_members'"):
        segments = [str(r[0]) for r in db.rows("SELECT segment FROM identity.segment_members WHERE person_id = ? "
                                          "ORDER BY 1", (person_id,))]
    merged = [str(r[0]) for r in db.rows("SELECT person_id FROM identity.persons WHERE merged_into = ? ORDER BY 1",
                                    (person_id,))]
    return {"person_id": person_id, "identifiers": identifiers, "records": records, "fields": fields,
            "segments": segments, "merged_from": merged}


def search_people(db: Conn, cfg: IdentityConfig, query: str, limit: int = 50) -> list[dict[str, object]]:
    """People whose person id, ``system:record_id`` or an identifier value is ``query`` (normalised), or whose
    identifier values contain it; each with the identifiers that matched."""
    if not db.one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                  "AND table_name = 'graph'"):
        raise IdentityError("identities are not resolved yet; run `opsloop identity build` first")
    try:
        exact = [find_person(db, cfg, query)]
    except IdentityError:
        exact = []
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found = db.rows(
        "SELECT g.person_id, list_sort(list_distinct(list(i.id_type || ': ' || i.value))) "
        "FROM identity.identifiers i JOIN identity.graph g USING (nid) "
        "WHERE i.value ILIKE ? ESCAPE '\\' OR g.person_id = ANY(?) GROUP BY 1 ORDER BY 1 LIMIT ?",
        (pattern, exact, limit))
    ordered = sorted(found, key=lambda r: (r[0] not in exact, r[0]))
    return [{"person_id": str(pid), "matched": list(ids) if isinstance(ids, list | tuple) else []}
            for pid, ids in ordered]


def segment_history(db: Conn, person_id: str, limit: int = 100) -> list[dict[str, object]]:
    """The person's segment entries and exits, newest first."""
    if not db.one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'identity' "
                  "AND table_name = 'segment_history'"):
        return []
    return db.dicts("SELECT segment, event, changed_at FROM identity.segment_history WHERE person_id = ? "
                    "ORDER BY changed_at DESC LIMIT ?", (person_id, limit))

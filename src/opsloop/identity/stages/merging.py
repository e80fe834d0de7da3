"""Stage 4: records merged into clusters, rule by rule, by connected components; keys that would break a limit
are refused and recorded in ``identity.conflicts``.

Keys and limited values are 64-bit hashes of (type, value) (``vid``), so every join is on integers."""

from __future__ import annotations

from ...narrow import as_int
from .._sql import Conn, literal
from .plan import Plan


def merge(db: Conn, plan: Plan, run_id: str) -> int:
    db.x("CREATE OR REPLACE TEMP TABLE _comp AS SELECT nid, nid AS label FROM _scope")
    types = ", ".join(literal(t) for t in plan.rule_types) or "NULL"
    db.x(f"""CREATE OR REPLACE TEMP TABLE _ids AS
             SELECT i.nid, i.id_type, i.vid FROM identity.identifiers i SEMI JOIN _scope s ON s.nid = i.nid
             WHERE i.id_type IN ({types})""")
    # Shared values (held by more records than max_records_per_value) never link.
    shared = [(t, c.max_records_per_value) for t, c in plan.cfg.identifiers.items() if c.max_records_per_value]
    if shared:
        conds = " OR ".join(f"(id_type = {literal(t)} AND n > {int(n)})" for t, n in shared)
        in_types = ", ".join(literal(t) for t, _ in shared)
        # identifiers are distinct per (record, type, value), so count(*) counts records
        db.x(f"""CREATE OR REPLACE TEMP TABLE _shared AS
                 SELECT vid, id_type, value FROM (
                   SELECT i.vid, min(i.id_type) AS id_type, min(i.value) AS value, count(*) AS n
                   FROM identity.identifiers i
                   WHERE i.id_type IN ({in_types})
                     AND i.vid IN (SELECT vid FROM _ids WHERE id_type IN ({in_types}))
                   GROUP BY i.vid)
                 WHERE {conds}""")
        db.x(f"INSERT INTO identity.conflicts SELECT {literal(run_id)}, NULL, id_type, value, "
             "'shared by more records than max_records_per_value', now() FROM _shared")
        db.x("CREATE OR REPLACE TEMP TABLE _ids AS SELECT i.* FROM _ids i ANTI JOIN _shared s ON s.vid = i.vid")
    # Limited values per record: identifier types with max_per_person, and one pseudo-type per unlink pair.
    lim_parts = ["SELECT NULL::BIGINT AS nid, NULL::VARCHAR AS lim_type, NULL::UBIGINT AS v, 0 AS max_n "
                 "WHERE false"]
    for t, c in plan.cfg.identifiers.items():
        if c.max_per_person:
            lim_parts.append(f"SELECT i.nid, {literal(t)}, i.vid, {int(c.max_per_person)} FROM "
                             f"identity.identifiers i SEMI JOIN _scope s ON s.nid = i.nid "
                             f"WHERE i.id_type = {literal(t)}")
    for k, (a, b) in enumerate(plan.cfg.unlinks):
        for side, node in ((1, a), (2, b)):
            lim_parts.append(f"SELECT nid, 'unlink:{k}', {side}, 1 FROM identity.records "
                             f"WHERE node = {literal(node)}")
    db.x("CREATE OR REPLACE TEMP TABLE _lim AS " + " UNION ALL ".join(lim_parts))
    refused = 0
    if plan.cfg.links:
        pairs = " UNION ALL ".join(
            f"SELECT r.nid, {k}::UBIGINT AS key FROM identity.records r WHERE r.node IN "
            f"({literal(a)}, {literal(b)})" for k, (a, b) in enumerate(plan.cfg.links))
        db.x(f"CREATE OR REPLACE TEMP TABLE _keys AS SELECT p.* FROM ({pairs}) p "
             "SEMI JOIN _scope s ON s.nid = p.nid")
        _apply_rule(db, plan, run_id, ["links"], checked=False)
    rule_keys = []
    for rule in plan.cfg.merge_rules:
        types_ = plan.cfg.rule_types(rule)
        sql = f"SELECT nid, vid AS key FROM _ids WHERE id_type = {literal(types_[0])}"
        for t in types_[1:]:
            sql = (f"SELECT k.nid, hash(k.key, i.vid) AS key FROM ({sql}) k JOIN _ids i "
                   f"ON i.nid = k.nid AND i.id_type = {literal(t)}")
        rule_keys.append((types_, sql))
    if len(rule_keys) > 1:
        db.x("CREATE OR REPLACE TEMP TABLE _keys AS " + " UNION ALL ".join(sql for _, sql in rule_keys))
        if _merge_all_rules_at_once(db, plan):
            return refused
    for types_, sql in rule_keys:
        db.x(f"CREATE OR REPLACE TEMP TABLE _keys AS {sql}")
        refused += _apply_rule(db, plan, run_id, types_, checked=True)
    return refused


def _merge_all_rules_at_once(db: Conn, plan: Plan) -> bool:
    """The usual case, in one pass: merge by every rule's keys together; done if no resulting cluster
    breaks a limit. Then rule order cannot matter: applied one by one, no rule would refuse a key (each
    step's clusters lie inside these), and the clusters and their labels (the smallest record number)
    come out the same. Otherwise False, with ``_comp`` untouched, and the rules run one by one."""
    if not _edges(db, plan):
        return True
    _limits_of_edges(db, plan)
    mapping = _components(db, plan)
    if _bad_clusters(db, plan, mapping, only_large=False):
        return False
    _relabel(db, plan, mapping)
    return True


def _edges(db: Conn, plan: Plan) -> int:
    """``_e(a, key)``: component labels joined by a key that more than one component holds."""
    db.x("""CREATE OR REPLACE TEMP TABLE _e AS
            SELECT a, key FROM (SELECT DISTINCT c.label AS a, k.key FROM _keys k JOIN _comp c USING (nid))
            QUALIFY count(*) OVER (PARTITION BY key) > 1""")
    return as_int(db.one("SELECT count(*) FROM _e"))


def _limits_of_edges(db: Conn, plan: Plan) -> None:
    """``_cl``: the limited values held by each component in ``_e``."""
    db.x("""CREATE OR REPLACE TEMP TABLE _cl AS
            SELECT DISTINCT c.label, l.lim_type, l.v, l.max_n FROM _lim l JOIN _comp c USING (nid)
            WHERE c.label IN (SELECT a FROM _e)""")


def _relabel(db: Conn, plan: Plan, mapping: str) -> None:
    db.x(f"""CREATE OR REPLACE TEMP TABLE _comp AS
             SELECT c.nid, coalesce(m.l, c.label) AS label FROM _comp c LEFT JOIN {mapping} m ON m.a = c.label""")


def _apply_rule(db: Conn, plan: Plan, run_id: str, types: list[str], checked: bool) -> int:
    if not _edges(db, plan):
        return 0
    refused = 0
    if checked:
        _limits_of_edges(db, plan)
    mapping = _components(db, plan)
    # The usual case: no merged cluster breaks a limit, so no key needs to be refused (limits only grow
    # with a cluster, so a key that breaks one alone also leaves its whole cluster broken).
    if checked and _bad_clusters(db, plan, mapping, only_large=False):
        # A key whose own merge would break a limit is refused.
        db.x("""CREATE OR REPLACE TEMP TABLE _refused AS
                SELECT key, min(lim_type) AS lim_type FROM (
                  SELECT e.key, cl.lim_type, cl.max_n, min(cl.v) AS lo, max(cl.v) AS hi,
                         count(DISTINCT cl.v) FILTER (WHERE cl.max_n > 1) AS n
                  FROM _e e JOIN _cl cl ON cl.label = e.a GROUP BY e.key, cl.lim_type, cl.max_n)
                WHERE CASE WHEN max_n = 1 THEN lo <> hi ELSE n > max_n END GROUP BY key""")
        refused += _record_refused(db, plan, run_id, types,
                                        "would give one person more than max_per_person values")
        db.x("DELETE FROM _e WHERE key IN (SELECT key FROM _refused)")
        mapping = _components(db, plan)
        # Keys that pass alone may still break a limit together: such clusters are not merged by this
        # rule. (A cluster of two components was checked whole by the per-key check: only 3+ can.)
        if _bad_clusters(db, plan, mapping, only_large=True):
            db.x(f"""CREATE OR REPLACE TEMP TABLE _refused AS
                     SELECT DISTINCT e.key, NULL::VARCHAR AS lim_type FROM _e e
                     JOIN {mapping} m ON m.a = e.a WHERE m.l IN (SELECT l FROM _bad)""")
            refused += _record_refused(db, plan, run_id, types, "would, with other values, give one person "
                                            "more than max_per_person values")
            db.x(f"DELETE FROM {mapping} WHERE l IN (SELECT l FROM _bad)")
    _relabel(db, plan, mapping)
    return refused


def _bad_clusters(db: Conn, plan: Plan, mapping: str, only_large: bool) -> int:
    """``_bad(l)``: the clusters of ``mapping`` whose records together break a limit; returns how many."""
    large = f"WHERE m.l IN (SELECT l FROM {mapping} GROUP BY l HAVING count(*) > 2)" if only_large else ""
    joined = f"{mapping} m JOIN _cl cl ON cl.label = m.a {large}{' AND' if large else ' WHERE'}"
    # one value allowed: two different ones (min <> max) break it; more allowed: count distinct values
    db.x(f"""CREATE OR REPLACE TEMP TABLE _bad AS
                  SELECT m.l FROM {joined} cl.max_n = 1 GROUP BY m.l, cl.lim_type HAVING min(cl.v) <> max(cl.v)
                  UNION
                  SELECT l FROM (SELECT DISTINCT m.l, cl.lim_type, cl.max_n, cl.v FROM {joined} cl.max_n > 1)
                  GROUP BY l, lim_type, max_n HAVING count(*) > max_n""")
    return as_int(db.one("SELECT count(*) FROM _bad"))


def _record_refused(db: Conn, plan: Plan, run_id: str, types: list[str], reason: str) -> int:
    n = as_int(db.one("SELECT count(*) FROM _refused"))
    if not n:
        return 0
    rule = "+".join(types)
    if len(types) == 1:
        shown = ("(SELECT i.vid, min(i.value) AS value FROM identity.identifiers i "
                 "SEMI JOIN _refused r ON r.key = i.vid GROUP BY i.vid)")
    else:
        shown = "(SELECT key AS vid, '(' || key::VARCHAR || ')' AS value FROM _refused)"
    db.x(f"""INSERT INTO identity.conflicts
                  SELECT {literal(run_id)}, {literal(rule)}, coalesce(r.lim_type, {literal(rule)}), s.value,
                         CASE WHEN r.lim_type LIKE 'unlink:%' THEN 'would join records kept apart by unlinks'
                              ELSE {literal(reason)} END, now()
                  FROM _refused r LEFT JOIN {shown} s ON s.vid = r.key""")
    return n


def _components(db: Conn, plan: Plan) -> str:
    """Connected components of the bipartite graph ``_e(a, key)``; returns the table ``_m(a, l)``: each
    component label ``a`` and the smallest label ``l`` it is connected to."""
    # min-label propagation with pointer jumping; in the first round every label is its own
    db.x("CREATE OR REPLACE TEMP TABLE _kl AS SELECT key, min(a) AS l FROM _e GROUP BY key")
    total = None
    for _ in range(200):
        db.x("CREATE OR REPLACE TEMP TABLE _m2 AS SELECT e.a, min(k.l) AS l FROM _e e JOIN _kl k USING (key) "
             "GROUP BY e.a")
        db.x("CREATE OR REPLACE TEMP TABLE _m AS SELECT m.a, least(m.l, coalesce(p.l, m.l)) AS l "
             "FROM _m2 m LEFT JOIN _m2 p ON p.a = m.l")
        # labels only ever go down, so an unchanged sum means that no label moved
        now = db.one("SELECT sum(l) FROM _m")
        if now == total:
            break
        total = now
        db.x("CREATE OR REPLACE TEMP TABLE _kl AS SELECT e.key, min(m.l) AS l FROM _e e JOIN _m m USING (a) "
             "GROUP BY e.key")
    return "_m"

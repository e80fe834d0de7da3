"""Stage 5: stable person ids. Each new cluster keeps the id of the earliest-seen person among the old people it
owns (an old person is owned by the cluster holding most of its records); merged-away ids are recorded with
``merged_into``. New clusters get ``p_`` + md5 of their first record's key."""

from __future__ import annotations

from .._sql import Conn, literal
from .plan import Plan


def assign_ids(db: Conn, plan: Plan, run_id: str) -> None:
    db.x("""CREATE OR REPLACE TEMP TABLE _cand AS
            SELECT c.label, g.person_id, count(*) AS n FROM _comp c JOIN identity.graph g USING (nid)
            GROUP BY c.label, g.person_id""")
    db.x("""CREATE OR REPLACE TEMP TABLE _owner AS
            SELECT * FROM _cand QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, label) = 1""")
    db.x("""CREATE OR REPLACE TEMP TABLE _pick AS
            SELECT o.label, o.person_id FROM _owner o LEFT JOIN identity.persons p USING (person_id)
            QUALIFY row_number() OVER (PARTITION BY o.label ORDER BY p.first_seen_at NULLS LAST, o.n DESC,
                                       o.person_id) = 1""")
    db.x(f"""CREATE OR REPLACE TEMP TABLE _fresh AS
             SELECT l.label, CASE WHEN p.person_id IS NULL THEN l.pid
                                  ELSE 'p_' || substr(md5(l.node || ':' || {literal(run_id)}), 1, 16) END
                    AS person_id
             FROM (SELECT label, node, 'p_' || substr(md5(node), 1, 16) AS pid
                   FROM (SELECT c.label, min(r.node) AS node FROM _comp c JOIN identity.records r USING (nid)
                         WHERE c.label NOT IN (SELECT label FROM _pick) GROUP BY c.label)) l
             LEFT JOIN identity.persons p ON p.person_id = l.pid""")
    db.x("""CREATE OR REPLACE TEMP TABLE _assign AS
            SELECT c.nid, c.label, coalesce(p.person_id, f.person_id) AS person_id FROM _comp c
            LEFT JOIN _pick p USING (label) LEFT JOIN _fresh f USING (label)""")
    # Old people of this scope that no cluster kept: merged into the owner's pick, or gone.
    db.x("""CREATE OR REPLACE TEMP TABLE _retired AS
            SELECT old.person_id, k.person_id AS merged_into FROM
              (SELECT DISTINCT person_id FROM identity.graph WHERE nid IN (SELECT nid FROM _scope)
               OR nid IN (SELECT nid FROM _deleted)) old
            LEFT JOIN _owner o ON o.person_id = old.person_id
            LEFT JOIN _pick k ON k.label = o.label
            WHERE old.person_id NOT IN (SELECT person_id FROM _pick)""")
    db.x("UPDATE identity.persons SET merged_into = r.merged_into, retired_at = now() FROM _retired r "
         "WHERE identity.persons.person_id = r.person_id")
    db.x("INSERT INTO identity.persons SELECT person_id, now(), NULL, NULL FROM _fresh")
    db.x("DELETE FROM identity.graph WHERE nid IN (SELECT nid FROM _scope UNION ALL SELECT nid FROM _deleted)")
    db.x("""INSERT INTO identity.graph SELECT r.system, r.record_id, a.person_id, a.nid, now()
            FROM _assign a JOIN identity.records r USING (nid)""")

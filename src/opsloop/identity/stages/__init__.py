"""The stages of one identity build, each a function over warehouse tables. ``resolve.Resolver.build`` runs
them in order, in one transaction (``_x`` tables are the build's temp tables):

1. ``staging.stage``, ``staging.diff``: reads the sources and ``identity.records``; writes ``_stage_rec``,
   ``_changed``, ``_deleted``, ``_new_records`` (and ``Plan.selects``, ``Plan.systems``).
2. ``normalizing.normalize_changed``: reads ``_new_records`` and ``identity.normalized_values``; writes
   ``_src_<n>``, ``_raw_fields``, ``_blocked``, ``_map_<n>``, ``_norm_ids`` (on a first build straight into
   ``identity.identifiers``) and new cache rows in ``identity.normalized_values``.
3. ``scoping.incremental_scope``, ``scoping.write_records``: read the above and ``identity.identifiers``,
   ``identity.graph``; write ``_scope`` and the changed rows of ``identity.records``, ``identity.identifiers``
   and ``identity.field_values``.
4. ``merging.merge``: reads ``_scope``, ``identity.identifiers``, ``identity.records``; writes
   ``_comp(nid, label)`` and ``identity.conflicts``.
5. ``ids.assign_ids``: reads ``_comp``, ``identity.graph``, ``identity.persons``; writes ``_assign``,
   ``_retired``, ``identity.persons``, ``identity.graph``.
6. ``golden.build_golden``: reads ``_assign``, ``_retired``, ``identity.field_values``; writes
   ``identity.golden_records`` and ``identity.outbox``.

Every stage gets the build's connection (``Conn``, which translates the SQL for the warehouse's engine,
``identity/_engine.py``) and its ``Plan`` (the configuration and the staged sources' column layout).
"""

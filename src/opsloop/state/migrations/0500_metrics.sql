-- Metrics: where each model the semantic models read was last built, and each alert's current state.
CREATE TABLE metric_relations (
    model TEXT PRIMARY KEY,
    relation TEXT NOT NULL,
    built_at ${float} NOT NULL
);
CREATE TABLE metric_alerts (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    value ${float},
    period TEXT,
    message TEXT,
    changed_at ${float} NOT NULL,
    evaluated_at ${float} NOT NULL
);

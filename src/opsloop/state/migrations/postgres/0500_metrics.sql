-- Metrics: where each model the semantic models read was last built, and each alert's current state.
CREATE TABLE metric_relations (
    model TEXT PRIMARY KEY,
    relation TEXT NOT NULL,
    built_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE metric_alerts (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    value DOUBLE PRECISION,
    period TEXT,
    message TEXT,
    changed_at DOUBLE PRECISION NOT NULL,
    evaluated_at DOUBLE PRECISION NOT NULL
);

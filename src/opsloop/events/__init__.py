"""The webhook inbox and the event log: endpoints, signatures, schemas, group commit, consumers."""

-- The events list filtered by status or endpoint, newest first (ORDER BY seq DESC LIMIT 51): without these
-- the store read every matching row and sorted them (2.7 s and 8.7 s on 1M events, bench/pages.py);
-- with them it reads 51 rows (under 1 ms).
CREATE INDEX events_status_seq ON events (status, seq);
CREATE INDEX events_endpoint_seq ON events (endpoint, seq);

-- Earlier versions of outbox items updated in place (a Slack chat.update): the page shows a message's
-- history as the destination would (an "edited" message and what it said before).
CREATE TABLE outbox_versions (
    item_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    updated_at ${float} NOT NULL,
    PRIMARY KEY (item_id, version)
);

"""Slack mrkdwn and blocks to HTML (escaped first), and the outbox's kept versions, without a browser."""

from __future__ import annotations

from pathlib import Path

from opsloop import outbox
from opsloop.state import open_store
from opsloop.web.pages_outbox import mrkdwn, slack_html


def test_mrkdwn_styles_links_and_escapes() -> None:
    html = str(mrkdwn(":white_check_mark: *Ada* _claimed_ ~old~ `x & y` <https://e.io/?a=1&b=2|the site> "
                      "<ada@example.com> <@U01|ada> <img src=x onerror=alert(1)> <javascript:alert(1)|click>\n"
                      "> quoted\n```a <b> c```"))
    assert html.startswith("\u2705 <strong>Ada</strong> <em>claimed</em> <del>old</del> <code>x &amp; y</code>")
    assert '<a href="https://e.io/?a=1&amp;b=2" rel="noopener noreferrer">the site</a>' in html
    assert "&lt;ada@example.com&gt;" in html and '<span class="mention">@ada</span>' in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:" not in html.replace("&lt;javascript:alert(1)|click&gt;", "")  # never a link
    assert "<blockquote>quoted</blockquote>" in html and "<pre>a &lt;b&gt; c</pre>" in html


def test_blocks_draw_sections_fields_context_and_buttons() -> None:
    html = str(slack_html({"text": "fallback", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "New *lead*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Ada* wants a demo"},
         "fields": [{"type": "mrkdwn", "text": "*Plan*\npro"}]},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "via _webhook_"}]},
        {"type": "actions", "elements": [{"type": "button", "style": "primary", "action_id": "opsloop_claim",
                                          "text": {"type": "plain_text", "text": "Claim <now>"}}]},
        {"type": "rich_text"},
    ]}))
    assert "fallback" not in html  # Slack shows the blocks, not the notification text
    assert '<div class="block header">New *lead*</div>' in html  # plain_text is not mrkdwn
    assert "<strong>Ada</strong> wants a demo" in html
    assert '<div class="field"><strong>Plan</strong><br>pro</div>' in html
    assert '<hr class="block divider">' in html and "via <em>webhook</em>" in html
    assert '<span class="slack-button primary" data-action="opsloop_claim">Claim &lt;now&gt;</span>' in html
    assert "[rich_text block]" in html
    assert str(slack_html({"text": "*hi*", "blocks": None})).count("<strong>hi</strong>") == 1


def test_updates_keep_earlier_versions_and_pages_go_back_in_time(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        first = outbox.record(store, "slack", "chat.postMessage", {"text": "posted"}, target="#sales")
        outbox.update(store, first, {"text": "breached"}, action="chat.update")
        outbox.update(store, first, {"text": "claimed"})
        other = outbox.record(store, "email", "send", {"subject": "hi"})
        item = outbox.get(store, first)
        assert item is not None and item.version == 3 and item.payload == {"text": "claimed"}
        kept = outbox.versions(store, [first, other])
        assert [(v.version, v.action, v.payload) for v in kept[first]] == [
            (1, "chat.postMessage", {"text": "posted"}), (2, "chat.update", {"text": "breached"})]
        assert other not in kept
        newest = outbox.list_items(store, limit=1)
        assert [i.id for i in newest] == [other]
        assert [i.id for i in outbox.list_items(store, before=newest[0].updated_at)] == [first]
        assert outbox.destinations(store) == ["email", "slack"]
    finally:
        store.close()

"""Outbound channels: one configuration and one implementation each for Slack, SMTP and HTTP.

Workflow steps (``slack.post``, ``email.send``, ``http.request``), destinations (``slack``, ``email``,
``webhook``, ``hubspot``, ``zendesk``, ``salesforce``), metric alerts and sync alerts all reach the outside
world through these. Settings come from ``channels:`` in ``opsloop.yml``, then environment variables
(docs/project.md, "Outbound channels")::

    from opsloop.channels import channels_of, http, smtp
    ch = channels_of(project)
    with http.client(ch.http, base_url="https://api.example.com") as client: ...
    smtp.send(ch.smtp, message)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from . import http, smtp
    from ._settings import (
        ChannelConfigError,
        Channels,
        HttpSettings,
        Security,
        SlackSettings,
        SmtpSettings,
        ca_path,
        channels_of,
        resolve_channels,
        with_overrides,
    )
    from .slack import SlackClient, SlackRefused

# imported on first use: importing one module of the package (its project_files for `opsloop validate`)
# must not load the rest
__getattr__ = lazy_exports(__name__, {
    "ChannelConfigError": "._settings",
    "Channels": "._settings",
    "HttpSettings": "._settings",
    "Security": "._settings",
    "SlackClient": ".slack",
    "SlackRefused": ".slack",
    "SlackSettings": "._settings",
    "SmtpSettings": "._settings",
    "ca_path": "._settings",
    "channels_of": "._settings",
    "http": ".http",
    "resolve_channels": "._settings",
    "smtp": ".smtp",
    "with_overrides": "._settings",
})

__all__ = [
    "ChannelConfigError",
    "Channels",
    "HttpSettings",
    "Security",
    "SlackClient",
    "SlackRefused",
    "SlackSettings",
    "SmtpSettings",
    "ca_path",
    "channels_of",
    "http",
    "resolve_channels",
    "smtp",
    "with_overrides",
]

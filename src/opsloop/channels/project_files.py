"""``opsloop validate`` resolves the outbound channels once, so a value that cannot work (``SMTP_PORT=abc``,
a ``ca_file`` that does not exist) is reported against ``opsloop.yml`` before anything tries to send."""

from __future__ import annotations

from ..errors import Problem
from ..project.loader import Project, ProjectLoader
from ..project.yaml_files import YamlProblem, load_yaml
from ._settings import ChannelConfigError, channels_of


def check_channels(project: Project) -> list[Problem]:
    try:
        channels_of(project)
    except ChannelConfigError as exc:
        line = None
        path = project.root / "opsloop.yml"
        if path.is_file():
            try:
                line = load_yaml(path, project.root).line_of(("channels", exc.channel))
            except YamlProblem:
                line = None
        return [Problem("opsloop.yml", line, f"channels.{exc.channel}: {exc}",
                        "see docs/project.md, \"Outbound channels\"")]
    return []


LOADER = ProjectLoader("channels", validate=check_channels)
"""What the composition root (``opsloop._subsystems``) lists to load and check this subsystem's files."""

"""A third-party destination found through the ``opsloop.destinations`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from opsloop.destinations import get_destination, known_types

from .conftest import SyncProject, people

PLUGIN = '''
from opsloop.destinations import Destination, DestinationConfig, RowResult

SENT = []


class MyCRMConfig(DestinationConfig):
    region: str = "eu"


class MyCRM(Destination):
    type = "mycrm"
    Config = MyCRMConfig
    IDEMPOTENT = True

    def send(self, batch):
        SENT.extend((row.key, self.config.region, row.fields) for row in batch)
        return [RowResult(row.key, True, dest_id="m-" + row.key, created=True) for row in batch]
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    (site / "mycrm_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "mycrm_plugin.py").write_text(PLUGIN)
    (site / "mycrm_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mycrm-plugin\n"
                                                                   "Version: 0.1\n")
    (site / "mycrm_plugin-0.1.dist-info" / "entry_points.txt").write_text(textwrap.dedent("""
        [opsloop.destinations]
        mycrm = mycrm_plugin:MyCRM
    """))
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("mycrm_plugin", None)


def test_entry_point_destination_runs_a_sync(sp: SyncProject, installed_plugin: Path) -> None:
    assert "mycrm" in known_types()
    assert get_destination("mycrm").__name__ == "MyCRM"
    sp.customers(people(2))
    sp.write_sync("c", "table: customers\nkey: email\ndestination: {type: mycrm, region: us}\nmapping: {p: phone}\n")
    assert sp.run("c").sent == 2
    import mycrm_plugin  # type: ignore[import-not-found]

    assert mycrm_plugin.SENT == [("user1@example.com", "us", {"p": "+15550000001"}),
                                 ("user2@example.com", "us", {"p": "+15550000002"})]
    assert sp.state("c")["user1@example.com"]["dest_id"] == "m-user1@example.com"

"""The example company's ``time_to_buy`` model: hours from the first demo request to the purchase, exact
(not cut to whole seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.conftest import run_cli
from tests.models.conftest import RAW_DDL


def test_hours_to_buy_keeps_the_fraction_of_a_second(tmp_path: Path) -> None:
    root = tmp_path / "co"
    assert run_cli("init", str(root), "--example", "saas").returncode == 0
    demo = {"email": "ada@acme.example", "name": "Ada Lovelace", "company": "Acme",
            "requested_at": "2026-03-02T10:00:00.750+00:00"}
    purchase = {"created": 1772452800,  # 2026-03-02T12:00:00Z: Stripe's whole-second unix time
                "data": {"object": {"id": "sub_1", "customer": "cus_1",
                                    "metadata": {"email": "ada@acme.example", "company": "Acme"}}}}
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    try:
        con.execute("CREATE SCHEMA raw")
        con.execute(RAW_DDL)
        con.executemany("INSERT INTO raw.events VALUES (?, ?, ?, ?, ?, NULL, 'webhook', ?)", [
            ("evt_1", 1, "demo_request", "demo_request.created", "2026-03-02T10:00:01Z", json.dumps(demo)),
            ("evt_2", 2, "stripe", "stripe.customer.subscription.created", "2026-03-02T12:00:01Z",
             json.dumps(purchase)),
        ])
    finally:
        con.close()
    built = run_cli("build", "--select", "+time_to_buy", "--project", str(root))
    assert built.returncode == 0, built.stdout + built.stderr
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        (hours,), = con.execute("SELECT hours_to_buy FROM main.time_to_buy").fetchall()
    finally:
        con.close()
    # 1 h 59 min 59.25 s; counting whole-second boundaries said exactly 2.0
    assert abs(hours - 7199.25 / 3600) < 1e-9, hours

"""When a customer buys (Stripe `customer.subscription.created`): tell #sales how long they took from their
first demo request, and where that stands among all buyers (the `time_to_buy` model, rebuilt as the
purchase lands)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opsloop import Context, workflow
from opsloop.errors import WarehouseError

QUERY = """
select name, company, hours_to_buy, percentile_among_buyers, median_hours_to_buy
from time_to_buy where email = ?
"""


async def time_to_buy(ctx: Context, email: str, wait_seconds: float = 120.0) -> dict[str, Any] | None:
    """The buyer's row in `time_to_buy`, waiting for the rebuild that includes this purchase."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            result = await asyncio.to_thread(ctx.app.warehouse.query, QUERY, [email])
            rows = result.as_dicts()
        except WarehouseError as exc:
            if "does not exist" not in str(exc):
                raise  # a broken query: the step fails and says why
            rows = []  # the model is not built yet
        if rows:
            return rows[0]
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.25)


def _duration(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"


@workflow(on="stripe.customer.subscription.created", retries=3)
async def purchase(ctx: Context) -> dict[str, Any] | None:
    obj = ctx.event["data"]["data"]["object"]
    email = str((obj.get("metadata") or {}).get("email") or "").strip().lower()
    row = await ctx.step("time_to_buy", time_to_buy, ctx, email)
    if row is None:
        text = f":tada: New customer {email} (no demo request on record)"
    else:
        pct = float(row["percentile_among_buyers"])
        text = (f":tada: {row['name']} ({row['company']}) bought {_duration(float(row['hours_to_buy']))} after "
                f"their demo request: percentile {pct:.0f} among buyers (0 = fastest; median "
                f"{_duration(float(row['median_hours_to_buy']))})")
    await ctx.action("slack.post", step="announce", channel="#sales", text=text)
    return row

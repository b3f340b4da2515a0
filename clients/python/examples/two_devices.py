"""Two devices of one shopper: the laptop follows live while the phone changes the cart.

    python examples/two_devices.py http://127.0.0.1:8000 "$TOKEN"
    CARTSYNC_URL=http://127.0.0.1:8000 CARTSYNC_TOKEN=... python examples/two_devices.py

Without a token the example asks the service for a guest token, and both devices share that
guest's cart. It prints each change as the laptop receives it, then checks that the laptop's
copy equals ``GET /v1/cart`` as both devices see it, and exits 0 when they all agree.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from cartsync_client import (
    CartMirror,
    CartsyncClient,
    Event,
    Subscription,
    Update,
    guest_token,
)

WAIT_S = 30.0


def describe(update: Update) -> str:
    """One line a person can read for each update the laptop receives."""
    if not isinstance(update, Event):
        return f"snapshot at rev {update.rev}: {len(update.cart.lines)} line(s)"
    who = update.actor.device or update.actor.role
    data = update.data
    if "line" in data:
        line = data["line"]
        detail = f"{line['sku']} x {line['qty']}"
    elif "note" in data:
        detail = repr(data["note"])
    elif "item" in data:
        detail = f"{data['item']['sku']} on {data.get('wishlist_id', 'a wishlist')}"
    else:
        detail = ", ".join(f"{k}={v}" for k, v in data.items() if isinstance(v, str))
    return f"rev {update.rev} {update.type} by {who}: {detail}"


async def watch(live: Subscription, mirror: CartMirror, changed: asyncio.Event) -> None:
    """The laptop: apply and print every update, as it arrives."""
    async for update in live:
        mirror.apply(update)
        print(f"  laptop <- {describe(update)}", flush=True)
        changed.set()


async def run(url: str, token: str) -> bool:
    async with (
        CartsyncClient(url, token, device_id="phone") as phone,
        CartsyncClient(url, token, device_id="laptop") as laptop,
        laptop.subscribe() as live,
    ):
        mirror = CartMirror()
        changed = asyncio.Event()
        watcher = asyncio.create_task(watch(live, mirror, changed))
        try:
            async with asyncio.timeout(WAIT_S):
                await changed.wait()  # the laptop has its snapshot: it sees what comes next
            print("phone: adding a T-shirt and two mugs", flush=True)
            tee = (await phone.add_line("TSHIRT-1", qty=1, attrs={"size": "M"})).line
            mug = (await phone.add_line("MUG-1", qty=2, title="Mug", unit_price="8.50")).line
            print("phone: three T-shirts, in L", flush=True)
            await phone.patch_line(tee.id, qty=3, attrs={"size": "L"})
            print("phone: a note for the courier", flush=True)
            await phone.set_note("leave with the neighbour")
            print("phone: a cap on the wishlist, then into the cart", flush=True)
            cap = (await phone.add_item("default", "CAP-1", title="Cap")).item
            await phone.move_to_cart("default", cap.id)
            print("phone: no mugs after all", flush=True)
            await phone.remove_line(mug.id)

            target = (await phone.get_cart()).rev
            async with asyncio.timeout(WAIT_S):
                while mirror.rev < target:
                    changed.clear()
                    await changed.wait()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        seen_by_phone = await phone.get_cart()
        seen_by_laptop = await laptop.get_cart()
    agree = mirror.agrees_with(seen_by_phone) and mirror.agrees_with(seen_by_laptop)
    lines = ", ".join(f"{x.sku} x {x.qty}" for x in mirror.lines)
    verdict = "in sync" if agree else "OUT OF SYNC"
    print(f"{verdict} at rev {mirror.rev}: {lines}; note {mirror.note!r}", flush=True)
    return agree


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url", nargs="?", default=os.environ.get("CARTSYNC_URL"))
    parser.add_argument("token", nargs="?", default=os.environ.get("CARTSYNC_TOKEN"))
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give the service URL as an argument or in CARTSYNC_URL")
    token = args.token
    if not token:
        guest = await guest_token(args.url)
        print(f"no token given: using a new guest, {guest.guest_id}", flush=True)
        token = guest.token
    return 0 if await run(args.url, token) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

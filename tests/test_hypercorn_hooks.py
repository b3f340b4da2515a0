"""The hooks into Hypercorn's websocket handshake apply to the Hypercorn installed, and do
what they promise on a real socket: compression declined by default, bounded when on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from cartsync.web import hypercorn_hooks
from tests.conftest import Tokens
from tests.support.processes import RedisProcess, ServiceProcess
from tests.test_live import add_lines, bearer, dial, live, next_frame, rest, running


def test_the_hooks_fit_the_installed_hypercorn() -> None:
    """Fails when a Hypercorn upgrade stops building wsproto's classes by the names we hook."""
    from hypercorn.protocol import ws_stream

    hypercorn_hooks.install("on")
    assert ws_stream.PerMessageDeflate is hypercorn_hooks.BoundedDeflate  # type: ignore[attr-defined]
    hypercorn_hooks.install("off")
    assert ws_stream.PerMessageDeflate is hypercorn_hooks.DeclinedDeflate  # type: ignore[attr-defined]
    assert hypercorn_hooks.installed()
    from hypercorn.asyncio.tcp_server import TCPServer

    assert TCPServer._close.__name__ == "_lingering_close"
    from hypercorn.protocol import h11

    # HTTP/1.1 websockets are built as the stream that offers ``write_frame`` (whose use on a
    # real socket tests/test_live_frames.py checks through its metric).
    assert h11.WSStream is hypercorn_hooks.FramingStream  # type: ignore[attr-defined]
    # The handshake still builds its extension list from that name.
    handshake = ws_stream.Handshake(
        [
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
            (b"connection", b"upgrade"),
            (b"upgrade", b"websocket"),
        ],
        "1.1",
    )
    _, headers, _ = handshake.accept(None, [])
    assert b"sec-websocket-extensions" not in dict(headers)


def extensions_of(ws: object) -> str | None:
    response = ws.response  # type: ignore[attr-defined]
    value: str | None = response.headers.get("Sec-WebSocket-Extensions")
    return value


async def test_compression_is_declined_by_default(
    service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with dial(service, subprotocols=bearer(token)) as ws:  # offers deflate, as browsers do
        assert extensions_of(ws) is None
        assert (await next_frame(ws))["type"] == "hello"


@pytest.fixture(scope="module")
def compressing(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with running(
        redis_server.url, tmp_path_factory.mktemp("deflate"), CARTSYNC_WS_COMPRESSION="on"
    ) as svc:
        yield svc


async def test_compression_on_is_bounded_and_carries_a_large_snapshot_intact(
    compressing: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    async with rest(compressing, token) as http:
        skus = [f"SKU-{n:04d}" for n in range(150)]
        await add_lines(http, skus)
    # The default offer of the websockets library, like a browser's: client_max_window_bits.
    async with live(compressing, token) as sock:
        negotiated = extensions_of(sock.ws) or ""
        assert negotiated.startswith("permessage-deflate")
        for param in (
            "server_no_context_takeover",
            "client_no_context_takeover",
            f"server_max_window_bits={hypercorn_hooks.WINDOW_BITS}",
            f"client_max_window_bits={hypercorn_hooks.WINDOW_BITS}",
        ):
            assert param in negotiated
        await sock.sync()
        snapshot = await sock.frame()
        assert snapshot["type"] == "snapshot"
        assert [line["sku"] for line in snapshot["cart"]["lines"]] == skus
        # Frames from the client are inflated too (a ping is a compressed text frame).
        await sock.send({"type": "ping"})
        assert await sock.frame() == {"type": "pong"}


@pytest.mark.parametrize(
    ("offer", "accepted"),
    [
        ({"client_max_window_bits": None}, True),  # no client window: we keep 15 bits inbound
        ({"server_max_window_bits": 9}, True),  # the client asks for less than ours
        ({"client_no_context_takeover": True}, True),
    ],
)
async def test_other_deflate_offers_are_answered_within_the_bounds(
    compressing: ServiceProcess,
    tokens: Tokens,
    customer_id: str,
    offer: dict[str, object],
    accepted: bool,
) -> None:
    token = tokens.token("customer", customer_id)
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=False,
        client_no_context_takeover=bool(offer.get("client_no_context_takeover", False)),
        server_max_window_bits=offer.get("server_max_window_bits"),  # type: ignore[arg-type]
        client_max_window_bits=offer.get("client_max_window_bits", True),  # type: ignore[arg-type]
    )
    async with dial(compressing, subprotocols=bearer(token), extensions=[factory]) as ws:
        negotiated = extensions_of(ws) or ""
        assert negotiated.startswith("permessage-deflate") is accepted
        if "server_max_window_bits" in offer:
            assert "server_max_window_bits=9" in negotiated
        assert (await next_frame(ws))["type"] == "hello"


async def test_an_offer_the_rfc_calls_invalid_is_declined_and_the_socket_still_works(
    compressing: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    token = tokens.token("customer", customer_id)
    # A window of 7 bits does not exist (RFC 7692: 8-15); websockets will not offer it, so
    # send the header the way a broken client would.
    headers = {"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=7"}
    async with dial(
        compressing, subprotocols=bearer(token), compression=None, additional_headers=headers
    ) as ws:
        assert extensions_of(ws) is None
        assert (await next_frame(ws))["type"] == "hello"

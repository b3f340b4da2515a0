"""Coverage-guided fuzzing (atheris) of every decoder at the edge.

The property: whatever bytes or text arrive (a REST body of any command, a websocket frame, a
header, a query or path parameter, a token's claims), the decoder returns a clean value or
raises a ``CartsyncError``, which the edge turns into a 4xx or a close code. Any other
exception would be a 500 or a 1011.

atheris takes over the process it runs in, so each target runs as ``python <this file>
<target> <libFuzzer flags>`` in a subprocess, for ``CARTSYNC_FUZZ_SECONDS`` (default 5) per
target, from a corpus seeded with valid examples. Each test prints its executions.
A longer run of one target by hand::

    PYTHONPATH=service:. .venv/bin/python tests/reliability/test_fuzz_decoders.py frames \\
        -max_total_time=600 /tmp/frames-corpus
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("CARTSYNC_FUZZ_SECONDS", "5"))
SECRET = "fuzz-kid:" + "f" * 40
DONE = re.compile(r"Done (\d+) runs in (\d+) second")

# Seeds: valid examples of each input, and a few near misses ---------------------------------

BODY_SEEDS: dict[str, list[Any]] = {
    "AddLine": [
        {"sku": "TSHIRT-1", "qty": 2, "attrs": {"size": "M"}},
        {"sku": "A", "title": "Shirt", "unit_price": "19.90"},
    ],
    "PatchLine": [{"qty": 0}, {"qty": 3, "attrs": {"colour": "red"}}],
    "SetNote": [{"note": "leave at the door"}],
    "MergeCarts": [{"guest_token": "eyJ.a.b", "strategy": "max"}],
    "CreateWishlist": [{"name": "Gifts"}],
    "PatchWishlist": [{"name": "Books"}],
    "AddWishItem": [{"sku": "B-2", "attrs": {}, "note": "for later", "title": "Book"}],
    "MoveToCart": [{"qty": 1}],
    "SetCollection": [{"ready": True}],
}
FRAME_SEEDS: list[Any] = [
    {"type": "auth", "token": "eyJ.a.b"},
    {"type": "sync", "since": 12, "epoch": "abc", "at": "2026-01-01T00:00:00.000Z"},
    {"type": "sync"},
    {"type": "ping"},
    {"type": "pong"},
    {
        "type": "op",
        "id": "op-1",
        "name": "add_line",
        "body": {"sku": "A", "qty": 2},
        "if_match": 3,
    },
    {"type": "op", "id": "op-2", "name": "patch_line", "params": {"line_id": "L1"}, "body": {}},
]
HEADER_SEEDS = [
    '"12"',
    'W/"7"',
    "*",
    "Bearer eyJ.a.b",
    "key-0001",
    "phone-1",
    '"9007199254740991"',
]
PARAM_SEEDS = ["0", "1000", "9007199254740991", "12345678", "cust-1", "c:alice"]
CLAIM_SEEDS: list[Any] = [
    {"sub": "alice", "role": "customer", "aud": "cartsync", "iss": "cartsync", "exp": 4e9},
    {
        "sub": "bob",
        "role": "staff",
        "store": "s1",
        "aud": "cartsync",
        "iss": "cartsync",
        "exp": 4e9,
    },
]
TOKENS = [
    b'"sku"', b'"qty"', b'"attrs"', b'"type"', b'"op"', b'"sync"', b'"since"', b'"body"',
    b'"if_match"', b'"name"', b'"params"', b'"note"', b'"role"', b'"exp"', b'"sub"', b"null",
    b"true", b"[", b"]", b"{", b"}", b":", b",", b"\\u0000", b"\\ud800", b"\xff", b"\xc3",
    b"9007199254740992", b"1e999", b"-0", b"W/", b"Bearer ",
]  # fmt: skip


def seeds(target: str) -> list[bytes]:
    def as_json(values: list[Any]) -> list[bytes]:
        return [json.dumps(v).encode() for v in values]

    if target == "bodies":
        names = sorted(BODY_SEEDS)
        return [
            bytes([names.index(name)]) + raw for name in names for raw in as_json(BODY_SEEDS[name])
        ]
    if target == "frames":
        return [bytes([kind]) + raw for raw in as_json(FRAME_SEEDS) for kind in (0, 1)]
    if target == "headers":
        return [bytes([n]) + s.encode() for n in range(5) for s in HEADER_SEEDS]
    if target == "params":
        return [bytes([n]) + s.encode() for n in range(4) for s in PARAM_SEEDS]
    return as_json(CLAIM_SEEDS)


# The harness: runs in the child process ---------------------------------------------------


def harness(target: str) -> Callable[[bytes], None]:
    """The one-input function of ``target``; imports are instrumented for coverage."""
    import atheris

    with atheris.instrument_imports(include=["cartsync"]):
        import msgspec

        from cartsync import wire
        from cartsync.auth.tokens import TokenKeys, TokenVerifier
        from cartsync.domain.principal import Principal, Role, customer_data, device_id
        from cartsync.errors import CartsyncError, InvalidInput, Unauthenticated
        from cartsync.settings import Settings
        from cartsync.web import inputs
        from cartsync.web.commands import COMMANDS, fingerprint

    decode_codes = {"malformed_json", "invalid_field", "duplicate_key", "too_deep"}
    body_types = {t.__name__: t for t in wire.REQUEST_TYPES}
    names = sorted(BODY_SEEDS)
    assert set(names) == set(body_types), "a request type has no seed: add it to BODY_SEEDS"
    frames = msgspec.json.Decoder(wire.ClientFrame)
    decoders = {t: msgspec.json.Decoder(t) for t in wire.REQUEST_TYPES}
    by_name = {c.name: c for c in COMMANDS}

    def refused(exc: CartsyncError, codes: set[str]) -> None:
        """A refusal must carry one of the codes the edge maps (400/422, 1007/1008)."""
        if exc.code not in codes or (exc.code == "duplicate_key" and exc.field is None):
            raise AssertionError(f"unexpected refusal {exc.code!r} {exc.field!r}") from exc

    def decode(raw: bytes | str, decoder: msgspec.json.Decoder[Any]) -> Any:
        try:
            return inputs.decode_strict(raw, decoder)
        except InvalidInput as exc:
            refused(exc, decode_codes)
            return None

    def check_round_trip(value: Any, decoder: msgspec.json.Decoder[Any]) -> None:
        """A value that passed is one the edge would send on: it re-encodes to itself."""
        assert decoder.decode(msgspec.json.encode(value)) == value

    def build(command: Any, body: Any, params: dict[str, str]) -> None:
        """What the REST and websocket paths do with a decoded body before Redis."""
        if all(p in params for p in command.params):
            given = {p: params[p] for p in command.params}
            try:
                command.build(body, given)
            except CartsyncError:
                return
            fingerprint(command.method, command.path, given, body)

    def bodies(data: bytes) -> None:
        if not data:
            return
        body_type = body_types[names[data[0] % len(names)]]
        try:
            value = inputs.decode_body(data[1:], "application/json", body_type)
        except InvalidInput as exc:
            refused(exc, decode_codes)
            return
        check_round_trip(value, decoders[body_type])
        for command in COMMANDS:
            if command.body is body_type:
                build(command, value, {"line_id": "L1", "wishlist_id": "w1", "item_id": "i1"})

    def client_frames(data: bytes) -> None:
        if not data:
            return
        raw: bytes | str = data[1:]
        if data[0] % 2:  # a text frame, as Starlette hands it over
            raw = data[1:].decode("utf-8", "replace")
        frame = decode(raw, frames)
        if frame is None:
            return
        check_round_trip(frame, frames)
        if isinstance(frame, wire.OpFrame) and frame.name in by_name:
            command = by_name[frame.name]
            body = None
            if command.body is not None:
                body = decode(bytes(frame.body), decoders[command.body])
                if body is None:
                    return
            build(command, body, dict(frame.params))

    settings = Settings.from_env(
        {"CARTSYNC_JWT_SECRETS": SECRET, "CARTSYNC_DATA_DIR": "/nonexistent"}
    )
    verifier = TokenVerifier(TokenKeys.from_settings(settings), settings)
    loop = asyncio.new_event_loop()

    def verify(token: str) -> Any:
        principal = verifier.verify(token)
        if inspect.isawaitable(principal):  # verify is a coroutine where keys may be fetched
            principal = loop.run_until_complete(principal)
        return principal

    def headers(data: bytes) -> None:
        if not data:
            return
        fdp = atheris.FuzzedDataProvider(data[1:])
        value = fdp.ConsumeUnicode(fdp.remaining_bytes())
        kind = data[0] % 5
        try:
            if kind == 0:
                rev = inputs.parse_if_match(value)
                assert rev is None or 0 <= rev <= wire.MAX_REVISION
            elif kind == 1:
                key = inputs.parse_idempotency_key(value)
                assert key is None or (0 < len(key) <= 255 and key.isascii())
            elif kind == 2:
                token = inputs.parse_bearer(value)
                assert token
                assert token == token.strip()
                verify(token)
            elif kind == 3:
                device_id(value)
            else:
                inputs.parse_bearer(value)
        except InvalidInput as exc:
            refused(exc, {"bad_header"})
        except Unauthenticated:
            pass

    service = Principal(Role.SERVICE, "shop")

    def params(data: bytes) -> None:
        if not data:
            return
        fdp = atheris.FuzzedDataProvider(data[1:])
        value = fdp.ConsumeUnicode(fdp.remaining_bytes())
        kind = data[0] % 4
        try:
            if kind in (0, 1):
                name = "since" if kind == 0 else "limit"
                n = inputs.query_int(value, name, 0)
                assert 0 <= n <= wire.MAX_REVISION
                assert value.isascii()
            elif kind == 2:
                assert "{" not in customer_data(service, value).id
            else:
                inputs.parse_idempotency_key(value)
        except InvalidInput:
            pass

    import jwt

    secret = SECRET.partition(":")[2].encode()

    def tokens(data: bytes) -> None:
        """Claims signed with a real key: the checks behind the signature."""
        try:
            claims = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(claims, dict):
            return
        try:
            token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "fuzz-kid"})
        except (TypeError, ValueError, OverflowError):
            return  # PyJWT cannot sign these claims: no token to verify
        try:
            principal = verify(token)
        except Unauthenticated:
            return
        assert principal.subject == claims["sub"]

    return {
        "bodies": bodies,
        "frames": client_frames,
        "headers": headers,
        "params": params,
        "tokens": tokens,
    }[target]


def main() -> None:
    import atheris

    target = sys.argv.pop(1)
    atheris.Setup(sys.argv, harness(target))
    atheris.Fuzz()


# The tests ----------------------------------------------------------------------------------

TARGETS = ["bodies", "frames", "headers", "params", "tokens"]


@pytest.mark.parametrize("target", TARGETS)
def test_decoders_raise_only_cartsync_errors(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, seed in enumerate(seeds(target)):
        (corpus / f"seed-{n}").write_bytes(seed)
    words = tmp_path / "json.dict"
    words.write_text("".join(f'"{_escape(t)}"\n' for t in TOKENS))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'service'}{os.pathsep}{ROOT}"}
    env = {k: v for k, v in env.items() if not k.startswith("CARTSYNC_")}
    run = subprocess.run(
        [
            sys.executable,
            __file__,
            target,
            f"-max_total_time={SECONDS}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-max_len=4096",
            f"-dict={words}",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        env=env,
        cwd=tmp_path,
    )
    done = DONE.search(run.stderr)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-")))
    failed = f"fuzz target {target!r} failed (exit {run.returncode}):\n{run.stderr[-6000:]}"
    assert run.returncode == 0, failed
    assert not crashes, failed
    assert done, failed
    with capsys.disabled():  # the figure belongs in every run's output
        print(f" [fuzz {target}: {done[1]} executions in {done[2]} s]", end="")


def _escape(token: bytes) -> str:
    """A libFuzzer dictionary entry: printable ASCII as is, the rest as \\xNN."""
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02X}" for b in token
    )


if __name__ == "__main__":
    main()

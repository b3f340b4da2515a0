"""``GET /asyncapi.json``: an AsyncAPI 3.0 document of ``/v1/ws`` that holds every frame, event
type, subprotocol and close code, and that the frames a real socket carries conform to."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from cartsync import wire, wire_events
from cartsync.web import live_protocol as live
from tests.conftest import Tokens
from tests.support.processes import ROOT, ServiceProcess

with warnings.catch_warnings():
    # asyncapi3 0.0.2 has a pydantic field named "schema", which pydantic warns about.
    warnings.simplefilter("ignore", UserWarning)
    from asyncapi3.models import AsyncAPI3

IO_TIMEOUT_S = 10.0
MAX_FRAMES = 100

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def document(service: ServiceProcess) -> Doc:
    r = httpx.get(service.url + "/asyncapi.json", timeout=IO_TIMEOUT_S)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc: Doc = r.json()
    return doc


def resolve(doc: Doc, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return resolve(doc, node["$ref"]) if isinstance(node, dict) and "$ref" in node else node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_it_is_an_asyncapi_3_document(document: Doc) -> None:
    assert document["asyncapi"] == "3.0.0"
    AsyncAPI3.model_validate(document)
    assert document["channels"]["live"]["address"] == "/v1/ws"


def test_every_ref_resolves(document: Doc) -> None:
    found = list(refs(document))
    assert found
    for ref in found:
        resolve(document, ref)


def test_every_schema_is_a_json_schema(document: Doc) -> None:
    for name, schema in document["components"]["schemas"].items():
        assert schema.get("title"), name
        jsonschema.Draft7Validator.check_schema(schema)
    for message in document["components"]["messages"].values():
        jsonschema.Draft7Validator.check_schema(message["payload"])


def frame_tags(payload: Any, doc: Doc) -> set[str]:
    """The ``type`` values a message payload admits."""
    if "$ref" in payload:
        payload = resolve(doc, payload["$ref"])
    kind = payload["properties"]["type"]
    return set(kind.get("enum", [])) | ({kind["const"]} if "const" in kind else set())


def tags_by_direction(doc: Doc) -> tuple[set[str], set[str]]:
    """Frame types the server receives, and those it sends (including replies)."""
    received: set[str] = set()
    sent: set[str] = set()
    for op in doc["operations"].values():
        target = received if op["action"] == "receive" else sent
        for ref in op["messages"]:
            target |= frame_tags(resolve(doc, ref["$ref"])["payload"], doc)
        for ref in op.get("reply", {}).get("messages", []):
            sent |= frame_tags(resolve(doc, ref["$ref"])["payload"], doc)
    return received, sent


def test_every_frame_type_of_the_wire_module_appears_in_its_direction(document: Doc) -> None:
    client: set[str] = set()
    server: set[str] = set()
    for module in (wire, wire_events):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls is wire.Frame or not issubclass(cls, msgspec.Struct):
                continue
            if isinstance(cls.__struct_config__.tag, str):
                (client if issubclass(cls, wire.Frame) else server).add(cls.__struct_config__.tag)
    assert {"auth", "sync", "op", "ping", "pong"} <= client
    assert {"hello", "snapshot", "event", "ack", "nack", "ping"} <= server
    received, sent = tags_by_direction(document)
    assert client <= received
    assert server <= sent
    assert "pong" in sent  # the answer to a client ping


def test_every_event_type_is_a_message_with_its_data_schema(document: Doc) -> None:
    messages = document["components"]["messages"].values()
    by_name = {m["name"]: m for m in messages}
    for event_type, data_type in wire_events.EVENT_DATA.items():
        message = by_name[event_type]
        event = resolve(document, message["payload"]["properties"]["event"]["$ref"])
        assert event["properties"]["type"] == {"const": event_type}
        data = resolve(document, event["properties"]["data"]["$ref"])
        assert data["title"] == data_type.__name__
        assert set(data.get("properties", {})) == set(data_type.__struct_fields__)
    send_event = document["operations"]["sendEvent"]["messages"]
    assert len(send_event) == len(wire_events.EVENT_DATA)


def test_subprotocols_and_close_codes_match_the_server_and_protocol_md(document: Doc) -> None:
    channel = document["channels"]["live"]
    names = [p["name"] for p in channel["x-subprotocols"]]
    assert names == ["cartsync.v1", "bearer.<token>", "grant.<grant id>"]
    codes = {c["code"] for c in channel["x-close-codes"]}
    in_live = {
        value
        for name, value in vars(live).items()
        if name.isupper() and isinstance(value, int) and 1000 <= value <= 4999
    }
    assert in_live <= codes
    protocol_md = (ROOT / "docs" / "protocol.md").read_text()
    section = protocol_md.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(c) for c in re.findall(r"^\| (\d{4}) \|", section, re.MULTILINE)}
    assert documented == codes
    assert "/asyncapi.json" in protocol_md


def validator(document: Doc, message_key: str) -> jsonschema.Draft7Validator:
    """Validates a frame against a message's payload, resolving refs inside the document."""
    payload = document["components"]["messages"][message_key]["payload"]
    return jsonschema.Draft7Validator({**payload, "components": document["components"]})


def test_protocol_md_client_examples_conform(document: Doc) -> None:
    protocol_md = (ROOT / "docs" / "protocol.md").read_text()
    section = protocol_md.split("### Client to server", 1)[1].split("### Server to client")[0]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    examples = [json.loads(line) for line in block.splitlines() if line.strip()]
    assert {e["type"] for e in examples} == {"sync", "op", "ping", "pong"}
    for example in examples:
        validator(document, example["type"]).validate(example)


async def test_the_frames_of_a_real_session_conform(
    document: Doc, service: ServiceProcess, tokens: Tokens, customer_id: str
) -> None:
    """hello, snapshot, ack, event, nack and pong, as a live socket carries them."""
    url = "ws" + service.url.removeprefix("http") + "/v1/ws"
    token = tokens.token("customer", customer_id)
    protocols = [Subprotocol("cartsync.v1"), Subprotocol(f"bearer.{token}")]
    seen: list[dict[str, Any]] = []
    wanted = {"hello", "snapshot", "ack", "event", "nack", "pong"}
    async with connect(url, subprotocols=protocols, proxy=None, open_timeout=IO_TIMEOUT_S) as ws:

        async def send(frame: dict[str, Any]) -> None:
            validator(document, frame["type"]).validate(frame)
            await ws.send(json.dumps(frame))

        async def read_until(types: set[str]) -> None:
            for _ in range(MAX_FRAMES):
                if types <= {f["type"] for f in seen}:
                    return
                try:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)))
                except TimeoutError:
                    raise AssertionError([f["type"] for f in seen]) from None

        await send({"type": "sync"})
        await read_until({"hello", "snapshot"})
        await send({"type": "op", "id": "asyncapi-1", "name": "add_line", "body": {"sku": "A-1"}})
        await send({"type": "op", "id": "asyncapi-2", "name": "clear_cart", "if_match": 7})
        await send({"type": "ping"})
        await read_until(wanted)
    keys = {"ping": "serverPing", "pong": "serverPong"}
    for frame in seen:
        if frame["type"] == "event":
            key = "event_" + frame["event"]["type"].replace(".", "_")
        else:
            key = keys.get(frame["type"], frame["type"])
        validator(document, key).validate(frame)

"""The Runtime's OpenAPI document is generated from the models the routes validate and send."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")

from worker_runtime import Runtime
from worker_runtime.http import HttpSettings, create_app
from worker_runtime.sse import HEARTBEAT, encode_event, notice, retry_hint


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def test_every_reference_resolves_and_no_route_claims_a_422() -> None:
    """Every $ref of the document names a schema it holds (request bodies included), and no
    operation lists 422, which the app never answers (validation failures are 400)."""
    document = create_app(Runtime(runtime_id="doc"), HttpSettings(token="t")).openapi()
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (path, method)
    body = document["paths"]["/v1/workers/{worker_id}/input"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/InputRequest")


def test_the_sse_format_is_one_line_of_json_per_event() -> None:
    """A notice has no id line, its data is one JSON line, and the retry hint and heartbeat
    are the SSE fields a client expects."""
    message = encode_event(notice("r", None, "runtime_shutdown", "closing"))
    assert message.startswith(b"event: diagnostic\ndata: {")
    assert message.endswith(b"}\n\n")
    assert message.count(b"\n") == 3
    data = json.loads(message.split(b"data: ", 1)[1])
    assert data["data"]["code"] == "runtime_shutdown"
    assert data["cursor"] is None
    assert retry_hint(1500) == b"retry: 1500\n\n"
    assert HEARTBEAT == b": heartbeat\n\n"

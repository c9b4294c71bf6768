"""``OperationsApp``: operations served as Starlette routes, every error in the one envelope,
and the OpenAPI document generated from the same models (the Runtime's app and the
Backend's API are both one)."""

from __future__ import annotations

import logging
from typing import Annotated

import pytest

pytest.importorskip("starlette", reason="the http-server extra is not installed")
pytest.importorskip("httpx", reason="the event-stream extra is not installed")

import httpx
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from worker_runtime import WorkerNotFound
from worker_runtime.http import (
    Operation,
    OperationsApp,
    json_response,
    validate_body,
    validate_query,
)

pytestmark = pytest.mark.anyio


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=20)]


class Page(BaseModel):
    limit: Annotated[int, Field(ge=1)] = 10


class Hello(BaseModel):
    text: str


async def greet(request: Request) -> Response:
    """Say hello to ``name``."""
    body = validate_body(Greeting, await request.body())
    return json_response(Hello(text=f"hello {body.name}"), 201)


async def items(request: Request) -> Response:
    page = validate_query(Page, request.query_params)
    item = request.path_params["item_id"]
    if item == "missing":
        raise WorkerNotFound("no such item")
    if item == "boom":
        raise RuntimeError("secret /etc/path detail")
    return json_response(Hello(text=f"{item}:{page.limit}"))


def _app() -> OperationsApp:
    return OperationsApp(
        [
            Operation("POST", "/greet", greet, "demo", Hello, 201, body=Greeting),
            Operation("GET", "/items/{item_id}", items, "demo", Hello, query=Page),
        ],
        title="demo",
        version="1",
        description="a demo",
        error_statuses=(400, 404, 500),
        path_params={"item_id": {"schema": {"type": "string", "maxLength": 8}}},
    )


def _client(app: OperationsApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_operations_answer_with_their_models_json() -> None:
    """A valid request reaches its endpoint and gets the response model's JSON."""
    async with _client(_app()) as c:
        r = await c.post("/greet", json={"name": "ada"})
        assert (r.status_code, r.json()) == (201, {"text": "hello ada"})
        r = await c.get("/items/x", params={"limit": 3})
        assert (r.status_code, r.json()) == (200, {"text": "x:3"})


async def test_bad_bodies_and_queries_are_invalid_input_naming_the_field() -> None:
    """Malformed JSON, an unknown field, a wrong type and a bad query parameter are each 400
    ``invalid_input``; the query's failure names ``query.<name>``."""
    async with _client(_app()) as c:
        for content in (b"{", b'{"name": "a", "x": 1}', b'{"name": 5}', b"[]"):
            r = await c.post("/greet", content=content)
            assert (r.status_code, _code(r)) == (400, "invalid_input"), content
        r = await c.get("/items/x", params={"limit": "zero"})
        assert (r.status_code, _code(r)) == (400, "invalid_input")
        assert "query.limit" in r.text


async def test_refusals_of_the_router_and_the_endpoints_use_the_one_envelope() -> None:
    """An unknown route is 404 ``not_found``, a wrong method 405 ``method_not_allowed``, a
    trailing slash is not redirected, and a typed error keeps its code and status."""
    async with _client(_app()) as c:
        r = await c.get("/nowhere")
        assert (r.status_code, _code(r)) == (404, "not_found")
        r = await c.delete("/greet")
        assert (r.status_code, _code(r)) == (405, "method_not_allowed")
        r = await c.post("/greet/", json={"name": "ada"})
        assert (r.status_code, _code(r)) == (404, "not_found")
        assert "location" not in r.headers
        r = await c.get("/items/missing")
        assert (r.status_code, _code(r)) == (404, "worker_not_found")


async def test_an_unexpected_error_is_logged_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An endpoint's unexpected exception is 500 ``internal_error`` whose body holds none of
    its text, and the exception is logged."""
    with caplog.at_level(logging.ERROR, logger="worker_runtime.http"):
        async with _client(_app()) as c:
            r = await c.get("/items/boom")
    assert (r.status_code, _code(r)) == (500, "internal_error")
    assert "secret" not in r.text
    assert "/etc" not in r.text
    assert any(rec.exc_info for rec in caplog.records)


async def test_the_document_describes_the_served_operations_from_their_models() -> None:
    """``/openapi.json`` serves the generated document: each operation with its body, query
    parameters, path parameter additions, response model and the given error statuses, every
    model under components (query models only as parameters)."""
    app = _app()
    async with _client(app) as c:
        served = (await c.get("/openapi.json")).json()
    assert served == app.openapi()
    greet_op = served["paths"]["/greet"]["post"]
    assert greet_op["description"] == "Say hello to ``name``."
    assert greet_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Greeting"
    }
    assert set(greet_op["responses"]) == {"201", "400", "404", "500"}
    get_op = served["paths"]["/items/{item_id}"]["get"]
    params = {p["name"]: p for p in get_op["parameters"]}
    assert params["item_id"]["schema"] == {"type": "string", "maxLength": 8}
    assert params["limit"]["in"] == "query"
    assert params["limit"]["schema"]["minimum"] == 1
    schemas = served["components"]["schemas"]
    assert {"Greeting", "Hello", "ErrorEnvelope"} <= set(schemas)
    assert "Page" not in schemas


def test_status_descriptions_are_rfc_9110_names_on_every_python() -> None:
    """The document names statuses as RFC 9110 does (413 Content Too Large, 422 Unprocessable
    Content), not as the running interpreter's ``http`` module does (Python 3.11 and 3.12 still
    say Request Entity Too Large): the committed documents are the same whoever generates
    them."""
    app = OperationsApp(
        [Operation("POST", "/greet", greet, "demo", Hello, 201, body=Greeting)],
        title="demo",
        version="1",
        description="a demo",
        error_statuses=(413, 422),
    )
    responses = app.openapi()["paths"]["/greet"]["post"]["responses"]
    assert responses["201"]["description"] == "Created"
    assert responses["413"]["description"] == "Content Too Large"
    assert responses["422"]["description"] == "Unprocessable Content"

"""The client layer `yoi._api` speaks the one Runtime API: the verbs of
`worker_runtime.api.RuntimeAPI`, blocking and in JSON, against a real `yoi-runtime`."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker_runtime import errors
from worker_runtime.api import EventStream as AsyncEventStream
from worker_runtime.api import RuntimeAPI
from yoi import _api
from yoi._api import ApiError, BackendRuntime, EventStream, HttpRuntime, RuntimeApi

from ._cli_harness import Server, runtime

#: Codes only the client produces: nothing answered, or a name matched several Workers.
CLIENT_CODES = {"unreachable", "ambiguous_worker"}


def _verbs(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def _shape(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: the call shape, without the (JSON vs model) annotations."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_http_runtime_has_every_verb_of_the_runtime_api_with_its_call_shape() -> None:
    """HttpRuntime (and the Backend's view of a runtime) has each RuntimeAPI verb with the same
    parameter names, kinds (worker_id positional-only, options keyword-only) and defaults; the
    protocol's coroutines are its blocking calls, and `events` stays a plain call."""
    protocol = _verbs(RuntimeAPI)
    assert protocol, "RuntimeAPI declares no verbs"
    for cls in (HttpRuntime, BackendRuntime):
        for name, signature in protocol.items():
            ours = getattr(cls, name, None)
            assert ours is not None, f"{cls.__name__} lacks {name}"
            assert _shape(inspect.signature(ours)) == _shape(signature), (cls.__name__, name)
            is_async = inspect.iscoroutinefunction(getattr(RuntimeAPI, name))
            assert is_async == (name != "events"), name
            assert not inspect.iscoroutinefunction(ours), name
    assert set(_verbs(HttpRuntime)) == set(protocol)  # no verb of its own either


def test_event_stream_is_the_blocking_twin_of_the_protocols() -> None:
    """The client's EventStream has the protocol's four stream methods, without the `a`."""
    for method in ("__aenter__", "__aexit__", "__aiter__", "__anext__"):
        assert hasattr(AsyncEventStream, method)
        assert hasattr(EventStream, method.replace("__a", "__", 1)), method


def test_every_code_the_client_raises_is_the_librarys() -> None:
    """Every ApiError code written in the client's source is a code of worker_runtime.errors,
    apart from the client's own `unreachable` and `ambiguous_worker`."""
    library = {cls.code for cls in _all(errors.WorkerRuntimeError)}
    source = "".join(
        path.read_text(encoding="utf-8") for path in Path(_api.__file__).parent.glob("*.py")
    )
    written = set(re.findall(r'ApiError\(\s*"([a-z_]+)"', source))
    assert written, "no ApiError code found in the client's source"
    assert written - library == CLIENT_CODES


def _all(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _all(child))]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = runtime(tmp_path_factory.mktemp("rt"), "direct")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_verbs_drive_a_real_runtime(served: Server) -> None:
    """Against a real yoi-runtime every verb answers the API's JSON: a Worker is created, fed,
    followed from a cursor, read, cancelled and stopped; failures are typed ApiErrors."""
    token_file = served.cwd / "rt" / "runtime.token"
    deadline = time.monotonic() + 10
    while not token_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # written once the port is bound
    token = token_file.read_text(encoding="utf-8").strip()
    api = RuntimeApi(served.url, token)
    try:
        rt = api.runtime("direct")
        assert rt.summary()["runtime_id"] == "direct"
        assert isinstance(rt.diagnostics(limit=5), list)
        assert "slow" in {p["name"] for p in rt.list_profiles()}
        worker = rt.create_worker({"name": "verbs"})
        wid = worker["worker_id"]
        assert wid in {w["worker_id"] for w in rt.list_workers(limit=10)["workers"]}
        ack = rt.send_input(wid, {"content": "one two"})
        with rt.events(cursor=worker["last_cursor"], worker_id=wid) as stream:
            kinds = []
            for event in stream:
                kinds.append(event["kind"])
                if event["kind"] == "turn_completed":
                    break
        assert kinds[0] == "input_accepted"
        assert "output_delta" in kinds
        page = rt.read_transcript(wid, start=0, limit=10)
        assert [i["content"] for i in page["items"]] == ["one two", "one two"]
        assert page["items"][0]["turn_id"] == ack["turn_id"]
        assert rt.get_worker(wid)["status"] == "idle"
        assert rt.cancel(wid)["cancelled_turn_id"] is None
        stopped = rt.stop_worker(wid, reason="done")
        assert stopped["worker_ref"]["worker_id"] == wid
        with pytest.raises(ApiError) as missing:
            rt.get_worker("wkr_nope")
        assert (missing.value.code, missing.value.status) == ("worker_not_found", 404)
        with pytest.raises(ApiError) as busy:
            rt.send_input(wid, {"content": "again"})
        assert busy.value.code == "worker_stopped"
        with pytest.raises(ApiError) as other:
            api.runtime("elsewhere")
        assert other.value.code == "runtime_not_found"
        with pytest.raises(ApiError) as wide:
            BackendRuntime(api._client, "direct").events(cursor=None)
        assert wide.value.code == "unsupported_operation"
    finally:
        api.close()

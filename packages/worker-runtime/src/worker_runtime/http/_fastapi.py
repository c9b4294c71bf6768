"""FastAPI helpers the Workspace Backend's app still uses: :class:`DirectRoute` and
:func:`install_error_handlers`. The Runtime's own app is plain Starlette (:mod:`._app`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    InternalError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    WorkerRuntimeError,
    invalid_input_from,
)

__all__ = ["DirectRoute", "install_error_handlers"]

log = logging.getLogger("worker_runtime.http")


class DirectRoute(APIRoute):
    """An APIRoute that calls its endpoint directly when the endpoint takes nothing but path
    parameters (all ``str``) and the :class:`Request`: that skips FastAPI's per-request
    dependency solving. Routes with query parameters keep FastAPI's handler, and the OpenAPI
    document is the same either way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        direct = not (
            dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
            or any(field.field_info.annotation is not str for field in dependant.path_params)
        )
        if not direct:
            return super().get_route_handler()
        endpoint = self.endpoint
        names = tuple(field.name for field in dependant.path_params)
        request_name = dependant.request_param_name

        async def handler(request: Request) -> Response:
            kwargs: dict[str, Any] = {name: request.path_params[name] for name in names}
            if request_name is not None:
                kwargs[request_name] = request
            response: Response = await endpoint(**kwargs)
            return response

        return handler


def _envelope(error: WorkerRuntimeError) -> JSONResponse:
    return JSONResponse(error.to_envelope(), status_code=error.status)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with the one envelope: typed errors with their code,
    validation failures as ``invalid_input``, unknown routes and methods, and anything
    unexpected as ``internal_error`` (logged, never shown)."""

    @app.exception_handler(WorkerRuntimeError)
    async def runtime_error(request: Request, exc: WorkerRuntimeError) -> JSONResponse:
        return _envelope(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _envelope(invalid_input_from(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: WorkerRuntimeError
        if exc.status_code == 404:
            error = NotFound("no such route")
        elif exc.status_code == 405:
            error = MethodNotAllowed("this route does not take that method")
        elif exc.status_code < 500:
            error = InvalidInput("the request is not valid")
        else:
            error = InternalError("the server failed to answer")
        return _envelope(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return _envelope(InternalError("the server failed to answer"))

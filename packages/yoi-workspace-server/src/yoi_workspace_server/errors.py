"""The Backend's own refusals at the browser trust boundary (see ``docs/security.md``).

They extend yoi's one error tree (:class:`worker_runtime.WorkerRuntimeError`), so every one
answers with the one envelope::

    WorkerRuntimeError
    ├── HostNotAllowed (PermissionError)       host_not_allowed        403
    ├── OriginNotAllowed (PermissionError)     origin_not_allowed      403
    ├── UnsupportedMediaType (ValueError)      unsupported_media_type  415
    └── TooManyRequests                        too_many_requests       429

(``unauthorized`` 401 is the core's :class:`worker_runtime.Unauthorized`.)
"""

from __future__ import annotations

from worker_runtime import WorkerRuntimeError

__all__ = ["HostNotAllowed", "OriginNotAllowed", "TooManyRequests", "UnsupportedMediaType"]


class HostNotAllowed(WorkerRuntimeError, PermissionError):
    """The request's ``Host`` is not on the allow-list (a DNS-rebinding page, or a name the
    operator did not add with ``--allowed-host``)."""

    code = "host_not_allowed"
    status = 403


class OriginNotAllowed(WorkerRuntimeError, PermissionError):
    """A write from another origin (``Origin`` or ``Sec-Fetch-Site`` says so): a cross-site
    request forgery, refused even with valid credentials."""

    code = "origin_not_allowed"
    status = 403


class UnsupportedMediaType(WorkerRuntimeError, ValueError):
    """A body that is not ``application/json`` on a route that takes JSON."""

    code = "unsupported_media_type"
    status = 415


class TooManyRequests(WorkerRuntimeError):
    """Too many failed sign-ins or bad tokens from one client in a short time."""

    code = "too_many_requests"
    status = 429

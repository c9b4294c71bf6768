"""Runtime sources: what the registry routes to (contract §10).

Each source is a :class:`~worker_runtime.RuntimeAPI` (``source.api``) plus its ``info()`` and
capabilities (:mod:`.base`):

- :class:`EmbeddedSource` holds the Backend's in-process :class:`~worker_runtime.Runtime`;
- :class:`RemoteSource` reaches a ``yoi-runtime`` process through
  :class:`~worker_runtime.client.RuntimeClient`;
- :class:`LocalSource` is a read-only projection of an fs-store root on this machine.

Every source raises the library's typed errors, so the Backend passes Runtime error codes
through 1:1.
"""

from .base import (
    ALL_CAPABILITIES,
    READ_ONLY,
    Capabilities,
    RuntimeInfo,
    Source,
    SourceDiagnostic,
    SourceEvents,
    SourceKind,
    SourceStatus,
)
from .embedded import EmbeddedSource
from .local import LocalSource
from .remote import RemoteSource

__all__ = [
    "ALL_CAPABILITIES",
    "READ_ONLY",
    "Capabilities",
    "EmbeddedSource",
    "LocalSource",
    "RemoteSource",
    "RuntimeInfo",
    "Source",
    "SourceDiagnostic",
    "SourceEvents",
    "SourceKind",
    "SourceStatus",
]

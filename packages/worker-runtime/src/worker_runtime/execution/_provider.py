"""What the model-provider backends share (private): the API key read at turn time, bounded
retries with backoff, and messages that never carry a credential.

A backend maps its SDK's exceptions once, at its boundary, to the typed turn failures of
:mod:`worker_runtime.errors` (``provider_auth_failed``, ``provider_rate_limited``,
``provider_timeout``, ``provider_unavailable``, ``provider_error``); :func:`stream_with_retries`
retries the transient ones (rate limited, timeout, unavailable) while nothing of the turn has
streamed yet, ``profile.max_retries`` times at most, waiting ``retry_backoff_s`` doubled each
time (or the provider's retry-after, when it said one and it is not longer than
:data:`MAX_RETRY_AFTER_S`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, Generic, TypeVar

import anyio

from ..errors import (
    ExecutionError,
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..profiles import Profile
from . import TextDelta, TurnRequest, TurnUsage

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_RETRY_AFTER_S",
    "ClientCache",
    "SdkBackend",
    "api_key",
    "map_sdk_error",
    "retry_after_s",
    "scrub",
    "stream_with_retries",
]

C = TypeVar("C")

log = logging.getLogger("worker_runtime.execution")

#: A retry-after longer than this is not waited for: the turn fails with it in its details.
MAX_RETRY_AFTER_S = 30.0
#: A provider call's timeout when the profile sets no ``timeout_s``.
DEFAULT_TIMEOUT_S = 60.0
_TRANSIENT = (ProviderRateLimited, ProviderTimeout, ProviderUnavailable)
_MAX_MESSAGE = 300


def api_key(profile: Profile, *, required: bool) -> str | None:
    """The key in the environment variable ``profile.api_key_env`` names, read now (a
    rotated key takes effect on the next turn). Never stored, logged or shown."""
    if profile.api_key_env is None:
        if required:
            raise ProviderAuthFailed(
                f"profile '{profile.name}' names no api_key_env",
                details={"profile": profile.name},
            )
        return None
    value = os.environ.get(profile.api_key_env, "").strip()
    if not value:
        raise ProviderAuthFailed(
            f"the environment variable {profile.api_key_env} is not set",
            details={"api_key_env": profile.api_key_env},
        )
    return value


def scrub(text: object, secret: str | None) -> str:
    """A provider's own message, cut short, with the key (and any long run of it) removed:
    providers echo parts of a rejected key in their messages."""
    message = str(text or "").strip().replace("\n", " ")
    if secret:
        message = message.replace(secret, "***")
        for size in (12, 8):  # prefixes or suffixes a provider may quote ("sk-ab…yz12")
            if len(secret) > size:
                message = message.replace(secret[:size], "***").replace(secret[-size:], "***")
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    return message


async def stream_with_retries(
    request: TurnRequest,
    attempt: Callable[[], AsyncGenerator[TextDelta | TurnUsage, None]],
) -> AsyncIterator[TextDelta | TurnUsage]:
    """Run ``attempt`` (one provider call), retrying a transient failure that happened before
    the first delta. A failure after output streamed is final: the text already sent cannot
    be taken back."""
    profile = request.profile
    retries = 0
    while True:
        streamed = False
        try:
            # aclosing: when this stream is closed early, the attempt (and its HTTP response)
            # is closed now, not whenever the garbage collector gets to it.
            async with aclosing(attempt()) as items:
                async for item in items:
                    streamed = streamed or isinstance(item, TextDelta)
                    yield item
            return
        except _TRANSIENT as exc:
            if streamed or retries >= profile.max_retries:
                raise
            delay = _delay(exc, profile, retries)
            if delay is None:
                raise
            retries += 1
            log.info(
                "turn %s: %s, retry %d of %d in %.2f s",
                request.turn_id,
                exc.code,
                retries,
                profile.max_retries,
                delay,
            )
            await anyio.sleep(delay)


def _delay(exc: ExecutionError, profile: Profile, retries: int) -> float | None:
    retry_after = exc.details.get("retry_after_s")
    if isinstance(retry_after, int | float):
        return float(retry_after) if retry_after <= MAX_RETRY_AFTER_S else None
    base: float = profile.retry_backoff_s * (2.0**retries)
    return base * (0.5 + random.random() / 2)


def retry_after_s(headers: object) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, else ``retry-after`` in seconds (an
    HTTP date is not honoured: ``None``)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = get(name)
        if raw is None:
            continue
        try:
            value: float = float(raw) * scale
        except (TypeError, ValueError):
            continue
        if value >= 0:
            return value
    return None


class ClientCache(Generic[C]):
    """SDK clients (each with its connection pool) by endpoint, timeout and key. The key's
    digest, not the key, names a client; a rotated key gets a new one. There are as many as
    distinct profile settings and keys seen, and all close with the Runtime (a client is never
    dropped earlier: a running turn may be using it)."""

    def __init__(self, make: Callable[[str, str | None, float], C]) -> None:
        self._make = make
        self._clients: dict[tuple[str | None, float, str], C] = {}

    def get(self, profile: Profile, key: str | None) -> C:
        timeout = profile.timeout_s or DEFAULT_TIMEOUT_S
        digest = hashlib.sha256((key or "").encode()).hexdigest()
        cache_key = (profile.base_url, timeout, digest)
        client = self._clients.get(cache_key)
        if client is None:
            # Local servers take any key, and the SDKs insist on one.
            client = self._make(key or "no-key", profile.base_url, timeout)
            self._clients[cache_key] = client
        return client

    async def aclose(self) -> None:
        """Close every client (each closes its connection pool)."""
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            close = getattr(client, "close", None)
            if close is not None:
                await close()


def map_sdk_error(
    sdk: Any, exc: Exception, key: str | None, *, streaming: bool = False
) -> ExecutionError:
    """The typed turn failure of an exception of the ``openai`` or ``anthropic`` SDK (they
    share their exception names), or of the transport under it. No key in any message."""
    if isinstance(exc, sdk.APITimeoutError) or _is_timeout(exc):
        return ProviderTimeout("the provider did not answer in time")
    if streaming and (isinstance(exc, sdk.APIConnectionError) or not isinstance(exc, sdk.APIError)):
        # Once the reply has started, a lost connection is a broken reply, not an outage.
        return ProviderError("the provider's stream broke off before the reply was complete")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderUnavailable("the provider cannot be reached")
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        said = scrub(exc.message, key)
        details: dict[str, Any] = {"status": status}
        if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
            return ProviderAuthFailed(
                f"the provider refused the credentials: {said}", details=details
            )
        if isinstance(exc, sdk.RateLimitError):
            wait = retry_after_s(exc.response.headers)
            if wait is not None:
                details["retry_after_s"] = wait
            return ProviderRateLimited(f"the provider is rate limiting: {said}", details=details)
        if status >= 500:  # Anthropic's 529 "overloaded" included
            return ProviderUnavailable(f"the provider failed ({status}): {said}", details=details)
        return ProviderError(
            f"the provider refused the request ({status}): {said}", details=details
        )
    if isinstance(exc, sdk.APIError):
        return ProviderError(f"the provider reported an error: {scrub(exc.message, key)}")
    return ProviderError(f"the provider call failed ({type(exc).__name__})")


def _is_timeout(exc: BaseException) -> bool:
    """A timeout of the HTTP layer under an SDK (raised unwrapped while a stream is read)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TimeoutException", "TimeoutError", "ReadTimeout"})


class SdkBackend(Generic[C]):
    """A provider backend over an official SDK: clients cached per endpoint and key, bounded
    retries around :meth:`_attempt` (one provider call), and the clients closed with the
    Runtime. Subclasses make the client and stream one attempt."""

    def __init__(self) -> None:
        self._clients: ClientCache[C] = ClientCache(self._make_client)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _make_client(self, key: str, base_url: str | None, timeout: float) -> C:
        raise NotImplementedError

    def _attempt(self, request: TurnRequest) -> AsyncGenerator[TextDelta | TurnUsage, None]:
        raise NotImplementedError

    def stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        return stream_with_retries(request, lambda: self._attempt(request))

    async def aclose(self) -> None:
        await self._clients.aclose()

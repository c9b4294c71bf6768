"""The ``openai`` execution backend (``openai`` extra): streaming chat completions with the
official SDK against any OpenAI-compatible ``base_url`` (OpenAI, Ollama, vLLM, a llama.cpp
server, LM Studio).

Profile fields: ``model`` (required), ``base_url``, ``api_key_env`` (required for OpenAI
itself; a local server may need none), ``max_tokens``, ``temperature``, ``timeout_s``,
``max_retries``, ``retry_backoff_s``. The SDK's own retries are off: :mod:`._provider`
retries, so that every provider behaves alike.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

try:
    import openai
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("openai") from exc

import anyio

from ..errors import ExecutionError
from . import TextDelta, TurnRequest, TurnUsage
from ._provider import SdkBackend, api_key, map_sdk_error

__all__ = ["OpenAIBackend"]


class OpenAIBackend(SdkBackend["openai.AsyncOpenAI"]):
    """Streams chat completions. One SDK client (and connection pool) per endpoint and key."""

    def _make_client(self, key: str, base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)

    async def _attempt(self, request: TurnRequest) -> AsyncGenerator[TextDelta | TurnUsage, None]:
        profile = request.profile
        key = api_key(profile, required=profile.base_url is None)
        client = self._clients.get(profile, key)
        params: dict[str, Any] = {
            "model": profile.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if profile.max_tokens is not None:
            params["max_tokens"] = profile.max_tokens
        if profile.temperature is not None:
            params["temperature"] = profile.temperature
        try:
            stream = await client.chat.completions.create(**params)
        except Exception as exc:
            raise map_sdk_error(openai, exc, key) from None
        try:
            usage: TurnUsage | None = None
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = TurnUsage(
                        input_tokens=chunk.usage.prompt_tokens or 0,
                        output_tokens=chunk.usage.completion_tokens or 0,
                    )
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        yield TextDelta(text)
            if usage is not None:
                yield usage
        except ExecutionError:
            raise
        except Exception as exc:
            raise map_sdk_error(openai, exc, key, streaming=True) from None
        finally:
            # Close the HTTP response (and so its connection) even when the turn is being
            # cancelled: that is what stops the provider generating.
            with anyio.CancelScope(shield=True):
                await stream.close()

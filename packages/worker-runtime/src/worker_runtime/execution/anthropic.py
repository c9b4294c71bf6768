"""The ``anthropic`` execution backend (``anthropic`` extra): streaming messages with the
official SDK.

Profile fields: ``model`` (required), ``api_key_env`` (required unless ``base_url`` points at
a gateway that needs none), ``base_url``, ``max_tokens`` (default 1024: the API requires
one), ``temperature``, ``timeout_s``, ``max_retries``, ``retry_backoff_s``. The leading system
messages (the profile's system prompt, system inputs before the first user input) become the
``system`` parameter; a system input later in the conversation is sent in its place as a user
message marked ``[system]``, since the Messages API has no system role in ``messages``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

try:
    import anthropic
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("anthropic") from exc

import anyio

from ..errors import ExecutionError, ProviderError
from . import ContextMessage, TextDelta, TurnRequest, TurnUsage
from ._provider import SdkBackend, api_key, map_sdk_error

__all__ = ["AnthropicBackend"]

_DEFAULT_MAX_TOKENS = 1024


def to_messages(context: Sequence[ContextMessage]) -> tuple[str | None, list[dict[str, str]]]:
    """``(system, messages)`` for the Messages API from a turn's context."""
    system: list[str] = []
    messages: list[dict[str, str]] = []
    for message in context:
        if message.role == "system":
            if not messages:
                system.append(message.content)
            else:
                messages.append({"role": "user", "content": f"[system] {message.content}"})
        else:
            messages.append({"role": message.role, "content": message.content})
    return ("\n\n".join(system) if system else None), messages


class AnthropicBackend(SdkBackend["anthropic.AsyncAnthropic"]):
    """Streams messages. One SDK client (and connection pool) per endpoint and key."""

    def _make_client(
        self, key: str, base_url: str | None, timeout: float
    ) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def _attempt(self, request: TurnRequest) -> AsyncGenerator[TextDelta | TurnUsage, None]:
        profile = request.profile
        key = api_key(profile, required=profile.base_url is None)
        client = self._clients.get(profile, key)
        system, messages = to_messages(request.messages)
        params: dict[str, Any] = {
            "model": profile.model,
            "messages": messages,
            "max_tokens": profile.max_tokens or _DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if system is not None:
            params["system"] = system
        if profile.temperature is not None:  # not a named parameter in every SDK version
            params["extra_body"] = {"temperature": profile.temperature}
        try:
            stream = await client.messages.create(**params)
        except Exception as exc:
            raise map_sdk_error(anthropic, exc, key) from None
        try:
            input_tokens = output_tokens = 0
            async for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens or 0
                    output_tokens = event.message.usage.output_tokens or 0
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        yield TextDelta(event.delta.text)
                elif event.type == "message_delta":
                    output_tokens = event.usage.output_tokens or output_tokens
                elif event.type == "message_stop":
                    yield TurnUsage(input_tokens=input_tokens, output_tokens=output_tokens)
                    return
            raise ProviderError("the provider's stream ended before the message did")
        except ExecutionError:
            raise
        except Exception as exc:
            raise map_sdk_error(anthropic, exc, key, streaming=True) from None
        finally:
            with anyio.CancelScope(shield=True):  # the connection closes even on cancel
                await stream.close()

"""The ``llama_cpp`` execution backend (``llama-cpp`` extra): a local GGUF model run by
llama-cpp-python, fully offline.

Profile fields: ``model`` (required: the path of the GGUF file), ``context_tokens`` (the
model's context window, ``n_ctx``; default 4096, and the turn's context budget as for every
provider), ``max_tokens`` (default 512), ``temperature``, ``system_prompt``.

A GGUF file without a chat template of a known family (Gemma) is formatted with that
family's chat format.

llama.cpp generates synchronously, so each token step runs in a worker thread. A cancelled
turn lets the step in flight finish (one token), then closes the generator: generation stops
within one token step. One loaded model generates one turn at a time (llama.cpp's context is
not shared between threads); turns of other Workers on the same model wait their turn.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

try:
    import llama_cpp
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    from ..errors import MissingExtraError

    raise MissingExtraError("llama-cpp") from exc

import anyio
import anyio.to_thread

from ..errors import ProviderError, ProviderUnavailable
from ..profiles import Profile
from . import TextDelta, TurnRequest, TurnUsage

__all__ = ["LlamaCppBackend"]

_DEFAULT_N_CTX = 4096
_DEFAULT_MAX_TOKENS = 512
_STEPS_KEPT = 256


@dataclass
class _Model:
    llm: Any
    lock: anyio.Lock


class LlamaCppBackend:
    """Loads each GGUF file once (per context size) and generates with it."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], _Model] = {}
        self._loading = anyio.Lock()
        #: Token steps each recent turn ran (by turn_id): what a cancel stopped, observably.
        self.steps: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:
        return f"LlamaCppBackend(models={len(self._models)})"

    async def _model(self, profile: Profile) -> _Model:
        path = await anyio.to_thread.run_sync(os.path.expanduser, profile.model or "")
        n_ctx = profile.context_tokens or _DEFAULT_N_CTX
        async with self._loading:
            model = self._models.get((path, n_ctx))
            if model is None:
                if not await anyio.Path(path).is_file():
                    raise ProviderUnavailable(
                        f"the model file of profile '{profile.name}' does not exist",
                        details={"profile": profile.name},
                    )
                try:
                    llm = await anyio.to_thread.run_sync(
                        lambda: llama_cpp.Llama(model_path=path, n_ctx=n_ctx, verbose=False)
                    )
                except Exception as exc:
                    raise ProviderError(
                        f"the model file of profile '{profile.name}' cannot be loaded "
                        f"({type(exc).__name__})",
                        details={"profile": profile.name},
                    ) from None
                _pick_chat_format(llm)
                model = self._models[(path, n_ctx)] = _Model(llm, anyio.Lock())
        return model

    def stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        return self._stream(request)

    async def _stream(self, request: TurnRequest) -> AsyncIterator[TextDelta | TurnUsage]:
        profile = request.profile
        model = await self._model(profile)
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        params: dict[str, Any] = {
            "messages": messages,
            "max_tokens": profile.max_tokens or _DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if profile.temperature is not None:
            params["temperature"] = profile.temperature
        async with model.lock:
            self.steps[request.turn_id] = 0
            while len(self.steps) > _STEPS_KEPT:
                self.steps.popitem(last=False)
            try:
                chunks: Iterator[Any] = model.llm.create_chat_completion(**params)
            except Exception as exc:
                raise ProviderError(
                    f"the model refused the request ({type(exc).__name__})"
                ) from None
            output = 0
            try:
                while True:
                    # One token step; on cancel it finishes, then the generator is closed.
                    chunk = await anyio.to_thread.run_sync(next, chunks, None)
                    if chunk is None:
                        break
                    self.steps[request.turn_id] += 1
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        output += 1
                        yield TextDelta(text)
            except ValueError as exc:  # llama-cpp's error for a context that does not fit
                raise ProviderError(f"the model could not generate: {exc}") from None
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_close, chunks)
            total = int(getattr(model.llm, "n_tokens", 0))
        yield TurnUsage(input_tokens=max(0, total - output), output_tokens=output)


#: Chat formats of model families whose GGUF files often ship without a chat template
#: (llama-cpp-python would then fall back to Llama 2's ``[INST]`` format, which they do not
#: understand).
_FAMILY_FORMATS = {"gemma": "gemma"}


def _pick_chat_format(llm: Any) -> None:
    metadata = getattr(llm, "metadata", None) or {}
    if metadata.get("tokenizer.chat_template"):
        return  # the file says how to format a chat
    architecture = str(metadata.get("general.architecture", ""))
    for family, chat_format in _FAMILY_FORMATS.items():
        if architecture.startswith(family):
            llm.chat_format = chat_format
            llm.chat_handler = None
            return


def _close(chunks: Iterator[Any]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()

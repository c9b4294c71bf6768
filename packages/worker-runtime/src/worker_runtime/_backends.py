"""The Runtime's execution backends (private), one per provider, each made on first use."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from .errors import UnsupportedOperation
from .execution import ExecutionBackend
from .execution.echo import EchoBackend
from .profiles import Profile

__all__ = ["Backends"]


def _openai_backend() -> ExecutionBackend:
    from .execution.openai import OpenAIBackend

    return OpenAIBackend()


def _anthropic_backend() -> ExecutionBackend:
    from .execution.anthropic import AnthropicBackend

    return AnthropicBackend()


def _llama_cpp_backend() -> ExecutionBackend:
    from .execution.llama_cpp import LlamaCppBackend

    return LlamaCppBackend()


#: The provider backends a Runtime makes on first use, each from its extra.
_PROVIDER_BACKENDS: Mapping[str, Callable[[], ExecutionBackend]] = {
    "openai": _openai_backend,
    "anthropic": _anthropic_backend,
    "llama_cpp": _llama_cpp_backend,
}


class Backends(Mapping[str, ExecutionBackend]):
    """The backend of each provider: echo, those given, then those made on first use."""

    def __init__(self, given: Mapping[str, ExecutionBackend] | None = None) -> None:
        self._backends: dict[str, ExecutionBackend] = {"echo": EchoBackend()}
        self._backends.update(given or {})

    def __getitem__(self, provider: str) -> ExecutionBackend:
        return self._backends[provider]

    def __iter__(self) -> Iterator[str]:
        return iter(self._backends)

    def __len__(self) -> int:
        return len(self._backends)

    def for_profile(self, profile: Profile) -> ExecutionBackend:
        """The execution backend of a profile's provider, made on first use from its extra
        (``MissingExtraError`` names the ``pip install`` when it is not installed)."""
        backend = self._backends.get(profile.provider)
        if backend is None:
            factory = _PROVIDER_BACKENDS.get(profile.provider)
            if factory is None:
                raise UnsupportedOperation(
                    f"provider '{profile.provider}' is not available in this Runtime",
                    details={"provider": profile.provider, "profile": profile.name},
                )
            backend = self._backends[profile.provider] = factory()
        return backend

    async def aclose(self) -> None:
        """Close the provider clients and their pools."""
        for backend in self._backends.values():
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()

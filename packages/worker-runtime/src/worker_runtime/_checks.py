"""Validation of commands and page sizes (private): errors are ``invalid_input`` and
``limit_too_large``, never a silent clamp."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InvalidInput, LimitExceeded, LimitTooLarge, invalid_input_from
from .models import CreateWorkerRequest, InputRequest, Limits

__all__ = ["Checks", "check_limit", "check_start", "parse_request"]

M = TypeVar("M", bound=BaseModel)


def check_limit(limit: int | None, default: int, maximum: int) -> int:
    """A page size: ``default`` when absent; an error (never a clamp) when not in 1..maximum."""
    if limit is None:
        return min(default, maximum)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidInput("limit must be an integer >= 1", details={"field": "limit"})
    if limit > maximum:
        raise LimitTooLarge(
            f"limit must be at most {maximum}", details={"field": "limit", "maximum": maximum}
        )
    return limit


def check_start(start: int) -> int:
    """A transcript offset: an integer >= 0."""
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise InvalidInput("start must be an integer >= 0", details={"field": "start"})
    return start


def parse_request(model: type[M], value: M | Mapping[str, Any] | None) -> M:
    """Validate a request given as a model or a mapping; failures are ``invalid_input``."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        raise invalid_input_from(exc.errors()) from None


class Checks:
    """The checks a Runtime's limits impose on a command's fields."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    def content(self, req: InputRequest, *, field: str) -> None:
        """An input's content is at most ``limits.max_input_bytes`` in UTF-8."""
        size = len(req.content.encode("utf-8"))
        maximum = self._limits.max_input_bytes
        if size > maximum:
            raise InvalidInput(
                f"{field}: {size} bytes is over the limit of {maximum}",
                details={"field": field, "max_input_bytes": maximum},
            )

    def create(self, req: CreateWorkerRequest, *, workers: int) -> None:
        """A new Worker's name and initial input are within the limits, and the Runtime,
        holding ``workers``, has room for one more."""
        self.name(req.name)
        if req.initial_input is not None:
            self.content(req.initial_input, field="initial_input.content")
        maximum = self._limits.max_workers
        if workers >= maximum:
            raise LimitExceeded(
                f"this Runtime holds its maximum of {maximum} Workers",
                details={"limit": "max_workers", "value": maximum},
            )

    def name(self, name: str | None) -> None:
        """A Worker's name is at most ``limits.max_name_chars`` characters."""
        if name is not None and len(name) > self._limits.max_name_chars:
            raise InvalidInput(
                f"name: at most {self._limits.max_name_chars} characters",
                details={"field": "name"},
            )

    @staticmethod
    def reason(reason: str | None) -> str | None:
        """A stop or cancel reason: at most 1000 characters, no NUL; blank reads as none."""
        if reason is None:
            return None
        if not isinstance(reason, str) or len(reason) > 1000 or "\x00" in reason:
            raise InvalidInput(
                "reason must be a string of at most 1000 characters", details={"field": "reason"}
            )
        return reason.strip() or None

"""One check for every "value must be one of ..." setting."""

from typing import Any, Iterable

__all__ = ["check_choice"]


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError naming the key, the
    value and the allowed values, e.g. ``MODEL.LSNET.TASK = 'boxes'; use one of ('box', ...)``.

    Args:
        key: what the value sets, as the user writes it (a config key, or an argument name).
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{key} = {value!r}; use one of {allowed}.")
    return value

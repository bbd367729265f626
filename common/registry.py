"""Name registries for methods, models and datasets.

A registry maps a name to a factory. Registering a name twice is an error (naming
both definitions), and looking up an unknown name lists every known name with a
did-you-mean suggestion. Papers add entries from their own folders; nothing in
``common/`` has to be edited to add a method. ``load_plugins()`` imports every
``papers/<paper>/`` package so their ``@register_*`` decorators run.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or clashing name in a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None) or obj.__name__
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', key)}"
            if key in self._items and self._origin[key] != origin:
                raise RegistryError(
                    f"{self.kind} name {key!r} is already registered by {self._origin[key]}; "
                    f"{origin} cannot take it. Pick another name."
                )
            self._items[key] = obj
            self._origin[key] = origin
            return obj

        return deco

    def get(self, name: str) -> T:
        load_plugins()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._items)} Known {self.kind}s: {known}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._items

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_PLUGINS_LOADED = False


def load_plugins() -> None:
    """Import every paper package (``papers.*``) once so its registrations run."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    import papers  # noqa: F401  (namespace of paper folders)

    for info in sorted(pkgutil.iter_modules(papers.__path__), key=lambda i: i.name):
        if info.ispkg:
            importlib.import_module(f"papers.{info.name}")

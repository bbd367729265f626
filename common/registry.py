"""Name registries for methods, models and datasets.

A registry maps a name to a factory. Registering a name twice is an error (naming
both definitions), and looking up an unknown name lists every known name with a
did-you-mean suggestion. Papers add entries from their own folders; nothing in
``common/`` has to be edited to add a method. The first lookup in a registry imports the modules it
was declared with (``Registry("dataset", modules=("common.image_datasets",))``: the built-in
entries that live outside the registry's own module) and then ``load_plugins()``, which imports
every ``papers/<paper>/`` package, so every ``@register_*`` decorator has run before a name is
looked up.
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
    def __init__(self, kind: str, modules: tuple[str, ...] = ()):
        self.kind = kind
        self.modules = tuple(modules)  # imported at the first lookup (they register built-in entries)
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            for mod in self.modules:
                importlib.import_module(mod)
            self._loaded = True
        load_plugins()

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
        self._load()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._items)} Known {self.kind}s: {known}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def names(self) -> list[str]:
        self._load()
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

"""Built-in tasks; each module in this package registers its own."""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from scalingstudy_trainer.errors import ConfigError
from scalingstudy_trainer.tasks.base import REGISTRY, Task


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")


def task_names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def get_task(name: str) -> type[Task]:
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        near = difflib.get_close_matches(name, sorted(REGISTRY), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(
            f"unknown task {name!r}; {hint}built-in tasks: {', '.join(sorted(REGISTRY))}"
        ) from None

"""Our `tasks` package, whatever the name `tasks` means in the host process."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

OURS = Path(__file__).resolve().parent.parent / "tasks"
ALIAS = "voicemail_worker._tasks"


def _is_ours(origin: str | None) -> bool:
    return origin is not None and Path(origin).resolve().parent == OURS


def tasks_module(name: str) -> ModuleType:
    """`tasks.<name>`: through `tasks` when that is our package, else through the alias."""
    loaded = sys.modules.get("tasks")
    if loaded is not None:
        ours = _is_ours(getattr(loaded, "__file__", None))
    else:
        spec = importlib.util.find_spec("tasks")
        ours = spec is not None and _is_ours(spec.origin)
    package = "tasks" if ours else _alias().__name__
    return importlib.import_module(f"{package}.{name}")


def _alias() -> ModuleType:
    """Our `tasks/` loaded as `voicemail_worker._tasks` (its imports are relative)."""
    if ALIAS in sys.modules:
        return sys.modules[ALIAS]
    spec = importlib.util.spec_from_file_location(
        ALIAS, OURS / "__init__.py", submodule_search_locations=[str(OURS)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[ALIAS] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[ALIAS]
        raise
    return module

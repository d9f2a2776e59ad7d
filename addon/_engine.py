"""Where the add-on finds the engine.

In the installed extension the engine is vendored as a sub-package (``<extension>/engine``); in the
repository it is the top-level ``engine`` package beside ``addon/``. Add-on modules import engine
modules through ``engine_module`` (or the re-exports below), so the same code runs in both places.
"""

from __future__ import annotations

import importlib
from types import ModuleType

try:  # the extension zip built by build_addon.py
    importlib.import_module(f"{__package__}.engine")
    ENGINE_PACKAGE = f"{__package__}.engine"
except ImportError:  # running from the repository (tests, python -m addon.batch)
    ENGINE_PACKAGE = "engine"


def engine_module(name: str) -> ModuleType:
    """Import ``engine.<name>`` from wherever the engine lives."""
    return importlib.import_module(f"{ENGINE_PACKAGE}.{name}")


skeleton = engine_module("skeleton")
rotation = engine_module("rotation")
errors = engine_module("errors")
dance = engine_module("dance")

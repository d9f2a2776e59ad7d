"""Bailando Dance: generate dances from music in Blender (registration only; see ``ui/``)."""

from __future__ import annotations


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()

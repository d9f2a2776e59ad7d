"""The add-on's UI: properties, operators, the "Dance" sidebar panels and the preferences.

Every module lists its Blender classes in ``CLASSES``; ``register`` / ``unregister`` walk the
aggregate in order (property groups first, since the others refer to them) and back.
"""

from __future__ import annotations

import bpy

from . import operators, panels, prefs, props

CLASSES = (*props.CLASSES, *prefs.CLASSES, *operators.CLASSES, *panels.CLASSES)

_registered = False


def register() -> None:
    global _registered
    if _registered:  # registering twice would raise on the first class
        return
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.register_properties()
    prefs.add_deps_to_path()
    _registered = True


def unregister() -> None:
    global _registered
    if not _registered:
        return
    from . import core, jobs

    jobs.stop_active()
    prefs.unregister_timers()
    props.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    core.clear_cache()
    _registered = False

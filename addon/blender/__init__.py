"""The Blender layer of the add-on (bpy, no UI): SMPL armature, bulk keyframes, rig mapping,
FBX/BVH export, MP4 render and scene timing. Imports the engine only through ``addon._engine``."""

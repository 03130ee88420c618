"""The embedded analytic world: procedural objects, a tiny text encoder, exact renders.

It is psdkit's test bed: a diffusion prior whose score is exact (a Gaussian mixture around these
renders) and closed-form rewards, so every strategy can be checked where the answer is known.
See docs/analytic_world.md.
"""

from psdkit.world.objects import DEFAULT_OBJECTS, EXTRA_OBJECTS, WORLD_OBJECTS, WorldObject, render_objects
from psdkit.world.text import TinyTextEncoder

__all__ = ["DEFAULT_OBJECTS", "EXTRA_OBJECTS", "WORLD_OBJECTS", "TinyTextEncoder", "WorldObject", "render_objects"]

"""The ``psdkit`` command line."""

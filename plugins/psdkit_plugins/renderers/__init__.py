"""Built-in renderers."""

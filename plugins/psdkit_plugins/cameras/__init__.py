"""Built-in cameras."""

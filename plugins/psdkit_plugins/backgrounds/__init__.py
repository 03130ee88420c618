"""Built-in backgrounds."""

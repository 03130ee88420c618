"""Built-in representations."""

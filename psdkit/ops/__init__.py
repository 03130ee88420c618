"""Small numeric building blocks shared by plugins. No psdkit imports beyond contracts."""

"""Small `relief` sub-commands that belong to no single module."""

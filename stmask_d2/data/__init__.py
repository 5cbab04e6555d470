"""YouTube-VIS / OVIS / custom dataset registration and mappers. Importing registers the builtin splits."""
from . import builtin  # noqa: F401

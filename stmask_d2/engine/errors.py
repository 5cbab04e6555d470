"""The user-error types and the command-line wrapper, re-exported from :mod:`stmask_d2.utils.errors` (their home:
the lowest layer, so that data, tracking and evaluation code raise them without importing the engine)."""
from ..utils.errors import *  # noqa: F401,F403
from ..utils.errors import __all__  # noqa: F401

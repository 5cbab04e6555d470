"""The user-error types and the command-line wrapper, re-exported from :mod:`stmask_d2.utils.errors` (their home:
the lowest layer, so that data, tracking and evaluation code raise them without importing the engine)."""
from ..utils.errors import (USER_ERROR_EXIT_CODE, CheckpointError, ConfigError, InputError,  # noqa: F401
                            MissingFileError, MissingWeightsError, UserError, debug_enabled, is_user_error, one_line,
                            report_user_error, run_cli)
from ..utils.errors import __all__  # noqa: F401

"""Exceptions for mistakes of the user (config, data, weights, output folder), as opposed to internal bugs.

``train_net.py`` prints these as one line without a traceback (exit code 2); every other exception keeps its
traceback. ``STMASK_DEBUG=1`` shows tracebacks for user errors too.
"""

__all__ = ["UserError", "ConfigError", "CheckpointError", "MissingWeightsError", "is_user_error", "one_line"]


class UserError(Exception):
    """Base class of the errors caused by the user's input."""


class ConfigError(UserError, ValueError):
    """Unknown or invalid config key / value, unregistered dataset, unwritable OUTPUT_DIR, missing config file."""


class CheckpointError(UserError, RuntimeError):
    """A weights / checkpoint file that exists but cannot be read (truncated, corrupt, not a checkpoint)."""


class MissingWeightsError(UserError, FileNotFoundError):
    """A weights / checkpoint file that does not exist."""


def is_user_error(exc):
    """True for exceptions that describe bad input: :class:`UserError`, the data layer's ``YTVISFormatError``, the
    frame sources' ``FrameReadError`` and the evaluator's ``YTVISEvalError``."""
    if isinstance(exc, UserError):
        return True
    from ..data import YTVISFormatError
    from ..utils.video import FrameReadError

    types = [YTVISFormatError, FrameReadError]
    try:
        from ..evaluation import YTVISEvalError

        types.append(YTVISEvalError)
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, tuple(types))


def one_line(exc):
    """The message of ``exc`` on one line (KeyError's repr quotes removed). An exception re-raised by a
    DataLoader worker ("Caught X in DataLoader worker process N. Original Traceback ...") gives the original
    message, without the worker's traceback."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    msg = str(msg)
    if msg.startswith("Caught ") and "Original Traceback" in msg:
        last = [ln for ln in msg.strip().splitlines() if ln.strip()][-1]
        name = type(exc).__name__
        for prefix in (f"{type(exc).__module__}.{name}: ", f"{name}: "):
            if prefix in last:
                last = last.split(prefix, 1)[1]
                break
        msg = last
    return " ".join(msg.split())

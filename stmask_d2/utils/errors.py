"""Errors caused by the user's input (config, data, weights, command line, output folder) as opposed to internal
bugs, and the one command-line wrapper every entry point runs under.

:func:`run_cli` prints a user error as ONE line on stderr (``PROG: error: <problem and fix>``) and returns exit
code 2; any other exception (a ``KeyError`` / ``ValueError`` / ``RuntimeError`` of a real bug) keeps its
traceback. ``STMASK_DEBUG=1`` re-raises user errors too, with their traceback.

Code that detects bad input raises a :class:`UserError` subclass at that point (never relies on the wrapper
catching ``KeyError`` / ``ValueError``). This module imports nothing heavy (the evaluation CLI runs without torch).
"""
import os
import sys

__all__ = ["UserError", "ConfigError", "CheckpointError", "MissingWeightsError", "InputError", "MissingFileError",
           "is_user_error", "one_line", "debug_enabled", "report_user_error", "run_cli", "USER_ERROR_EXIT_CODE"]

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """Base class of the errors caused by the user's input."""


class ConfigError(UserError, ValueError):
    """Unknown or invalid config key / value, unregistered dataset, unwritable OUTPUT_DIR, missing config file."""


class CheckpointError(UserError, RuntimeError):
    """A weights / checkpoint file that exists but cannot be read (truncated, corrupt, not a checkpoint)."""


class MissingWeightsError(UserError, FileNotFoundError):
    """A weights / checkpoint file that does not exist."""


class InputError(UserError, ValueError):
    """A bad command-line value or input file content (out-of-range flag, unknown class name, unwritable output)."""


class MissingFileError(UserError, FileNotFoundError):
    """An input file or folder given by the user does not exist."""


# user-error types defined in modules this one must not import (they may need torch / Detectron2): checked only
# when their module is already loaded (an exception of a type whose module is not loaded cannot exist)
_OTHER_USER_ERRORS = (
    ("stmask_d2.data.ytvis", "YTVISFormatError"),
    ("stmask_d2.utils.video", "FrameReadError"),
    ("stmask_d2.evaluation.ytvis_eval", "YTVISEvalError"),
)


def is_user_error(exc):
    """True for exceptions that describe bad input: :class:`UserError`, the data layer's ``YTVISFormatError``, the
    frame sources' ``FrameReadError`` and the evaluator's ``YTVISEvalError``."""
    if isinstance(exc, UserError):
        return True
    types = tuple(getattr(sys.modules[m], name) for m, name in _OTHER_USER_ERRORS
                  if m in sys.modules and hasattr(sys.modules[m], name))
    return bool(types) and isinstance(exc, types)


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
    return " ".join(msg.split()) or type(exc).__name__


def debug_enabled():
    """``STMASK_DEBUG`` is set (and not 0): user errors keep their traceback."""
    return os.environ.get("STMASK_DEBUG", "") not in ("", "0")


def report_user_error(exc, prog=None):
    """Print ``exc`` as the one-line message of a user error on stderr."""
    prefix = f"{prog}: error: " if prog else "error: "
    print(prefix + one_line(exc), file=sys.stderr, flush=True)


def run_cli(main, argv=None, prog=None, interrupted=None):
    """Run ``main(argv)`` as a command line; returns its exit code (``None`` -> 0).

    A user error (:func:`is_user_error`) prints ``PROG: error: MESSAGE`` (``error: MESSAGE`` without ``prog``) as
    one line on stderr and returns 2, unless ``STMASK_DEBUG=1`` (then it is re-raised with its traceback). Every
    other exception propagates unchanged. ``interrupted``: message printed on Ctrl-C (exit code 130); without
    it ``KeyboardInterrupt`` propagates.
    """
    try:
        code = main(argv)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"{prog}: {interrupted}" if prog else interrupted, file=sys.stderr, flush=True)
        return 130
    except Exception as e:
        if debug_enabled() or not is_user_error(e):
            raise
        report_user_error(e, prog)
        return USER_ERROR_EXIT_CODE
    return 0 if code is None else code

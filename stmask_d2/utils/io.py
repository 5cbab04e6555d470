"""Atomic file writing and temporaries: a crash never leaves a truncated file that a later run would read, a
SIGTERM removes the temporaries being written, and the temporaries of a killed run (SIGKILL, power loss) are
removed by the next run writing to the same folder.

Temporaries are hidden files (or folders) beside their target named
``.<target name>.stmask-<host>-<pid>-<random><suffix>``; :func:`remove_stale_temporaries` removes those of this
host whose process no longer exists (never those of a running process, on this or another host).
"""
import os
import re
import shutil
import signal
import socket
import tempfile
import threading

__all__ = ["atomic_write", "make_temp", "temp_prefix", "remove_stale_temporaries", "install_sigterm_handler", "publish"]

_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"
_TEMP_RE = re.compile(r"^\..*\.stmask-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+(\.[A-Za-z0-9]+)?$")


def temp_prefix(path):
    """Prefix (for ``tempfile.mkstemp`` / ``mkdtemp``) of the temporaries of ``path`` made by this process."""
    return "." + os.path.basename(os.path.normpath(path)) + f".stmask-{_HOST}-{os.getpid()}-"


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists (another user's process)
        return True
    return True


def remove_stale_temporaries(folder):
    """Remove the temporaries in ``folder`` left by processes of this host that no longer run; returns their
    names. Errors (a folder that cannot be listed, a file removed meanwhile) are ignored."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.match(name)
        if not m or m.group("host") != _HOST or _alive(int(m.group("pid"))):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(name)
        except OSError:
            pass
    return removed


def publish(tmp, path):
    """Rename a finished temporary onto ``path`` with the usual permissions (mkstemp creates files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def make_temp(path, suffix=".tmp", folder=False):
    """Create the temporary (a file, or a folder with ``folder=True``) that will be published onto ``path``, in
    the folder of ``path`` (which must exist); returns its path. ``suffix`` keeps an extension a writer needs
    (OpenCV picks the container from it). Remove it on failure; :func:`publish` it on success."""
    parent = os.path.dirname(os.path.abspath(path))
    if folder:
        return tempfile.mkdtemp(prefix=temp_prefix(path), dir=parent)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=parent)
    os.close(fd)
    return tmp


def atomic_write(path, write_fn, mode="wb"):
    """Write ``path`` through ``write_fn(file_object)`` into a temporary file in the same folder, fsync, then
    rename it over ``path``; the temporary is removed if anything fails (SIGTERM too, once
    :func:`install_sigterm_handler` is installed). The result has the usual permissions (those of a new file under
    the current umask), not mkstemp's 0600.

    Args:
        path: destination file; its folder is created if missing.
        write_fn: callable receiving the open temporary file.
        mode: "wb" or "w".
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = make_temp(path)
    try:
        with open(tmp, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Terminated(SystemExit):
    """Raised in the main thread by the SIGTERM handler of :func:`install_sigterm_handler` (exit code 143)."""


def _on_sigterm(signum, frame):
    raise Terminated(128 + signum)


def install_sigterm_handler():
    """Make SIGTERM raise :class:`Terminated` (a ``SystemExit``, code 143) in the main thread, so that the
    ``except BaseException`` / ``finally`` clean-ups remove the temporaries being written. Only installed when
    SIGTERM has its default action (an application's own handler is kept); returns True when installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return signal.getsignal(signal.SIGTERM) is _on_sigterm
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True

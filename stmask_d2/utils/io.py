"""Atomic file writing: a crash never leaves a truncated file that a later run would read."""
import os
import tempfile

__all__ = ["atomic_write"]


def atomic_write(path, write_fn, mode="wb"):
    """Write ``path`` through ``write_fn(file_object)`` into a temporary file in the same folder, fsync, then
    rename it over ``path``; the temporary is removed if anything fails. The result has the usual permissions
    (those of a new file under the current umask), not mkstemp's 0600.

    Args:
        path: destination file; its folder is created if missing.
        write_fn: callable receiving the open temporary file.
        mode: "wb" or "w".
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

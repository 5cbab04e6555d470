"""Reading a JSON file with one clear line on a missing file, non-UTF-8 bytes or invalid JSON (standard library
only, so that ``python -m stmask_d2.evaluation`` stays light)."""
import json
import os

__all__ = ["read_json", "parse_json_bytes"]


def _path_manager(path):
    """Detectron2's PathManager for URIs ("detectron2://", "https://", ...); None for local paths, which are read
    with ``open`` so that the evaluation CLI does not import torch / Detectron2."""
    if "://" not in str(path):
        return None
    from detectron2.utils.file_io import PathManager

    return PathManager


def read_json(path, what="JSON", error=ValueError, missing_error=None, missing_hint=""):
    """The parsed content of the UTF-8 (BOM allowed) JSON file ``path`` (a local path or an iopath URI).

    Raises ``error`` (the caller's one-line error class) with a message naming ``what`` and ``path`` when the file
    is not UTF-8 (byte, offset, line) or is not valid JSON (message, line, column), and ``missing_error`` (default
    ``error``) when it does not exist (``missing_hint`` appended, e.g. where such files live)."""
    pm = _path_manager(path)
    path = os.fspath(path) if pm is None else path
    if not (os.path.isfile(path) if pm is None else pm.exists(path)):
        msg = f"{what} file {path!r} does not exist." + (f" {missing_hint}" if missing_hint else "")
        raise (missing_error or error)(msg)
    with (open(path, "rb") if pm is None else pm.open(path, "rb")) as f:
        raw = f.read()
    return parse_json_bytes(raw, f"{what} file {path}", error)


def parse_json_bytes(raw, where, error=ValueError, hint=""):
    """Parse ``raw``, the bytes of a JSON file (UTF-8, with or without a byte-order mark).

    Args:
        raw (bytes): the file's content.
        where (str): how the messages name the file (e.g. its path).
        error (type): the exception raised on bad content (a ``ValueError`` subclass).
        hint (str): appended to the "not valid JSON" message (e.g. "; the file is probably truncated.").
    Raises:
        error: "<where>: not UTF-8 text (byte 0x.. at offset N, line L); ..." or "<where>: not valid JSON (<what>
            at line L, column C)<hint>", one line each.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise error(
            f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}, line {line}); JSON must "
            f"be UTF-8: re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}){hint}") from None

"""Parse a JSON file's bytes with one clear error line (the YouTube-VIS loader and the evaluator share it).

Standard library only, so that ``python -m stmask_d2.evaluation`` stays light.
"""
import json

__all__ = ["parse_json_bytes"]


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

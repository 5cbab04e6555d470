"""Restricted unpickling of Detectron2 / Caffe2 model-zoo ``.pkl`` weights: nothing but data is ever built.

A pickle can name any importable callable and have it called while loading (``os.system`` included), so a plain
``pickle.load`` of a downloaded ``.pkl`` runs whatever code its author put in. :func:`safe_load_pickle` admits only
the globals needed to rebuild plain data: containers (dict, list, tuple, set, OrderedDict), numbers, strings,
bytes and numpy arrays / dtypes / scalars. Any other global raises :class:`UnsafePickleError` (an
``UnpicklingError``) naming it; nothing of it is imported or called.
"""
import pickle

__all__ = ["safe_load_pickle", "UnsafePickleError", "ALLOWED_GLOBALS"]

# (module, name) pairs a model-zoo .pkl may reference. numpy moved ``core`` to ``_core`` in 2.0; both spellings
# occur in files written by different numpy versions.
ALLOWED_GLOBALS = frozenset(
    [("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
     ("builtins", "bytearray"), ("_codecs", "encode")]  # _codecs.encode: how Python 3 pickles bytes at protocol 2
    + [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [(m, n) for m in ("numpy", "numpy.dtypes") for n in (
        "Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType", "Int8DType",
        "UInt64DType", "UInt32DType", "UInt16DType", "UInt8DType", "BoolDType", "Complex64DType",
        "Complex128DType", "StrDType", "BytesDType")]
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside :data:`ALLOWED_GLOBALS` (code, not data)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(f"it references {module}.{name}, which is not weight data")

    def persistent_load(self, pid):
        raise UnsafePickleError("it uses persistent ids (not a plain data pickle)")


def safe_load_pickle(file_obj, encoding="latin1"):
    """``pickle.load(file_obj, encoding=encoding)`` restricted to containers, numbers, strings and numpy arrays.

    Raises:
        UnsafePickleError: the pickle references anything else (the message names it).
        pickle.UnpicklingError / EOFError / ValueError: a truncated or corrupt pickle.
    """
    return _RestrictedUnpickler(file_obj, encoding=encoding).load()

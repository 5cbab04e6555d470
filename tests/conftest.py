import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Marked tests (markers registered in pytest.ini):
#   @pytest.mark.slow  subprocess launches / training runs / DDP (seconds to minutes each); `make test-fast` and
#                      `pytest -m "not slow"` leave them out, `make test` and CI run them.
#   @pytest.mark.cuda  needs a CUDA device; skipped automatically where torch.cuda.is_available() is False.
requires_cuda = pytest.mark.cuda  # kept for existing imports; same as @pytest.mark.cuda


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _remove_handlers_on_closed_streams():
    import logging

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                if getattr(getattr(h, "stream", None), "closed", False):
                    lg.removeHandler(h)


@pytest.fixture(autouse=True)
def _drop_logging_handlers_on_closed_streams():
    """Detectron2's ``setup_logger`` (lru-cached) attaches StreamHandlers to the ``sys.stdout`` of the test that
    first called it; pytest closes that capture stream afterwards, and a later log record would print a
    "Logging error" traceback to stderr. Remove such handlers before and after every test."""
    _remove_handlers_on_closed_streams()
    yield
    _remove_handlers_on_closed_streams()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """(json_file, image_root) of a tiny synthetic YouTube-VIS dataset (4 videos x 4 frames of 64x96), made once per
    test module (``_tiny_setup.make_tiny_dataset``). A module that needs another size defines its own ``tiny_data``."""
    from _tiny_setup import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))

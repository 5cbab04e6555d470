import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


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

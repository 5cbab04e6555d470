"""A DetectionCheckpointer whose files are written atomically and whose load errors are readable."""
import logging
import os
import pickle
import zipfile

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

from ..utils.io import atomic_write

from .errors import CheckpointError, MissingWeightsError

__all__ = ["AtomicDetectionCheckpointer"]

logger = logging.getLogger(__name__)


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic ``save`` / ``last_checkpoint`` and one-line load errors.

    Checkpoints are written to ``<name>.pth.<random>.tmp`` and renamed, and the ``last_checkpoint`` tag is only
    updated after the checkpoint is complete, so a run killed while saving resumes from the previous checkpoint.
    """

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to {}".format(save_file))
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename), mode="w")

    @staticmethod
    def _check_exists(filename):
        if filename and not filename.startswith(("detectron2://", "http://", "https://", "catalog://", "s3://")):
            if not os.path.isfile(filename.split("?")[0]):
                raise MissingWeightsError(
                    f"Weights file '{filename}' does not exist. Check MODEL.WEIGHTS (or the path given to "
                    f"--resume / demo --opts MODEL.WEIGHTS ...)."
                )

    def load(self, path, *args, **kwargs):
        self._check_exists(path)
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._parsed_url_during_load = None  # Detectron2 leaves it set when loading raised

    def _load_file(self, filename):
        self._check_exists(filename)
        try:
            loaded = super()._load_file(filename)
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise CheckpointError(
                f"Weights file '{filename}' could not be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                f"it is truncated or not a checkpoint. Re-download it or point MODEL.WEIGHTS at a valid file."
            ) from e
        if not isinstance(loaded, dict) or not isinstance(loaded.get("model"), dict):
            raise CheckpointError(
                f"Weights file '{filename}' is not a checkpoint (expected a state dict or a dict with a 'model' "
                f"state dict). Point MODEL.WEIGHTS at a file written by train_net.py or a Detectron2 model."
            )
        return loaded

    def has_checkpoint(self):
        # Ignore a tag that points at a missing file (e.g. a run killed before its first save completed).
        if not super().has_checkpoint():
            return False
        last = self.get_checkpoint_file()
        ok = bool(last) and os.path.isfile(last)
        if not ok and comm.is_main_process():
            logger.warning(f"'last_checkpoint' points at a missing file ({last}); starting from MODEL.WEIGHTS.")
        return ok

"""A DetectionCheckpointer whose files are written atomically, whose loading never runs code from the file and
whose load errors are one readable line."""
import logging
import os
import pickle
import re
import zipfile

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from ..utils.io import atomic_write, remove_stale_temporaries
from .errors import CheckpointError, MissingWeightsError
from .safe_pickle import UnsafePickleError, safe_load_pickle

__all__ = ["AtomicDetectionCheckpointer"]

logger = logging.getLogger(__name__)

_REMOTE = ("detectron2://", "http://", "https://", "catalog://", "s3://", "manifold://")
_READ_ERRORS = (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                pickle.UnpicklingError, zipfile.BadZipFile, UnicodeDecodeError)


def _corrupt(filename, why):
    return CheckpointError(
        f"Weights file '{filename}' could not be read ({why}); it is truncated or not a checkpoint. Re-download it "
        f"or point MODEL.WEIGHTS at a valid file."
    )


def _refused_global(e):
    """The global (e.g. "posix.system") that torch's weights_only unpickler refused, or None."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return m.group(1) if m and ("Weights only load" in str(e) or isinstance(e, pickle.UnpicklingError)) else None


def _first_line(e):
    """Short description of a load error: its first sentence, never torch's advice (its weights_only message
    suggests loading the file unsafely, which we never do)."""
    if "Weights only load" in str(e) or "weights_only" in str(e):
        detail = [ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("Unsupported")]
        return f"{type(e).__name__}: not a pickle of tensors" + (f" ({detail[0]})" if detail else "")
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    first = lines[0].split(". ")[0].rstrip(".")
    return f"{type(e).__name__}: {first[:200]}"


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic ``save`` / ``last_checkpoint``, safe loading and one-line errors.

    * Checkpoints are written to a hidden temporary beside the target and renamed; the ``last_checkpoint`` tag is
      only updated after the checkpoint is complete, so a run killed while saving resumes from the previous one.
      Temporaries left by a killed run are removed by the next checkpointer writing to the folder.
    * ``.pth`` / ``.pyth`` files are read with ``torch.load(weights_only=True)``; ``.pkl`` (Detectron2 / Caffe2
      model zoo) with :func:`~stmask_d2.engine.safe_pickle.safe_load_pickle`, which builds nothing but
      containers, numbers, strings and numpy arrays. A file with anything else is refused (:class:`CheckpointError`).
    """

    def __init__(self, model, save_dir="", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        if self.save_dir and self.save_to_disk and os.path.isdir(self.save_dir):
            remove_stale_temporaries(self.save_dir)

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
        if filename and not filename.startswith(_REMOTE):
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

    # ---- reading files: never unpickle arbitrary objects ------------------------------------------------------
    def _torch_load(self, f):
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)

    def _load_pkl(self, filename):
        with PathManager.open(filename, "rb") as f:
            data = safe_load_pickle(f, encoding="latin1")
        if not isinstance(data, dict):
            raise _corrupt(filename, f"a pickle of a {type(data).__name__}, not a dict of weights")
        if "model" in data and "__author__" in data:  # Detectron2 model zoo format
            self.logger.info("Reading a file from '{}'".format(data["__author__"]))
            return data
        if "blobs" in data:  # Caffe2 / Detectron1 detection models
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _load_pyth(self, filename):
        with PathManager.open(filename, "rb") as f:
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        if not isinstance(data, dict) or "model_state" not in data:
            raise _corrupt(filename, "a .pyth file without 'model_state' (not a pycls checkpoint)")
        state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
        return {"model": state, "__author__": "pycls", "matching_heuristics": True}

    def _load_file(self, filename):
        self._check_exists(filename)
        try:
            if os.path.getsize(filename.split("?")[0]) == 0:
                raise _corrupt(filename, "the file is empty")
        except OSError:
            pass  # remote / cached paths: let the loader report
        try:
            if filename.endswith(".pkl"):
                loaded = self._load_pkl(filename)
            elif filename.endswith(".pyth"):
                loaded = self._load_pyth(filename)
            else:
                loaded = super()._load_file(filename)  # .pth: Detectron2's path through self._torch_load
        except CheckpointError:
            raise
        except UnsafePickleError as e:
            raise CheckpointError(
                f"Weights file '{filename}' was refused: {e}. Only containers, numbers, strings and numpy arrays "
                f"are loaded from .pkl files; use a .pth state dict or a model-zoo .pkl of plain arrays."
            ) from e
        except _READ_ERRORS as e:
            if isinstance(e, FileNotFoundError):
                raise
            refused = _refused_global(e)
            if refused:
                raise CheckpointError(
                    f"Weights file '{filename}' was refused: it references {refused}, an object other than tensors "
                    f"and plain data, which is never unpickled (it could run code). Use a checkpoint saved as a "
                    f"state dict (train_net.py writes such files) or convert it where you trust its source."
                ) from None
            raise _corrupt(filename, _first_line(e)) from None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("model"), dict):
            raise CheckpointError(
                f"Weights file '{filename}' is not a checkpoint (expected a state dict or a dict with a 'model' "
                f"state dict). Point MODEL.WEIGHTS at a file written by train_net.py or a Detectron2 model."
            )
        return loaded

    def has_checkpoint(self):
        """Detectron2's check: OUTPUT_DIR has a ``last_checkpoint`` tag. Whether the file it names exists and can
        be read is checked before training by :func:`stmask_d2.engine.check_resume` (a resume that cannot read
        its checkpoint stops with one line instead of starting over)."""
        return super().has_checkpoint()


def _unreadable_reason(path):
    """Cheap check that ``path`` can be a checkpoint (size, torch's zip directory, pickle magic); the reason it
    cannot, or None."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return e.strerror or str(e)
    if size == 0:
        return "the file is empty"
    if path.endswith(".pkl"):
        return None
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"PK":
        try:
            with zipfile.ZipFile(path) as z:
                if not any(n.endswith("data.pkl") for n in z.namelist()):
                    return "a zip file without torch data"
        except zipfile.BadZipFile:
            return "truncated: its zip directory is missing or damaged"
        return None
    if magic[:1] != b"\x80":  # neither torch's zip format nor a (legacy) pickle
        return "not a torch checkpoint"
    return None


def _checkpoints_in(folder):
    return sorted(f for f in os.listdir(folder) if f.startswith("model_") and f.endswith((".pth", ".pkl")))


START_OVER_HINT = "--start-over"


def check_output_dir(output_dir, resume, start_over=False, eval_only=False):
    """Never lose a trained model; called before anything is written to ``output_dir``.

    * ``resume``: the ``last_checkpoint`` tag must name an existing, readable checkpoint; an empty tag, a tag
      naming a missing or unreadable file, or checkpoints without a tag raise one line saying what to do
      (fix the tag, or ``--start-over``). A folder without any checkpoint is a fresh start (Detectron2's
      convention, so the same command can start and restart a job).
    * a new training run (neither ``resume`` nor ``eval_only``) into a folder that holds ``model_final.pth`` or a
      ``last_checkpoint`` tag is refused: pass ``--resume`` to continue it, ``--start-over`` to train again over
      it, or choose another OUTPUT_DIR.
    * ``start_over``: no check (the user asked to ignore the folder's checkpoints; they are overwritten as the
      new run saves its own).

    Raises:
        CheckpointError / ConfigError (user errors, one line).
    """
    from .errors import ConfigError

    if start_over or not output_dir or not os.path.isdir(output_dir):
        return
    tag = os.path.join(output_dir, "last_checkpoint")
    ckpts = _checkpoints_in(output_dir)
    over = (f"or pass {START_OVER_HINT} to ignore the checkpoints in OUTPUT_DIR and train from MODEL.WEIGHTS "
            f"(they are overwritten)")
    if resume:
        if not os.path.isfile(tag):
            if ckpts:
                raise CheckpointError(
                    f"--resume: OUTPUT_DIR '{output_dir}' holds {', '.join(ckpts[-3:])} but no 'last_checkpoint' "
                    f"file; write the name of the checkpoint to resume (e.g. {ckpts[-1]}) into {tag}, {over}."
                )
            return
        try:
            with open(tag) as f:
                name = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"--resume: cannot read {tag} ({e}); write the checkpoint name into it, {over}.")
        found = f" (found: {', '.join(ckpts[-3:])})" if ckpts else " (no checkpoint found there)"
        if not name:
            raise CheckpointError(f"--resume: {tag} is empty{found}; write the name of the checkpoint to resume "
                                  f"into it, {over}.")
        path = os.path.join(output_dir, name)
        if not os.path.isfile(path):
            raise CheckpointError(f"--resume: {tag} names '{name}', which does not exist{found}; write an existing "
                                  f"checkpoint's name into it, {over}.")
        why = _unreadable_reason(path)
        if why:
            raise CheckpointError(f"--resume: checkpoint '{path}' named by last_checkpoint cannot be read ({why}); "
                                  f"it is truncated or not a checkpoint. Write the name of an intact checkpoint "
                                  f"into {tag}, {over}.")
        return
    if eval_only:
        return
    final = os.path.join(output_dir, "model_final.pth")
    if os.path.isfile(final) or os.path.isfile(tag):
        what = "a trained model (model_final.pth)" if os.path.isfile(final) else "checkpoints of an earlier run"
        raise ConfigError(
            f"OUTPUT_DIR '{output_dir}' already holds {what}; pass --resume to continue that run, "
            f"{START_OVER_HINT} to train again over it (its checkpoints are overwritten), or choose another "
            f"OUTPUT_DIR."
        )


def check_weights_file(path):
    """Read ``path`` (MODEL.WEIGHTS) the way the checkpointer will, before anything is written: missing, empty,
    truncated, unsafe (.pkl with code) or non-checkpoint files raise the checkpointer's one-line user errors.
    Remote URLs are left to the checkpointer."""
    from urllib.parse import urlparse

    if not path or path.startswith(_REMOTE):
        return
    ck = AtomicDetectionCheckpointer(torch.nn.Module())
    parsed = urlparse(path)
    ck._parsed_url_during_load = parsed
    try:
        ck._load_file(parsed._replace(query="").geturl())
    finally:
        ck._parsed_url_during_load = None

"""The one config path of every entry point: :func:`get_stmask_cfg` (config file + ``KEY VALUE`` opts + the
entry point's own overrides) and, for the argparse entry points, :func:`build_cfg` / :func:`setup_cfg` (Detectron2's
``default_setup`` conventions: logging, seeds, config dump in OUTPUT_DIR).

Bad input raises :class:`~stmask_d2.utils.errors.ConfigError` with one line: a missing config file, a misspelt key
(named), a value of the wrong type, an odd-length opts list, a value out of range (``validate``) and, with
``check_run``, an unregistered dataset, a CUDA device on a machine without one or an OUTPUT_DIR that cannot be
written.
"""
import logging
import os
import tempfile

from ..utils.errors import ConfigError

__all__ = ["REPO_ROOT", "get_stmask_cfg", "build_cfg", "setup_cfg"]

logger = logging.getLogger(__name__)

# The repository (configs/, datasets/, output/ of the tools resolve against it).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config_msg(e):
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    msg = " ".join(str(msg).split())
    if "Non-existent" in msg:  # yacs: KeyError from a file, AssertionError from a KEY VALUE list
        msg += " (misspelt? every key is listed in stmask_d2/config.py and detectron2/config/defaults.py)"
    return msg


def _as_list(overrides):
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [x for kv in overrides.items() for x in kv]
    return list(overrides)


def get_stmask_cfg(config_file=None, opts=(), overrides=(), *, validate=True, training=False, check_run=False,
                   world_size=1, device_fallback=False, freeze=True):
    """A Detectron2 config with the STMask keys: defaults, then ``config_file`` (None: none), then ``opts`` (the
    user's ``KEY VALUE`` list), then ``overrides`` (the entry point's own settings, a ``KEY VALUE`` list or a
    ``{KEY: VALUE}`` dict; values may be Python objects).

    Args:
        validate: check the values' ranges (``stmask_d2.config_check.validate_config``; ``training`` adds the
            solver keys).
        check_run: also check what a training / evaluation run needs: the DATASETS are registered, the CUDA device
            exists, OUTPUT_DIR can be written, SOLVER.IMS_PER_BATCH is divisible by ``world_size``.
        device_fallback: a CUDA MODEL.DEVICE on a machine without CUDA runs on the CPU (with a warning) instead
            of being an error.
        freeze: return a frozen config.

    Raises:
        ConfigError: one line naming the problem and the fix.
    """
    import torch
    import yaml
    from detectron2.config import get_cfg

    from ..config import add_stmask_config

    cfg = get_cfg()
    add_stmask_config(cfg)
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"Config file '{config_file}' does not exist (see configs/).")
        try:
            cfg.merge_from_file(config_file)
        except (KeyError, ValueError, AssertionError, TypeError, OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{config_file}: {_config_msg(e)}") from e
    for where, pairs in (("command line", list(opts or [])), ("overrides", _as_list(overrides))):
        try:
            cfg.merge_from_list(pairs)
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"{where}: {_config_msg(e)}") from e
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        if device_fallback:
            logger.warning(f"MODEL.DEVICE={cfg.MODEL.DEVICE} but CUDA is not available: running on the CPU.")
            cfg.MODEL.DEVICE = "cpu"
        elif check_run:
            raise ConfigError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but no CUDA device is available; add "
                              f"'MODEL.DEVICE cpu' to the command line.")
    if check_run:
        _check_datasets_registered(cfg, training)
    if validate or check_run:
        from ..config_check import validate_config

        validate_config(cfg, training=training)
    if check_run:
        _check_output_dir(cfg)
        if training and cfg.SOLVER.IMS_PER_BATCH % max(int(world_size), 1) != 0:
            raise ConfigError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} must be divisible by the number of "
                              f"processes ({world_size}).")
    if freeze:
        cfg.freeze()
    return cfg


def _check_datasets_registered(cfg, training):
    from detectron2.data import DatasetCatalog

    keys = ([("DATASETS.TRAIN", n) for n in cfg.DATASETS.TRAIN] if training else []) + [
        ("DATASETS.TEST", n) for n in cfg.DATASETS.TEST
    ]
    registered = set(DatasetCatalog.list())
    for key, name in keys:
        if name not in registered:
            raise ConfigError(f"{key}: dataset {name!r} is not registered; register it with --register-ytvis "
                              f"{name} JSON IMAGE_ROOT or use a predefined split (datasets/README.md).")


def _check_output_dir(cfg):
    from detectron2.utils import comm

    if cfg.OUTPUT_DIR and comm.is_main_process():
        _check_writable(cfg.OUTPUT_DIR)


def _check_writable(folder):
    """OUTPUT_DIR (or, when it does not exist yet, its nearest existing ancestor, so that nothing is created
    before every check passed) accepts a new file."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        if not os.path.isdir(probe):
            raise NotADirectoryError(20, f"{probe!r} is not a folder")
        fd, tmp = tempfile.mkstemp(prefix=".write_test.", dir=probe)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise ConfigError(f"OUTPUT_DIR {folder!r} cannot be written ({e.strerror or e}).") from e


def build_cfg(args, freeze=True, check=True, overrides=(), **kwargs):
    """:func:`get_stmask_cfg` of an argparse namespace (``config_file``, ``opts``, and when present
    ``register_ytvis``, ``eval_only``, ``num_gpus``, ``num_machines``), after registering the ``--register-ytvis``
    datasets; no side effect on logging or seeds. ``check``: the run checks of a training / evaluation
    (``check_run``); other keyword arguments go to :func:`get_stmask_cfg`."""
    if getattr(args, "register_ytvis", None):
        from ..data import register_ytvis_from_args

        register_ytvis_from_args(args)  # bad ones: one-line user errors
    eval_only = bool(getattr(args, "eval_only", False))
    world = int(getattr(args, "num_gpus", 1) or 1) * int(getattr(args, "num_machines", 1) or 1)
    kwargs.setdefault("training", not eval_only)
    kwargs.setdefault("validate", check)
    return get_stmask_cfg(getattr(args, "config_file", None), getattr(args, "opts", None) or [], overrides,
                          check_run=check, world_size=world, freeze=freeze, **kwargs)


def setup_cfg(args, freeze=True):
    """:func:`build_cfg`, then Detectron2's ``default_setup`` (logging, seeds, config dump) and the stmask_d2
    logger. Raises :class:`ConfigError` (one line) for bad config input, see :func:`build_cfg`."""
    from detectron2.engine import default_setup
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    cfg = build_cfg(args, freeze=freeze)
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="stmask_d2")
    return cfg

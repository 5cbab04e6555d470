"""YouTube-VIS / OVIS / custom dataset registration and mappers. Importing registers the builtin splits."""
from . import builtin  # noqa: F401
from .build import (  # noqa: F401
    YTVISKeyFrameDataset,
    build_ytvis_test_loader,
    build_ytvis_train_loader,
    get_ytvis_key_frame_dicts,
)
from .builtin import add_register_ytvis_argument, register_ytvis_from_args  # noqa: F401
from .dataset_mapper import (  # noqa: F401
    BadFrameError,
    YTVISPairDatasetMapper,
    YTVISTestDatasetMapper,
    sample_reference_frame,
)
from .ytvis import YTVISFormatError, check_ytvis_files, load_ytvis_json, register_ytvis_instances  # noqa: F401
from .frames import register_ytvis_frames, ytvis_to_frame_dicts  # noqa: F401

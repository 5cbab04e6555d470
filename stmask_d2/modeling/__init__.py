"""STMask model parts. Importing this package registers the backbone, anchor generator, heads and meta-arch."""
from . import anchor_generator, backbone, heads, meta_arch  # noqa: F401
from .build import build_model  # noqa: F401

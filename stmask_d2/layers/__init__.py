"""Pure tensor ops shared by the rest of stmask_d2: no config, no registry, nothing else of ours imported."""
from .deform_conv import DeformConv2d  # noqa: F401

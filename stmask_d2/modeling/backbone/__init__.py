from . import fpn, resnet_dcn  # noqa: F401

"""Online tracking of STMask (imports stmask_d2.layers only)."""
from .tracker import OnlineTracker
from .video_results import VideoResults

__all__ = ["OnlineTracker", "VideoResults"]

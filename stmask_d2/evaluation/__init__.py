"""YouTube-VIS evaluation."""

"""Per-video accumulation of per-track, per-frame outputs into video-level results (docs/METHOD.md §8, §11).

Only compact RLE dicts are stored (never dense masks), so memory grows with the number of emitted
(track, frame) pairs, not with the number of pixels.
"""
from collections import Counter

__all__ = ["VideoResults"]


def _to_list(x):
    return x.tolist() if hasattr(x, "tolist") else list(x)


class VideoResults:
    """
    Accumulator for one video. Usage::

        acc = VideoResults()
        for t, frame_out in enumerate(...):
            acc.add_frame(t, ids, scores, classes, rles)
        tracks = acc.finalize(video_length, max_tracks=100)

    Video-level aggregation as released (``results2json_videoseg``): score = mean of the per-frame scores over
    the frames where the track was emitted; category = majority vote of the per-frame classes (ties -> smaller
    id, like ``np.bincount(...).argmax()``); segmentations = one entry per frame, RLE where emitted, None elsewhere.
    """

    def __init__(self):
        self._tracks = {}  # track_id -> {"frames": [...], "scores": [...], "classes": [...], "rles": [...]}

    def __len__(self):
        return len(self._tracks)

    def reset(self):
        self._tracks = {}

    def add_frame(self, frame_idx, track_ids, scores, classes, rles):
        """
        Args:
            frame_idx (int): index of the frame in the video.
            track_ids, scores, classes: sequences / 1-D tensors of length K (one per emitted track).
            rles (list[dict]): K RLE dicts (pycocotools format, ``counts`` str, ``size`` [H0, W0]).
        """
        track_ids, scores, classes = _to_list(track_ids), _to_list(scores), _to_list(classes)
        assert len(track_ids) == len(scores) == len(classes) == len(rles), (
            "add_frame needs one score, class and RLE per track id; got "
            f"{len(track_ids)}, {len(scores)}, {len(classes)}, {len(rles)}"
        )
        frame_idx = int(frame_idx)
        for tid, s, c, rle in zip(track_ids, scores, classes, rles):
            rec = self._tracks.setdefault(int(tid), {"frames": [], "scores": [], "classes": [], "rles": []})
            rec["frames"].append(frame_idx)
            rec["scores"].append(float(s))
            rec["classes"].append(int(c))
            rec["rles"].append(rle)

    def finalize(self, video_length, max_tracks=None, order="score"):
        """
        Args:
            video_length (int): number of frames of the video (length of every ``segmentations`` list).
            max_tracks (int or None): keep the best-scoring tracks only (None or <= 0: keep all).
            order (str): "score": by descending score (ties: smaller track id first); "first_emitted": by the
                frame of first emission, then track id (the released results.json order).
        Returns:
            list[dict]: ``{"track_id": int, "score": float, "category_id": int, "segmentations": [RLE | None] *
            video_length}`` in ``order``.
        """
        out = []
        for tid, rec in self._tracks.items():
            segs = [None] * int(video_length)
            for f, rle in zip(rec["frames"], rec["rles"]):
                assert 0 <= f < video_length, f"frame index {f} outside a video of {video_length} frames"
                segs[f] = rle
            counts = Counter(rec["classes"])
            category = min(counts, key=lambda c: (-counts[c], c))
            out.append(
                {
                    "track_id": tid,
                    "score": sum(rec["scores"]) / len(rec["scores"]),
                    "category_id": category,
                    "segmentations": segs,
                }
            )
        out.sort(key=lambda d: (-d["score"], d["track_id"]))
        if max_tracks is not None and max_tracks > 0:
            out = out[:max_tracks]
        if order == "first_emitted":
            first = {tid: min(rec["frames"]) for tid, rec in self._tracks.items()}
            out.sort(key=lambda d: (first[d["track_id"]], d["track_id"]))
        elif order != "score":
            raise ValueError(f"MODEL.STMASK.TEST.RESULTS_ORDER must be 'score' or 'first_emitted', got {order!r}")
        return out

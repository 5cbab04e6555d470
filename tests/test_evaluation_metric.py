"""YouTube-VIS AP/AR: hand-derived cases and a randomized cross-check against a deliberately simple reference.

The reference below (`_reference_eval`) is written from docs/YTVIS_FORMAT.md with plain loops and per-frame
mask decoding; the fast evaluator must agree with it to 1e-4 on every case.
"""
import copy

import numpy as np
import pytest
from pycocotools import mask as mask_util

from stmask_d2.evaluation.ytvis_eval import YTVISEvalError, evaluate_ytvis, load_ytvis_results

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")


# --------------------------------------------------------------------------------------------------- helpers
def rle(m):
    r = mask_util.encode(np.asfortranarray(np.asarray(m, dtype=np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def first_pixels(n, h=10, w=10):
    """Mask with the first n pixels set (row-major)."""
    m = np.zeros(h * w, np.uint8)
    m[:n] = 1
    return m.reshape(h, w)


def make_gt(videos, anns, n_cats=2):
    """videos: [(id, h, w, length)], anns: [(id, video_id, cat, [masks or None])]."""
    return {
        "videos": [
            {"id": v, "height": h, "width": w, "length": n, "file_names": [f"v{v}/{t:05d}.jpg" for t in range(n)]}
            for v, h, w, n in videos
        ],
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)],
        "annotations": [
            {
                "id": i,
                "video_id": v,
                "category_id": c,
                "iscrowd": 0,
                "segmentations": [None if m is None else rle(m) for m in ms],
                "areas": [None if m is None else float(np.sum(m)) for m in ms],
            }
            for i, v, c, ms in anns
        ],
    }


def res_entry(video_id, cat, score, masks):
    return {"video_id": video_id, "category_id": cat, "score": score,
            "segmentations": [None if m is None else rle(m) for m in masks]}


def close(stats, expected):
    for k, v in expected.items():
        assert stats[k] == pytest.approx(v, abs=1e-9), (k, stats[k], v)


# --------------------------------------------------------------------------------------------------- hand cases
def test_perfect_match_is_one():
    a, b = first_pixels(30), first_pixels(70)
    gt = make_gt([(1, 10, 10, 3), (2, 10, 10, 3)],
                 [(1, 1, 1, [a, None, b]), (2, 1, 2, [b, b, None]), (3, 2, 1, [None, a, a])])
    res = [res_entry(1, 1, 0.9, [a, None, b]), res_entry(1, 2, 0.8, [b, b, None]), res_entry(2, 1, 0.7, [None, a, a])]
    # every GT matched at IoU 1 by its own dt, no FP: precision 1 at every recall point; all areas < 128^2 -> "small"
    close(evaluate_ytvis(gt, res), dict(AP=1, AP50=1, AP75=1, APs=1, APm=-1, APl=-1, AR1=1, AR10=1))


def test_iou_thresholds_and_null_rules():
    # frame 0: gt 50 px, dt its first 40 px -> I 40, U 50; frame 1: gt None, dt 5 px -> U += 5;
    # frame 2: gt 5 px, dt empty RLE (acts like None) -> U += 5; frame 3: both None -> nothing.
    # video IoU = 40 / 60 = 0.667: passes 0.50, 0.55, 0.60, 0.65 (4 of 10 thresholds), fails 0.70+.
    # Single GT, single dt: precision 1 at all recall points where matched -> AP = 4/10, AP50 = 1, AP75 = 0;
    # recall is 1 at 4 thresholds, 0 at 6 -> AR1 = AR10 = 0.4. (Ignoring the null frames would give 40/50 = 0.8.)
    empty = np.zeros((10, 10), np.uint8)
    gt = make_gt([(1, 10, 10, 4)], [(1, 1, 1, [first_pixels(50), None, first_pixels(5), None])])
    res = [res_entry(1, 1, 0.5, [first_pixels(40), first_pixels(5), empty, None])]
    close(evaluate_ytvis(gt, res), dict(AP=0.4, AP50=1, AP75=0, APs=0.4, AR1=0.4, AR10=0.4))


def test_union_zero_gives_iou_zero():
    # GT present only in frame 0, dt only in frame 1 -> I = 0 -> IoU 0 -> AP 0 (GT missed, dt FP)
    gt = make_gt([(1, 10, 10, 2)], [(1, 1, 1, [first_pixels(10), None])])
    res = [res_entry(1, 1, 0.5, [None, first_pixels(10)])]
    close(evaluate_ytvis(gt, res), dict(AP=0, AP50=0, AR10=0))


def test_area_ranges():
    # 300x300 frames. video 1: small GT (100 px), video 2: medium GT (100x200 = 20000 px, in [128^2, 256^2]),
    # video 3: large GT (250x280 = 70000 px > 256^2). Perfect dts (score 0.9) for small and large, none for medium,
    # plus an FP in video 1 with score 0.95 covering a large 70000 px region away from the small GT.
    H = W = 300
    def box(y0, y1, x0, x1):
        m = np.zeros((H, W), np.uint8); m[y0:y1, x0:x1] = 1; return m
    small, medium, large = box(0, 10, 0, 10), box(0, 100, 0, 200), box(0, 250, 0, 280)
    fp = box(20, 270, 20, 300)  # 250 x 280 = 70000 px, does not overlap `small`
    gt = make_gt([(1, H, W, 1), (2, H, W, 1), (3, H, W, 1)],
                 [(1, 1, 1, [small]), (2, 2, 1, [medium]), (3, 3, 1, [large])], n_cats=1)
    res = [res_entry(1, 1, 0.95, [fp]), res_entry(1, 1, 0.9, [small]), res_entry(3, 1, 0.9, [large])]
    # APs: only the small GT counts; the large FP is unmatched and outside [0, 128^2] -> ignored -> APs = 1.
    # APm: the medium GT is never detected -> 0 (the other dts are out of range and unmatched -> ignored).
    # APl: ranked FP(0.95), TP(0.9): precision after TP = 1/2 at recall 1 -> envelope 0.5 everywhere -> 0.5.
    # AP (all): FP, TP(video 1), TP(video 3) -> precision 0, 1/2, 2/3 at recall 0, 1/3, 2/3; envelope 2/3 for
    # recall points 0.00 .. 0.66 (67 of 101) and 0 above -> AP = 67/101 * 2/3.
    # AR1: per (video, category) top-1 -> video 1 keeps only the FP -> recall 1/3; AR10: 2/3.
    close(evaluate_ytvis(gt, res),
          dict(AP=67 / 101 * 2 / 3, AP50=67 / 101 * 2 / 3, APs=1, APm=0, APl=0.5, AR1=1 / 3, AR10=2 / 3))


def test_max_dets_per_video_and_category():
    # one GT (first 10 px of frame row 0); FPs = 1 px masks at pixel 99 (never overlap); TP score 0.5 lowest.
    fp_mask = np.zeros((10, 10), np.uint8); fp_mask[9, 9] = 1
    gt = make_gt([(1, 10, 10, 1)], [(1, 1, 1, [first_pixels(10)])], n_cats=2)
    tp = res_entry(1, 1, 0.5, [first_pixels(10)])
    fps = [res_entry(1, 1, 1.0, [fp_mask]) for _ in range(99)]
    other_cat = [res_entry(1, 2, 1.0, [fp_mask]) for _ in range(5)]  # another category: not in the same cut
    # 99 FPs + TP = 100 dts: the TP is kept at rank 100 -> precision 1/100 at recall 1 -> AP = 0.01; AR10 = 0.
    # Category 2 has no GT -> -1 and excluded.
    close(evaluate_ytvis(gt, fps + [tp] + other_cat), dict(AP=0.01, AP50=0.01, AR1=0, AR10=0))
    # 100 FPs + TP = 101 dts: cut to the top 100 before matching -> the TP is dropped -> AP = 0.
    close(evaluate_ytvis(gt, fps + [res_entry(1, 1, 1.0, [fp_mask]), tp]), dict(AP=0, AP50=0))


def test_score_ties_follow_results_order():
    # one video, two GTs of the same category; d1 matches g1, d2 matches nothing, both score 0.5.
    g1, g2 = first_pixels(20), first_pixels(100)[::-1] * 0
    g2 = np.zeros((10, 10), np.uint8); g2[5:, :] = 1
    fp = np.zeros((10, 10), np.uint8); fp[3, :] = 1  # overlaps neither
    gt = make_gt([(1, 10, 10, 1)], [(1, 1, 1, [g1]), (2, 1, 1, [g2])], n_cats=1)
    d1, d2 = res_entry(1, 1, 0.5, [g1]), res_entry(1, 1, 0.5, [fp])
    # d1 first: precision 1, 1/2 at recall 1/2 -> envelope 1 for recall 0 .. 0.50 (51 points) -> AP = 51/101.
    close(evaluate_ytvis(gt, [d1, d2]), dict(AP=51 / 101))
    # d2 first: precision 0, 1/2 -> envelope 1/2 for 51 points -> AP = 51/101/2.
    close(evaluate_ytvis(gt, [d2, d1]), dict(AP=51 / 101 / 2))


def test_ties_across_videos_follow_video_id_order():
    # video 1: GT + TP(0.5); video 2: GT + FP(0.5). Sorted video ids -> TP first -> AP = 51/101, whatever the
    # order of the entries in the results list.
    a = first_pixels(20)
    fp = np.zeros((10, 10), np.uint8); fp[9, :] = 1
    gt = make_gt([(2, 10, 10, 1), (1, 10, 10, 1)], [(1, 1, 1, [a]), (2, 2, 1, [a])], n_cats=1)
    res = [res_entry(2, 1, 0.5, [fp]), res_entry(1, 1, 0.5, [a])]
    close(evaluate_ytvis(gt, res), dict(AP=51 / 101))


def test_categories_without_gt_and_videos_without_annotations():
    a = first_pixels(20)
    gt = make_gt([(1, 10, 10, 1), (2, 10, 10, 1)], [(1, 1, 1, [a])], n_cats=3)
    # category 3 has no GT anywhere: its (high-scoring) dts cost nothing -> still perfect
    res = [res_entry(1, 1, 0.5, [a]), res_entry(1, 3, 0.99, [a]), res_entry(2, 3, 0.99, [a])]
    stats, det = evaluate_ytvis(gt, res, return_details=True)
    close(stats, dict(AP=1, AR10=1))
    assert (det["precision"][:, :, 1:] == -1).all()  # categories 2 and 3: -1
    # video 2 has no annotations, but a category-1 dt there is an FP: FP(0.9) then TP(0.5) -> envelope 1/2 -> 0.5
    close(evaluate_ytvis(gt, res + [res_entry(2, 1, 0.9, [a])]), dict(AP=0.5))


def test_empty_results(caplog):
    gt = make_gt([(1, 10, 10, 1)], [(1, 1, 1, [first_pixels(20)])])
    close(evaluate_ytvis(gt, []), dict(AP=0, AP50=0, AP75=0, APs=0, APm=-1, APl=-1, AR1=0, AR10=0))
    assert "empty" in caplog.text


def test_validation_errors():
    a = first_pixels(20)
    gt = make_gt([(1, 10, 10, 2)], [(1, 1, 1, [a, a])])
    with pytest.raises(YTVISEvalError, match="video_id 7"):
        load_ytvis_results([res_entry(7, 1, 0.5, [a, a])], gt)
    with pytest.raises(YTVISEvalError, match=r"results\[1\].*2 frames"):
        load_ytvis_results([res_entry(1, 1, 0.5, [a, a]), res_entry(1, 1, 0.5, [a])], gt)
    with pytest.raises(YTVISEvalError, match="size"):
        load_ytvis_results([res_entry(1, 1, 0.5, [a, np.zeros((5, 10))])], gt)
    with pytest.raises(YTVISEvalError, match=r"results\[0\].*score"):
        load_ytvis_results([{"video_id": 1, "category_id": 1, "segmentations": [None, None]}], gt)
    with pytest.raises(YTVISEvalError, match="list"):
        load_ytvis_results({"video_id": 1}, gt)


def test_lenient_truncates_like_zip():
    # dt lists 1 frame for a 2-frame video: lenient -> IoU over frame 0 only = 1.0; strict -> error
    a = first_pixels(20)
    gt = make_gt([(1, 10, 10, 2)], [(1, 1, 1, [a, first_pixels(50)])])
    res = [res_entry(1, 1, 0.5, [a])]
    with pytest.raises(YTVISEvalError):
        evaluate_ytvis(gt, res)
    close(evaluate_ytvis(gt, res, lenient=True), dict(AP=1))


# --------------------------------------------------------------------------------------------------- reference
def _reference_eval(gt, results):
    """Plain-loop YouTube-VIS AP/AR (docs/YTVIS_FORMAT.md), decoding every frame."""
    videos = {v["id"]: v for v in gt["videos"]}
    vid_ids = sorted(videos)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    iou_thrs = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)
    area_rngs = [(0, 1e10), (0, 128 ** 2), (128 ** 2, 256 ** 2), (256 ** 2, 1e10)]
    max_dets = [1, 10, 100]

    def dec(seg):
        return None if not seg else mask_util.decode(seg).astype(bool)

    def video_iou(dsegs, gsegs):
        inter = union = 0
        for d, g in zip(dsegs, gsegs):
            dm, gm = dec(d), dec(g)
            if dm is not None and gm is not None:
                inter += int((dm & gm).sum()); union += int((dm | gm).sum())
            elif gm is not None:
                union += int(gm.sum())
            elif dm is not None:
                union += int(dm.sum())
        return inter / union if union > 0 else 0.0

    def mean_truthy(xs):
        xs = [x for x in xs if x]
        return float(np.mean(xs)) if xs else 0.0

    gts = [dict(g, avg_area=mean_truthy(g["areas"])) for g in gt["annotations"]]
    dts = []
    for i, r in enumerate(results):
        if r["category_id"] in cat_ids:
            areas = [int(dec(s).sum()) if s else None for s in r["segmentations"]]
            dts.append(dict(r, id=i + 1, avg_area=mean_truthy(areas)))

    T, R, K, A, M = len(iou_thrs), len(rec_thrs), len(cat_ids), len(area_rngs), len(max_dets)
    precision = -np.ones((T, R, K, A, M)); recall = -np.ones((T, K, A, M))
    for k, cat in enumerate(cat_ids):
        per_vid = {}
        for v in vid_ids:
            g = [x for x in gts if x["video_id"] == v and x["category_id"] == cat]
            d = [x for x in dts if x["video_id"] == v and x["category_id"] == cat]
            d = [d[i] for i in np.argsort([-x["score"] for x in d], kind="mergesort")][:100]
            ious = [[video_iou(x["segmentations"], y["segmentations"]) for y in g] for x in d]
            per_vid[v] = (g, d, ious)
        for a, (lo, hi) in enumerate(area_rngs):
            for m, md in enumerate(max_dets):
                rows = []  # (score, matched, ignored) for every thr
                npig = 0
                any_entry = False
                for v in vid_ids:
                    g, d, ious = per_vid[v]
                    if not g and not d:
                        continue
                    any_entry = True
                    gig = [1 if (y["iscrowd"] or y["avg_area"] < lo or y["avg_area"] > hi) else 0 for y in g]
                    npig += gig.count(0)
                    order = sorted(range(len(g)), key=lambda j: gig[j])
                    res_v = [[None] * len(d) for _ in range(T)]
                    for t, thr in enumerate(iou_thrs):
                        taken = set()
                        for i, x in enumerate(d):
                            best, mm = min(thr, 1 - 1e-10), -1
                            for j in order:
                                if j in taken and not g[j]["iscrowd"]:
                                    continue
                                if mm > -1 and gig[mm] == 0 and gig[j] == 1:
                                    break
                                if ious[i][j] < best:
                                    continue
                                best, mm = ious[i][j], j
                            matched = mm > -1 and g[mm]["id"] != 0
                            if mm > -1:
                                taken.add(mm)
                                ign = bool(gig[mm])
                            else:
                                ign = False
                            if not matched and (x["avg_area"] < lo or x["avg_area"] > hi):
                                ign = True
                            res_v[t][i] = (matched, ign)
                    for i, x in enumerate(d[:md]):
                        rows.append((x["score"], [res_v[t][i] for t in range(T)]))
                if not any_entry or npig == 0:
                    continue
                rows = [rows[i] for i in np.argsort([-r[0] for r in rows], kind="mergesort")]
                for t in range(T):
                    tp = fp = 0
                    rc, pr = [], []
                    for _, st in rows:
                        matched, ign = st[t]
                        if ign:
                            pass
                        elif matched:
                            tp += 1
                        else:
                            fp += 1
                        rc.append(tp / npig); pr.append(tp / (tp + fp + np.spacing(1)))
                    recall[t, k, a, m] = rc[-1] if rows else 0
                    for i in range(len(pr) - 2, -1, -1):
                        pr[i] = max(pr[i], pr[i + 1])
                    for ri, r in enumerate(rec_thrs):
                        idx = next((i for i, x in enumerate(rc) if x >= r), None)
                        precision[t, ri, k, a, m] = pr[idx] if idx is not None else 0

    def summ(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    t50, t75 = 0, 5
    return {
        "AP": summ(precision[:, :, :, 0, 2]), "AP50": summ(precision[t50, :, :, 0, 2]),
        "AP75": summ(precision[t75, :, :, 0, 2]), "APs": summ(precision[:, :, :, 1, 2]),
        "APm": summ(precision[:, :, :, 2, 2]), "APl": summ(precision[:, :, :, 3, 2]),
        "AR1": summ(recall[:, :, 0, 0]), "AR10": summ(recall[:, :, 0, 1]),
    }


def random_case(seed, n_videos=5, n_frames=6, h=24, w=32, n_cats=3, n_gt=3, n_dt=6, p_null=0.2,
                int_scores=False, bad_lengths=False, big=False):
    rng = np.random.RandomState(seed)
    videos, anns, res = [], [], []
    aid = 1

    def rand_mask():
        m = np.zeros((h, w), np.uint8)
        y0, x0 = rng.randint(0, h), rng.randint(0, w)
        if big and rng.rand() < 0.5:
            y0, x0 = y0 // 4, x0 // 4
        y1, x1 = rng.randint(y0, h + 1), rng.randint(x0, w + 1)
        m[y0:y1, x0:x1] = 1
        if rng.rand() < 0.3:
            m[rng.rand(h, w) < 0.2] ^= 1
        return m

    for v in range(n_videos):
        vid = [3, 7, 1, 12, 5, 9, 20, 15, 2, 30][v % 10] + 100 * (v // 10)
        videos.append({"id": vid, "height": h, "width": w, "length": n_frames,
                       "file_names": [f"v{vid}/{t:05d}.jpg" for t in range(n_frames)]})
        tracks = []
        for _ in range(rng.randint(0, n_gt + 1)):
            ms = [None if rng.rand() < p_null else rand_mask() for _ in range(n_frames)]
            cat = int(rng.randint(1, n_cats + 1))
            anns.append({"id": aid, "video_id": vid, "category_id": cat, "iscrowd": int(rng.rand() < 0.1),
                         "segmentations": [None if m is None else rle(m) for m in ms],
                         "areas": [None if m is None else float(m.sum()) for m in ms]})
            tracks.append((ms, cat)); aid += 1
        for _ in range(rng.randint(0, n_dt + 1)):
            pick = tracks[rng.randint(len(tracks))] if tracks and rng.rand() < 0.7 else None
            segs = []
            for t in range(n_frames):
                if rng.rand() < p_null:
                    segs.append(None); continue
                if pick is not None and pick[0][t] is not None:
                    m = pick[0][t].copy(); m[(rng.rand(h, w) < rng.rand() * 0.5) & (m > 0)] = 0
                    m[rng.rand(h, w) < 0.01] = 1
                else:
                    m = rand_mask() if rng.rand() > 0.05 else np.zeros((h, w), np.uint8)
                segs.append(rle(m))
            if bad_lengths and rng.rand() < 0.4:
                segs = segs[: rng.randint(0, n_frames)] if rng.rand() < 0.5 else segs + [rle(rand_mask())] * 2
            cat = pick[1] if pick and rng.rand() < 0.9 else int(rng.randint(1, n_cats + 1))
            score = float(rng.randint(1, 4) / 4) if int_scores else float(rng.rand())
            res.append({"video_id": vid, "category_id": cat, "score": score, "segmentations": segs})
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 2)]  # the last category has no GT
    return {"videos": videos, "annotations": anns, "categories": cats}, res


@pytest.mark.parametrize(
    "seed,kw",
    [
        (0, {}),
        (1, dict(n_videos=8, int_scores=True)),
        (2, dict(n_dt=14, n_gt=5, p_null=0.4)),
        (3, dict(n_videos=6, h=260, w=300, n_frames=2, big=True)),
        (4, dict(n_videos=7, bad_lengths=True)),
        (5, dict(n_videos=10, int_scores=True, n_cats=1)),
    ],
)
def test_matches_reference(seed, kw):
    gt, res = random_case(seed, **kw)
    ref = _reference_eval(copy.deepcopy(gt), copy.deepcopy(res))
    got = evaluate_ytvis(gt, res, lenient=kw.get("bad_lengths", False))
    assert list(got) == list(KEYS)
    for k in KEYS:
        assert got[k] == pytest.approx(ref[k], abs=1e-4), (k, got[k], ref[k])
    assert any(got[k] > 0 for k in KEYS)


# --------------------------------------------------------------------------------------------------- HOTA
def _uncompressed(r):
    """Compressed RLE -> uncompressed counts list (TrackEval's YouTubeVIS GT reader wants these)."""
    m = mask_util.decode(r).flatten(order="F")
    change = np.flatnonzero(np.diff(np.concatenate([[0], m, [1 - m[-1]]])))
    return {"size": r["size"], "counts": np.diff(np.concatenate([[0], change])).tolist()}


@pytest.mark.parametrize("seed", [0, 1])
def test_hota_matches_trackeval_youtubevis_pipeline(tmp_path, seed):
    import json

    import trackeval

    from stmask_d2.evaluation.hota import compute_hota

    gt, res = random_case(seed, n_videos=6)
    ours = compute_hota(copy.deepcopy(gt), copy.deepcopy(res))
    for a in gt["annotations"]:
        a["height"], a["width"] = 24, 32
        a["segmentations"] = [None if x is None else _uncompressed(x) for x in a["segmentations"]]
    (tmp_path / "gt/youtube_vis_val").mkdir(parents=True)
    (tmp_path / "tr/youtube_vis_val/mine/data").mkdir(parents=True)
    (tmp_path / "gt/youtube_vis_val/gt.json").write_text(json.dumps(gt))
    (tmp_path / "tr/youtube_vis_val/mine/data/r.json").write_text(json.dumps(res))
    ecfg = trackeval.Evaluator.get_default_eval_config()
    ecfg.update(USE_PARALLEL=False, PRINT_RESULTS=False, PRINT_CONFIG=False, TIME_PROGRESS=False,
                OUTPUT_SUMMARY=False, OUTPUT_DETAILED=False, PLOT_CURVES=False, DISPLAY_LESS_PROGRESS=True)
    dcfg = trackeval.datasets.YouTubeVIS.get_default_dataset_config()
    dcfg.update(GT_FOLDER=f"{tmp_path}/gt/", TRACKERS_FOLDER=f"{tmp_path}/tr/", SPLIT_TO_EVAL="val", PRINT_CONFIG=False)
    out, _ = trackeval.Evaluator(ecfg).evaluate(
        [trackeval.datasets.YouTubeVIS(dcfg)], [trackeval.metrics.HOTA({"PRINT_CONFIG": False})])
    ref = out["YouTubeVIS"]["mine"]["COMBINED_SEQ"]["cls_comb_cls_av"]["HOTA"]
    for k in ("HOTA", "DetA", "AssA"):
        assert ours[k] == pytest.approx(float(np.mean(ref[k])), abs=1e-9)
    assert 0 < ours["HOTA"] < 1

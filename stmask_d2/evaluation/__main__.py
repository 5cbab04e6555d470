"""`python -m stmask_d2.evaluation --gt GT.json --results RES.json [--hota] [--lenient]`

Prints exactly one JSON line: AP, AP50, AP75, APs, APm, APl, AR1, AR10 (fractions, -1 where undefined) and,
with --hota, HOTA, DetA, AssA. Input errors: a one-line message on stderr and exit code 2.
"""
import argparse
import json
import logging
import sys

from ..utils.errors import run_cli


def _evaluate(argv):
    parser = argparse.ArgumentParser(
        prog="python -m stmask_d2.evaluation",
        description="Official YouTube-VIS video mask AP/AR (and optionally HOTA) of a results file.",
    )
    parser.add_argument("--gt", required=True, help="YouTube-VIS annotation JSON with annotations")
    parser.add_argument("--results", required=True, help="results JSON (list of video_id/category_id/score/"
                        "segmentations entries)")
    parser.add_argument("--hota", action="store_true", help="also report HOTA, DetA, AssA (trackeval)")
    parser.add_argument("--lenient", action="store_true",
                        help="accept segmentation lists whose length differs from the video length and truncate "
                        "them like the official API (zip); the default is an error")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s: %(message)s")

    from .ytvis_eval import evaluate_ytvis, load_ytvis_gt, load_ytvis_results

    gt = load_ytvis_gt(args.gt)
    res = load_ytvis_results(args.results, gt, lenient=args.lenient)
    out = dict(evaluate_ytvis(gt, res))
    if args.hota:
        from .hota import compute_hota

        out.update(compute_hota(gt, res))
    print(json.dumps({k: float(v) for k, v in out.items()}))
    return 0


def main(argv=None):
    """The command line; input errors (YTVISEvalError) give one line ``error: ...`` and exit code 2."""
    return run_cli(_evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())

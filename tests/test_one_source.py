"""Issue 13: the shared helpers that replace per-module copies (RLE handling, JSON reading, category ids)."""
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest

from stmask_d2.utils.categories import contiguous_to_dataset_id, dataset_category_id, dataset_to_contiguous_id
from stmask_d2.utils.json_io import read_json
from stmask_d2.utils.rle import decode_rle, encode_mask, rle_bbox, rle_to_json, to_rle


def test_rle_forms_agree():
    m = np.zeros((6, 8), bool)
    m[1:4, 2:7] = True
    js = encode_mask(m)
    assert isinstance(js["counts"], str) and js["size"] == [6, 8]
    poly = [[2, 1, 7, 1, 7, 4, 2, 4]]
    flat = np.asfortranarray(m.astype(np.uint8)).flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    uncompressed = {"size": [6, 8], "counts": runs}
    for seg in (js, {"size": [6, 8], "counts": js["counts"].encode()}, uncompressed):
        assert np.array_equal(decode_rle(seg, 6, 8), m)
        assert rle_bbox(seg, 6, 8) == [2.0, 1.0, 5.0, 3.0]
    assert decode_rle(poly, 6, 8).shape == (6, 8) and decode_rle(poly, 6, 8).any()
    assert to_rle(None, 6, 8) is None and rle_to_json(None) is None and not decode_rle([], 6, 8).any()
    assert rle_to_json(mask_util.encode(np.asfortranarray(m.astype(np.uint8)))) == js


def test_read_json(tmp_path):
    class MyError(Exception):
        pass

    p = tmp_path / "a.json"
    p.write_text('\ufeff{"x": 1}', encoding="utf-8")
    assert read_json(str(p)) == {"x": 1}
    with pytest.raises(MyError, match="results file .* does not exist"):
        read_json(str(tmp_path / "missing.json"), "results", MyError)
    with pytest.raises(FileNotFoundError):
        read_json(str(tmp_path / "missing.json"), error=MyError, missing_error=FileNotFoundError)
    p.write_bytes(b'{"x": "\xe9"}')
    with pytest.raises(MyError, match="not UTF-8 .* line 1"):
        read_json(str(p), error=MyError)
    p.write_text('{"x": }')
    with pytest.raises(MyError, match="not valid JSON"):
        read_json(str(p), error=MyError)


def test_category_ids():
    cats = [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}]
    assert dataset_to_contiguous_id(cats) == {3: 0, 7: 1}
    inv = contiguous_to_dataset_id(categories=cats)
    assert inv == {0: 3, 1: 7} and dataset_category_id(1, inv) == 7

    class Meta:
        thing_dataset_id_to_contiguous_id = {10: 1, 20: 0}

    assert contiguous_to_dataset_id(Meta(), cats) == {1: 10, 0: 20}  # registered metadata wins
    assert contiguous_to_dataset_id(None, None) is None and dataset_category_id(4, None) == 5
    with pytest.raises(ValueError, match="not a contiguous id"):
        dataset_category_id(5, inv)
    json.dumps(inv)

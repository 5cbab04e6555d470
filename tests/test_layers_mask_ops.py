import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stmask_d2.layers import (
    assemble_masks,
    crop_masks,
    encode_masks_rle,
    pairwise_mask_iou,
    paste_masks_to_image,
)


def test_crop_rc12():
    # RC12: proto 96x160, normalised box (0.25, 0.5, 0.5, 0.75) -> proto pixels (40, 48, 80, 72)
    masks = torch.ones(1, 96, 160)
    box = torch.tensor([[0.25 * 160, 0.5 * 96, 0.5 * 160, 0.75 * 96]])
    out = crop_masks(masks, box, padding=1)
    cols = out[0].any(0).nonzero().flatten()
    rows = out[0].any(1).nonzero().flatten()
    assert (cols.min().item(), cols.max().item() + 1) == (39, 81)
    assert (rows.min().item(), rows.max().item() + 1) == (47, 73)
    assert out.sum().item() == (81 - 39) * (73 - 47)


def test_crop_swapped_corners_clamp_and_batch():
    masks = torch.rand(3, 10, 12)
    boxes = torch.tensor([[8.0, 6.0, 2.0, 1.0], [-5.0, -5.0, 30.0, 30.0], [3.5, 2.5, 3.5, 2.5]])
    out = crop_masks(masks, boxes, padding=1)
    ref = torch.zeros_like(masks)
    ref[0, 0:7, 1:9] = masks[0, 0:7, 1:9]  # x in [1, 9), y in [0, 7)
    ref[1] = masks[1]
    ref[2, 2:4, 3:5] = masks[2, 2:4, 3:5]  # x1'=2.5 -> u in {3, 4}; y1'=1.5 -> v in {2, 3}
    assert torch.equal(out, ref)
    # gradient flows to masks
    m = masks.clone().requires_grad_()
    crop_masks(m, boxes).sum().backward()
    assert torch.equal(m.grad, (ref != 0).float())


def test_assemble_masks():
    torch.manual_seed(0)
    k, h, w = 4, 8, 10
    protos = torch.rand(k, h, w)
    coeffs = torch.randn(3, k)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 8.0], [2.0, 2.0, 5.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    out = assemble_masks(protos, coeffs, boxes)
    full = torch.sigmoid(torch.tanh(coeffs) @ protos.reshape(k, -1)).reshape(3, h, w)
    assert out.shape == (3, h, w)
    assert torch.allclose(out, crop_masks(full, boxes))
    assert torch.allclose(out[0], full[0])
    assert out[1, 0].sum() == 0 and out[1, 1:5, 1:6].gt(0).all() and out[1, 5:].sum() == 0


def test_pairwise_mask_iou():
    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 px
    a[1, :, :2] = True  # 8 px
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    b[0, :2] = True
    iou = pairwise_mask_iou(a.flatten(1), b.flatten(1))
    assert iou.shape == (3, 2)
    assert torch.allclose(iou[:, 0], torch.tensor([1.0, 4 / 12, 0.0]))
    assert torch.equal(iou[:, 1], torch.zeros(3))  # empty union -> 0
    assert not torch.isnan(iou).any()
    assert pairwise_mask_iou(a.flatten(1)[:0], b.flatten(1)).shape == (0, 2)


def _reference_paste(soft, valid_hw, out_hw, thr=0.5):
    h, w = int(valid_hw[0]), int(valid_hw[1])
    up = F.interpolate(soft[:, None, :h, :w], size=tuple(out_hw), mode="bilinear", align_corners=False)[:, 0]
    return up > thr, up


@pytest.mark.parametrize("out_hw", [(720, 1280), (480, 854), (37, 61)])
def test_paste_equals_full_resize(out_hw):
    torch.manual_seed(1)
    protos = torch.rand(8, 96, 160)
    coeffs = torch.randn(5, 8) * 3
    boxes_p = torch.tensor(
        [[10.0, 5.0, 60.0, 40.0], [0.0, 0.0, 160.0, 96.0], [100.0, 70.0, 159.0, 95.0], [30, 30, 31, 31], [0, 0, 0, 0]]
    )
    soft = assemble_masks(protos, coeffs, boxes_p)
    valid = (90.0, 160.0)  # 360x640 input padded to 384x640
    ref, up = _reference_paste(soft, valid, out_hw)
    # exact mode (region from the mask support)
    out = paste_masks_to_image(soft, valid, out_hw, None, 0.5)
    assert out.dtype == torch.bool and out.shape == (5,) + tuple(out_hw)
    ambiguous = (up - 0.5).abs() < 1e-5
    assert torch.equal(out[~ambiguous], ref[~ambiguous])
    # box mode: equal to the reference inside the (integer, clamped) box, False elsewhere
    H0, W0 = out_hw
    sx, sy = W0 / 160.0, H0 / 90.0
    boxes_out = boxes_p * torch.tensor([sx, sy, sx, sy])
    outb = paste_masks_to_image(soft, valid, out_hw, boxes_out, 0.5)
    for i, b in enumerate(boxes_out):
        x0, y0 = int(np.floor(b[0])), int(np.floor(b[1]))
        x1, y1 = min(int(np.ceil(b[2])), W0), min(int(np.ceil(b[3])), H0)
        inside = torch.zeros(H0, W0, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        sel = inside & ~ambiguous[i]
        assert torch.equal(outb[i][sel], ref[i][sel])
        assert not outb[i][~inside].any()


def test_paste_empty():
    out = paste_masks_to_image(torch.zeros(0, 96, 160), (90, 160), (100, 200))
    assert out.shape == (0, 100, 200)
    out = paste_masks_to_image(torch.zeros(2, 96, 160), (90, 160), (100, 200))
    assert out.shape == (2, 100, 200) and not out.any()


def test_rle_round_trip():
    from pycocotools import mask as mask_util

    torch.manual_seed(2)
    masks = torch.rand(3, 17, 23) > 0.6
    rles = encode_masks_rle(masks)
    assert len(rles) == 3
    for m, r in zip(masks, rles):
        assert isinstance(r["counts"], str) and list(r["size"]) == [17, 23]
        dec = mask_util.decode({"size": r["size"], "counts": r["counts"].encode("ascii")})
        assert np.array_equal(dec.astype(bool), m.numpy())
    assert encode_masks_rle(torch.zeros(0, 4, 4, dtype=torch.bool)) == []

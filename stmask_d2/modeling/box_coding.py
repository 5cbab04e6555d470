"""STMask's box coding (docs/METHOD.md §13): Detectron2's ``Box2BoxTransform`` with weights (10, 10, 5, 5), i.e.
the released SSD-style variances 0.1 (centre) and 0.2 (size). The one place these weights are written; the losses,
the inference path and temporal fusion all read them from here."""
from detectron2.modeling.box_regression import Box2BoxTransform

__all__ = ["BOX2BOX_WEIGHTS", "stmask_box2box_transform"]

BOX2BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # (wx, wy, ww, wh) = 1 / (0.1, 0.1, 0.2, 0.2)


def stmask_box2box_transform() -> Box2BoxTransform:
    """A ``Box2BoxTransform`` with :data:`BOX2BOX_WEIGHTS` (box deltas of the prediction head and of TF)."""
    return Box2BoxTransform(weights=BOX2BOX_WEIGHTS)

"""Category ids: the one mapping between a dataset's category ids and the model's contiguous class indices.

Light (no torch / Detectron2 import), so the evaluation CLI can use it.

Convention (Detectron2's ``load_coco_json``, used by :func:`stmask_d2.data.ytvis.load_ytvis_json`): the JSON
categories sorted by id get contiguous ids 0..C-1; registered metadata (``thing_dataset_id_to_contiguous_id``)
takes precedence. Every writer of results (evaluator, demo / predictor) maps back with
:func:`contiguous_to_dataset_id`.
"""
from typing import Dict, Iterable, Optional

__all__ = ["dataset_to_contiguous_id", "contiguous_to_dataset_id", "dataset_category_id"]


def dataset_to_contiguous_id(categories: Iterable[dict]) -> Dict[int, int]:
    """{dataset category id: contiguous id} of a JSON ``categories`` list: sorted by id, numbered from 0."""
    ids = sorted(int(c["id"]) for c in categories)
    return {cid: i for i, cid in enumerate(ids)}


def contiguous_to_dataset_id(metadata=None, categories: Optional[Iterable[dict]] = None) -> Optional[Dict[int, int]]:
    """{contiguous id: dataset category id}: the inverse of ``metadata.thing_dataset_id_to_contiguous_id`` when
    the metadata has it, else of :func:`dataset_to_contiguous_id` of ``categories`` (e.g. the ``categories`` of the
    dataset's JSON file); None when neither is known (see :func:`dataset_category_id`)."""
    id_map = getattr(metadata, "thing_dataset_id_to_contiguous_id", None) if metadata is not None else None
    if not id_map and categories:
        id_map = dataset_to_contiguous_id(categories)
    if not id_map:
        return None
    return {int(v): int(k) for k, v in id_map.items()}


def dataset_category_id(contiguous_id: int, to_dataset_id: Optional[Dict[int, int]]) -> int:
    """The dataset category id written to results for a contiguous class index: through ``to_dataset_id``
    (:func:`contiguous_to_dataset_id`); without any known mapping, contiguous + 1 (YouTube-VIS ids start at 1).
    Raises ``ValueError`` for an index the mapping does not know."""
    if to_dataset_id is None:
        return int(contiguous_id) + 1
    try:
        return to_dataset_id[int(contiguous_id)]
    except KeyError:
        raise ValueError(f"category {int(contiguous_id)} is not a contiguous id of this dataset "
                         f"(known: {sorted(to_dataset_id)})") from None

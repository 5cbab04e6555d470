#!/usr/bin/env python
"""Run the rows of a paper ablation table for N seeds with one budget and print mean ± std beside the paper's numbers
(library: ``stmask_d2.engine.ablation``; resumable: finished runs are skipped).

Synthetic data (generated once; small-model variants of the rows on the small synthetic base config)::

    python tools/ablation.py --table table4 --synthetic output/ablation_data --videos 160 --valid-videos 40 \\
        --motion-scale 2 --object-blur 0.5 --occluders 1 --seeds 0 1 2 --iters 400 --pretrain-iters 600 \\
        --output output/ablation_table4

Inference-time experiments on finished runs (evaluation only, e.g. a TF model evaluated without TF)::

    python tools/ablation.py --table table4 --rows "+FCA +FCB(ada) +TF" ...same data flags... \\
        --eval-variant no-TF-at-test MODEL.STMASK.TF.ENABLED False [-- KEY VALUE ... of the runs]

Any registered dataset pair (``--register-ytvis NAME JSON ROOT`` for your own)::

    python tools/ablation.py --table table5 --train ytvis_2019_train_sub --test ytvis_2019_valid_sub \\
        --full-configs --init yolact_plus_base_converted.pth --iters 20000 --seeds 0 1 2 --output output/t5
"""
import sys

from stmask_d2.engine.ablation import main

if __name__ == "__main__":
    sys.exit(main())

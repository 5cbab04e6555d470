#!/usr/bin/env python
"""Train and evaluate STMask with Detectron2 (library code: ``stmask_d2.engine.train_net``).

    python train_net.py --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file ... --resume                      # continue from OUTPUT_DIR/last_checkpoint
    python train_net.py --register-ytvis my_train my/train.json my/JPEGImages \\
        --config-file configs/youtubevis_2019/STMask_R50_DCN_ada_TF.yaml DATASETS.TRAIN '("my_train",)'

Several machines: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT (Detectron2's `launch`).
Several CPU processes (gloo): --num-gpus N MODEL.DEVICE cpu [--dist-url auto].

Bad input (config typo or value out of range, unregistered or malformed dataset, missing frame files, missing /
corrupt / unsafe weights, unwritable OUTPUT_DIR, DDP port in use) is reported as one line on stderr with exit
code 2 before anything is written; STMASK_DEBUG=1 shows the traceback. Other errors keep theirs.

A trained model is never overwritten by accident: a new run into an OUTPUT_DIR that holds model_final.pth or
checkpoints is refused, and so is a --resume whose last_checkpoint is missing, empty or unreadable; pass
--start-over to train from MODEL.WEIGHTS over them. SIGTERM removes the temporaries being written.
"""
from stmask_d2.engine.train_net import cli

if __name__ == "__main__":
    cli()

"""Annotate a whole folder of talking-head videos on Ray (DeepFaceFlow Sec. 3.2): one task per
video on this machine's cores or an existing cluster, compact storage by default (the crops as
JPEG, the fits; PNCC, NMFC, eyes and 3D flows drawn when read), resumable and fault-tolerant.

  faceflow annotate-dataset videos/ data/faces                   # every core of this machine
  faceflow annotate-dataset 'clips/**/*.mp4' data/faces --workers 8 --threads 2
  faceflow annotate-dataset list.txt data/faces --address HEAD:6379   # join a cluster

Rerun the same command after an interruption: finished videos are skipped, interrupted ones
resume; failed ones (corrupt, no face, too short: recorded in the manifest) are retried with
--retry-failed. OUT_DIR/splits/{train,val,test}.txt are ready for `faceflow train dffnet --data`.
The exit status is 0 when every video is done, 3 when some failed.
"""

from __future__ import annotations

import argparse

from faceflow.annotate.config import AnnotateConfig
from faceflow.data.annotate_dataset import DatasetConfig
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args

# annotate's own options apply to every video; here storage defaults to compact and previews to 2
DATASET_DEFAULTS = {"storage": "compact", "previews": 2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", help="a folder (searched recursively), a glob pattern (quote it) or a text file of "
                                   "video paths")
    p.add_argument("out", help="output folder (created; rerun the same command to resume)")
    add_dataclass_arguments(p, DatasetConfig, names=DatasetConfig.FLAGS)
    add_dataclass_arguments(p, AnnotateConfig, names=AnnotateConfig.FLAGS,
                            presets={"annotate-dataset": DATASET_DEFAULTS})


def run(args) -> int:
    from faceflow.data.annotate_dataset import annotate_dataset

    acfg = dataclass_from_args(AnnotateConfig, args, preset=DATASET_DEFAULTS, names=AnnotateConfig.FLAGS)
    dcfg = dataclass_from_args(DatasetConfig, args, names=DatasetConfig.FLAGS)
    m = annotate_dataset(args.sources, args.out, acfg, dcfg)
    return 0 if m["videos"]["failed"] == 0 and m["complete"] else 3

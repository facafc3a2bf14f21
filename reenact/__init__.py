"""reenact: person-specific head reenactment (Head2Head++): ``preprocess`` a target video into
conditioning (NMFC renders + eye sketches) and cached flows, ``train`` a renderer on its first two
thirds, ``run`` self, face and head reenactment. ``python -m reenact --help``."""

from faceflow.runtime.threads import prefer_passive_wait

prefer_passive_wait()  # before torch loads: see faceflow.runtime.threads

"""vid2vid: the sequential video generator (conditioning and previous-frame encoders,
:mod:`.generator`), its image, mouth and multi-scale dynamics discriminators
(:mod:`.discriminators`), losses (:mod:`.losses`), the sequential roll-out and loss collector
(:mod:`.collector`) and pure-PyTorch warping (:mod:`.warp`). The flows between real frames
that feed it come from reenactment's providers (:mod:`reenact.flows`)."""

from faceflow.runtime.threads import prefer_passive_wait

prefer_passive_wait()  # before torch loads: see faceflow.runtime.threads

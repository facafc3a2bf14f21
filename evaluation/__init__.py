"""evaluation: DeepFaceFlow's flow benchmark (Tables 1-2, :mod:`.flow_benchmark`, with the
baselines of :mod:`.baselines`), the 3DMeshReg benchmark, and the self-reenactment error tables
(Table 3 of the DeepFaceFlow paper, :mod:`.self_reenact`)."""

from faceflow.runtime.threads import prefer_passive_wait

prefer_passive_wait()  # before torch loads: see faceflow.runtime.threads

"""What the flow commands write. ``pair``: one pair's arrays, meshes and pictures (``faceflow flow
IMG1 IMG2``) and reading its inputs (``VIDEO:N``); ``video``: the whole-video run (``faceflow flow
VIDEO``: the face tracked over the clip, the flow of every pair in batches into memory-mappable
arrays, a per-pair summary, resumable) and ``video_frames``, the pictures of its mp4;
``config``: the options (no torch, so ``--help`` answers at once)."""

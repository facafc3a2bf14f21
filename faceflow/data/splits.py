"""The fixed identity split of the real clips (``/work/shared/media``, see its ``SOURCES.md``).

Every video of ``videos/`` (tier A) and ``extra/`` (tiers B and C) belongs to exactly one
person, and every person to exactly one split, so no face is seen both in training and in
evaluation. Test persons: Barack Obama, Donald Trump and the woman of ``LivePortrait_d10``;
validation person: the man of ``HelloMeme_xzy1`` / ``HelloMeme_xzy3``; everyone else is train.
Persons that appear in several files (``SOURCES.md``, "Same identity in several files", and
the LatentSync face crops, which are cut from the HEVC originals) share one identity. Clips
whose persons are not named there were compared by eye (all are different people). Still
photos (``stills/``) are not part of the split. Synthetic data of a split draws textures,
expressions and backgrounds only from that split's clips.

====================================================  ====  ======================================  =====
clip (stem)                                           tier  person (identity)                       split
====================================================  ====  ======================================  =====
``EDTalk_uncrop_Obama``                               A     Barack Obama (``obama``)                test
``MimicTalk_Trump_10s``                               A     Donald Trump (``trump``)                test
``LivePortrait_d10``                                  A     TikTok-style woman (``lp_d10_woman``)   test
``HelloMeme_xzy1``                                    A     man, black shirt (``hellomeme_man``)    val
``HelloMeme_xzy3``                                    A     man, black shirt (``hellomeme_man``)    val
``LatentSync_demo3_video`` [1]_                       A     young man, white t-shirt                train
``LatentSync_demo3_video_facecrop512``                A     young man, white t-shirt                train
``LatentSync_demo1_video`` [1]_                       A     young woman, grey coat                  train
``LatentSync_demo1_video_facecrop512``                A     young woman, grey coat                  train
``EDTalk_pose_source2``                               A     Ted Lieu                                train
``LivePortrait_d13``                                  A     man with glasses, selfie                train
``EDTalk_expression_source``                          B     woman, white background                 train
``EDTalk_mouth_source``                               B     Amy Klobuchar                           train
``EDTalk_pose_source1``                               B     Alexandria Ocasio-Cortez (``aoc``)      train
``DPE_d``                                             B     man in a suit, outdoors                 train
``LivePortrait_d14``                                  B     young woman, gaze and winks             train
``LivePortrait_d9``                                   B     man with glasses, at home               train
``LivePortrait_d6``                                   B     woman with hair bow, grimaces           train
``LivePortrait_d3``                                   B     woman with hoop earrings                train
``SadTalker_WDA_AlexandriaOcasioCortez_000``          C     Alexandria Ocasio-Cortez (``aoc``)      train
``SadTalker_WDA_KatieHill_000``                       C     Katie Hill                              train
``video-retalking_1``                                 C     man in a suit, office                   train
``video-retalking_2``                                 C     Eric Swalwell                           train
``video-retalking_3``                                 C     Alexandria Ocasio-Cortez (``aoc``)      train
``video-retalking_4``                                 C     woman, navy blazer                      train
``video-retalking_5``                                 C     woman with glasses, red jacket          train
``TPSMM_driving``                                     C     Jackie Chan                             train
``IP_LAP_129``                                        C     woman with red hair                     train
``MegActor_Benchmark_easy_8``                         C     young woman, bookshelf                  train
``LivePortrait_d12``                                  C     man with glasses, wooden wall           train
``X-Portrait_driving_video``                          C     man with dreadlocks                     train
``Real3DPortrait_May_5s``                             C     Theresa May                             train
====================================================  ====  ======================================  =====

.. [1] HEVC 1080x1920 original; the dataset builder (:mod:`faceflow.data.pseudo`) annotates
   its H.264 ``_facecrop512`` copy instead (same person, same footage).

Totals: 32 clips of 27 persons; test 3 clips / 3 persons, val 2 / 1, train 27 / 23.
The identity index of a person (:func:`identity_index`) is its position in :data:`PERSONS`
(new persons are appended, so indices never change).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflow.errors import FaceflowError
from faceflow.runtime.assets import media_dir

SPLITS = ("train", "val", "test")
TIERS = ("A", "B", "C")


@dataclass(frozen=True)
class Person:
    """One identity: a key, a short description and the split it belongs to."""

    key: str
    description: str
    split: str


@dataclass(frozen=True)
class Clip:
    """One video of the shared media folder: ``<folder>/<stem>.mp4``.

    ``replaced_by``: a stem with the same footage in a friendlier format that the dataset
    builder annotates instead (the HEVC LatentSync originals -> their H.264 face crops).
    """

    stem: str
    folder: str  # 'videos' (tier A) or 'extra' (tiers B, C)
    tier: str
    person: str
    replaced_by: str | None = None


# Order matters: the identity index of a person is its position here (append only).
PERSONS: tuple[Person, ...] = (
    Person("obama", "Barack Obama", "test"),
    Person("trump", "Donald Trump", "test"),
    Person("lp_d10_woman", "young woman with long black hair, TikTok-style (LivePortrait d10)", "test"),
    Person("hellomeme_man", "man in a black shirt, silver curtain (HelloMeme xzy1, xzy3)", "val"),
    Person("latentsync_demo3_man", "young man with dark wavy hair, white t-shirt (LatentSync demo3)", "train"),
    Person("latentsync_demo1_woman", "young woman in a grey coat (LatentSync demo1)", "train"),
    Person("ted_lieu", "Ted Lieu", "train"),
    Person("lp_d13_man", "man with glasses, handheld selfie (LivePortrait d13)", "train"),
    Person("edtalk_expression_woman", "woman with long brown hair, white background (EDTalk)", "train"),
    Person("amy_klobuchar", "Amy Klobuchar", "train"),
    Person("aoc", "Alexandria Ocasio-Cortez", "train"),
    Person("dpe_man", "man in a suit, outdoor background (DPE)", "train"),
    Person("lp_d14_woman", "young woman, gaze shifts and winks (LivePortrait d14)", "train"),
    Person("lp_d9_man", "man with glasses at home (LivePortrait d9)", "train"),
    Person("lp_d6_woman", "woman with a hair bow, grimaces (LivePortrait d6)", "train"),
    Person("lp_d3_woman", "woman with hoop earrings (LivePortrait d3)", "train"),
    Person("katie_hill", "Katie Hill", "train"),
    Person("vr1_man", "man in a suit, office (video-retalking 1)", "train"),
    Person("eric_swalwell", "Eric Swalwell", "train"),
    Person("vr4_woman", "woman in a navy blazer, blue background (video-retalking 4)", "train"),
    Person("vr5_woman", "woman with glasses and a red jacket (video-retalking 5)", "train"),
    Person("jackie_chan", "Jackie Chan", "train"),
    Person("iplap_woman", "woman with red hair (IP_LAP 129)", "train"),
    Person("megactor_woman", "young woman, bookshelf background (MegActor)", "train"),
    Person("lp_d12_man", "man with glasses, wooden wall (LivePortrait d12)", "train"),
    Person("xportrait_man", "man with dreadlocks and a nose ring (X-Portrait)", "train"),
    Person("theresa_may", "Theresa May", "train"),
)

CLIPS: tuple[Clip, ...] = (
    # videos/ (tier A)
    Clip("EDTalk_uncrop_Obama", "videos", "A", "obama"),
    Clip("MimicTalk_Trump_10s", "videos", "A", "trump"),
    Clip("LivePortrait_d10", "videos", "A", "lp_d10_woman"),
    Clip("HelloMeme_xzy1", "videos", "A", "hellomeme_man"),
    Clip("HelloMeme_xzy3", "videos", "A", "hellomeme_man"),
    Clip("LatentSync_demo3_video", "videos", "A", "latentsync_demo3_man",
         replaced_by="LatentSync_demo3_video_facecrop512"),
    Clip("LatentSync_demo3_video_facecrop512", "videos", "A", "latentsync_demo3_man"),
    Clip("LatentSync_demo1_video", "videos", "A", "latentsync_demo1_woman",
         replaced_by="LatentSync_demo1_video_facecrop512"),
    Clip("LatentSync_demo1_video_facecrop512", "videos", "A", "latentsync_demo1_woman"),
    Clip("EDTalk_pose_source2", "videos", "A", "ted_lieu"),
    Clip("LivePortrait_d13", "videos", "A", "lp_d13_man"),
    # extra/ (tier B)
    Clip("EDTalk_expression_source", "extra", "B", "edtalk_expression_woman"),
    Clip("EDTalk_mouth_source", "extra", "B", "amy_klobuchar"),
    Clip("EDTalk_pose_source1", "extra", "B", "aoc"),
    Clip("DPE_d", "extra", "B", "dpe_man"),
    Clip("LivePortrait_d14", "extra", "B", "lp_d14_woman"),
    Clip("LivePortrait_d9", "extra", "B", "lp_d9_man"),
    Clip("LivePortrait_d6", "extra", "B", "lp_d6_woman"),
    Clip("LivePortrait_d3", "extra", "B", "lp_d3_woman"),
    # extra/ (tier C)
    Clip("SadTalker_WDA_AlexandriaOcasioCortez_000", "extra", "C", "aoc"),
    Clip("SadTalker_WDA_KatieHill_000", "extra", "C", "katie_hill"),
    Clip("video-retalking_1", "extra", "C", "vr1_man"),
    Clip("video-retalking_2", "extra", "C", "eric_swalwell"),
    Clip("video-retalking_3", "extra", "C", "aoc"),
    Clip("video-retalking_4", "extra", "C", "vr4_woman"),
    Clip("video-retalking_5", "extra", "C", "vr5_woman"),
    Clip("TPSMM_driving", "extra", "C", "jackie_chan"),
    Clip("IP_LAP_129", "extra", "C", "iplap_woman"),
    Clip("MegActor_Benchmark_easy_8", "extra", "C", "megactor_woman"),
    Clip("LivePortrait_d12", "extra", "C", "lp_d12_man"),
    Clip("X-Portrait_driving_video", "extra", "C", "xportrait_man"),
    Clip("Real3DPortrait_May_5s", "extra", "C", "theresa_may"),
)

_PERSON = {p.key: p for p in PERSONS}
_PERSON_INDEX = {p.key: i for i, p in enumerate(PERSONS)}
_CLIP = {c.stem: c for c in CLIPS}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise FaceflowError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def _tiers(tiers) -> set[str]:
    if tiers is None:
        return set(TIERS)
    tiers = {tiers} if isinstance(tiers, str) else set(tiers)
    bad = tiers - set(TIERS)
    if bad:
        raise FaceflowError(f"unknown tier(s) {sorted(bad)}; tiers are {', '.join(TIERS)}")
    return tiers


def clip(stem: str) -> Clip:
    """The table record of a clip stem (file name without ``.mp4``); :class:`FaceflowError`
    for a stem that is not in the table."""
    stem = str(stem)
    if stem not in _CLIP:
        name = Path(stem).stem
        if name in _CLIP:  # a file name or path was passed
            return _CLIP[name]
        raise FaceflowError(f"unknown clip {stem!r}: not in the identity split of faceflow.data.splits "
                            f"(known clips: {', '.join(sorted(_CLIP))})")
    return _CLIP[stem]


def clips(split: str, tiers=None) -> list[str]:
    """Stems of the clips of ``split`` ('train' | 'val' | 'test'), sorted; ``tiers`` an
    iterable of 'A' / 'B' / 'C' (or one of them) restricts them (default: all tiers)."""
    _check_split(split)
    keep = _tiers(tiers)
    return sorted(c.stem for c in CLIPS if c.tier in keep and _PERSON[c.person].split == split)


def annotation_clips(split: str, tiers=None) -> list[str]:
    """:func:`clips` without the files that are annotated through another copy of the same
    footage (the HEVC LatentSync originals; their ``_facecrop512`` copies stay)."""
    return [s for s in clips(split, tiers) if _CLIP[s].replaced_by is None]


def split_of(stem: str) -> str:
    """The split ('train' | 'val' | 'test') of a clip."""
    return _PERSON[clip(stem).person].split


def identity_of(stem: str) -> str:
    """The person key of a clip (e.g. ``'obama'``); clips of one person share it."""
    return clip(stem).person


def identity_index(stem: str) -> int:
    """The stable index of the clip's person: its position in :data:`PERSONS`."""
    return _PERSON_INDEX[clip(stem).person]


def person(key: str) -> Person:
    """The :class:`Person` record of a person key."""
    if key not in _PERSON:
        raise FaceflowError(f"unknown person {key!r}; known: {', '.join(_PERSON)}")
    return _PERSON[key]


def video_path(stem: str, media_root: str | Path | None = None) -> Path:
    """Where a clip lives: ``<media_root>/<folder>/<stem>.mp4`` (default root:
    :func:`faceflow.runtime.assets.media_dir`). The file is not checked."""

    c = clip(stem)
    root = Path(media_root) if media_root is not None else media_dir()
    return root / c.folder / f"{c.stem}.mp4"


def table() -> list[dict]:
    """The split as rows (stem, folder, tier, person, split, identity index), in table order."""
    return [{"stem": c.stem, "folder": c.folder, "tier": c.tier, "person": c.person,
             "split": _PERSON[c.person].split, "identity": _PERSON_INDEX[c.person]} for c in CLIPS]


def evenly_spaced(n: int, k: int | None) -> np.ndarray:
    """At most ``k`` evenly spaced indices of ``range(n)``, first and last included, sorted and
    distinct (int64): the deterministic subset of a dataset that validation, the benchmarks and
    the previews use. All ``n`` indices when ``k`` is None or ``k >= n``; ``k`` must be >= 1."""
    if k is None or k >= n:
        return np.arange(n, dtype=np.int64)
    if k < 1:
        raise FaceflowError(f"the number of evenly spaced items must be at least 1, got {k}")
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))


__all__ = ["SPLITS", "TIERS", "Person", "Clip", "PERSONS", "CLIPS", "clip", "clips", "annotation_clips",
           "split_of", "identity_of", "identity_index", "person", "video_path", "table", "evenly_spaced"]

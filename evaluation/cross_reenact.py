"""Cross-reenactment tables: trained targets driven by other people's videos, scored on identity
and motion transfer (there is no ground truth frame, so APD does not apply).

``faceflow evaluate cross-reenact --models MODEL ... --drivers VIDEO ... --out OUT [--modes head
face] [--max-frames 150]``

For every model (a training run or a package, :mod:`reenact.package`), every driver video and
every mode, the driver is tracked and fitted once (cached in ``OUT/sources``), the model is
driven exactly as ``python -m reenact run`` does (:func:`reenact.run.drive_model`), and the
generated frames are written near-losslessly, re-tracked and re-fitted
(:func:`evaluation.self_reenact.refit_frames`). A driver showing the model's own training video
(same sha256) is skipped. Metrics (cell ``OUT/cells/<model>/<driver>/<mode>/metrics.json``,
written last; a finished cell is never recomputed):

- **CSIM target** (higher is better): identity similarity (:mod:`faceflow.face.identity`, dlib's
  embeddings, each generated frame aligned by its re-fitted landmarks, or by those of the face it
  was asked to draw where the re-fit lost it) with the target's reference, the mean unit embedding of
  32 of its TRAINING crops (:func:`evaluation.identity.target_reference`): does the target's
  identity survive a foreign driver?
- **CSIM source** (lower is better): the same against the driver's own frames: how much of the
  driver's identity leaks into the result.
- **AED**: L1 distance of the 53 expression coefficients of the re-fitted result and of the
  driver's fit (the expressions the model was asked to render).
- **ARD** (degrees): geodesic angle between the re-fitted head rotation and the driven one (the
  driver's in head mode, the target's own in face mode).
- **Gaze** (% of the eye width, head mode only; face mode keeps the target's eyes): distance
  between where the pupils sit in their eyes (:func:`evaluation.self_reenact_metrics.gaze_error`)
  in the result and in the driver.

Outputs in OUT: ``table.md`` / ``table.csv`` (one row per model, driver and mode, then the mean of
each model and mode), ``samples/<model>__<driver>__<mode>.mp4`` (driver | NMFC | result) and
``commands.md``. Rerun the same command to resume; more models or drivers can be added later.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from evaluation.cross_reenact_config import CrossReenactConfig
from evaluation.identity import cached_reference, target_reference
from evaluation.self_reenact import log_command, read_cells, refit_frames, safe_name
from evaluation.self_reenact_metrics import (
    _video_landmarks,
    as_number,
    expression_distance,
    gaze_error,
    rotation_difference,
)
from evaluation.self_reenact_tables import ARROWS, format_value, write_text
from faceflow import io as vio
from faceflow.errors import FaceflowError
from faceflow.face.dlib_face import optional_embedder
from faceflow.face.identity import csim, identity_reference
from faceflow.io.rundir import RunState
from faceflow.nets.modules import resolve_device
from faceflow.runtime.provenance import file_record, portable_json, portable_path, provenance
from reenact.drive import analyse_source
from reenact.run import drive_model, load_model, model_weights_file, write_frames

__all__ = ["FORMAT", "METRICS", "CrossReenactConfig", "motion_transfer", "evaluate", "format_table_md",
           "format_table_csv"]

FORMAT = "cross-reenact/1"
# key -> (label, better, decimals)
METRICS = {
    "csim_target": ("CSIM target", "higher", 3),
    "csim_source": ("CSIM source", "lower", 3),
    "aed": ("AED", "lower", 3),
    "ard": ("ARD (deg)", "lower", 2),
    "gaze": ("Gaze (% eye)", "lower", 1),
}


def _say(msg: str) -> None:
    print(msg, flush=True)


# ============================================================================ metrics

def motion_transfer(gen, drive, source=None) -> dict:
    """AED, ARD and (with the driver's analysis ``source``, head mode) the gaze error between the
    re-fit ``gen`` of the generated video (:class:`reenact.drive.SourceAnalysis`; frame k = driven
    frame k; expressions, rotations and gaze offsets do not depend on the analysis scale) and what
    the model was driven with (``drive``: :class:`reenact.drive.Drive`, its params ``exp`` and
    ``rotation`` per driven frame). Returns {"aed", "ard", "gaze", "frames"}; NaN where nothing
    compares."""
    k = np.asarray(gen.frame_index, np.int64)  # indices into the generated video = driven frames
    if len(k) == 0:
        return {"aed": float("nan"), "ard": float("nan"), "gaze": float("nan"), "frames": 0}
    out = {"aed": float(expression_distance(gen.exp, np.asarray(drive.params["exp"])[k]).mean()),
           "ard": float(rotation_difference(gen.rotation, np.asarray(drive.params["rotation"])[k]).mean()),
           "gaze": float("nan"), "frames": int(len(k))}
    if source is not None:
        pos = {int(f): i for i, f in enumerate(np.asarray(source.frame_index))}
        src_idx = [pos.get(int(drive.frame_index[i]), -1) for i in k]
        ok = np.array([i >= 0 for i in src_idx])
        if ok.any():
            s = np.array(src_idx)[ok]
            out["gaze"] = gaze_error(np.asarray(gen.lmk68)[ok], np.asarray(gen.pupils)[ok],
                                     np.asarray(source.lmk68)[s], np.asarray(source.pupils)[s])
    return out


def _generated_landmarks(gen, scale: float, drive) -> list:
    """Per generated frame its re-fitted 68 landmarks in the frame's pixels; where the re-fit lost
    the face, the landmarks of the face it was asked to draw (``drive.landmarks``)."""
    lm = list(np.asarray(drive.landmarks, np.float64))
    if gen is not None:
        pts = _video_landmarks(gen, scale)
        for j, k in enumerate(np.asarray(gen.frame_index)):
            lm[int(k)] = pts[j]
    return lm


# ============================================================================ cells

def _model_entry(path, dev) -> dict:
    """{"path", "label", "target", "flow", "data", "size", "source_sha256"} of a model."""
    _, tc, step = load_model(path, dev)
    data = Path(tc.data)
    m = json.loads((data / "manifest.json").read_text())
    src = m.get("source_file") or {}
    target = Path(src.get("file") or data.name).stem
    return {"path": Path(path), "label": safe_name(f"{target}__{tc.flow}"), "target": target, "flow": tc.flow,
            "data": data, "size": int(m["size"]), "source_sha256": src.get("sha256"), "step": step,
            "has_crops": (data / "annotation" / "data" / "crops.npy").is_file()}


def _score_cell(model: dict, driver: Path, mode: str, cell: Path, out: Path, cfg: CrossReenactConfig, emb,
                refs: dict, command: str, dev, say) -> dict:
    """Drive, write, re-fit and score one cell; writes ``metrics.json`` last and returns it."""
    t0 = time.perf_counter()
    work = out / "sources" / str(model["size"])
    src = analyse_source(driver, work, model["size"], cfg.max_frames, say=lambda m: None)
    r = drive_model(model["path"], mode, driver, max_frames=cfg.max_frames, device=dev, work_dir=work,
                    progress=cfg.progress, say=lambda m: None)
    d, fake = r.drive, r.fake
    notes = list(d.notes)
    gen, scale, why = refit_frames(cell / "analysis" / "generated.mp4", fake, d.fps, True)
    m = {"aed": None, "ard": None, "gaze": None, "csim_target": None, "csim_source": None}
    fit_frames = 0
    if gen is None:
        notes.append(f"AED/ARD/gaze: n/a: the re-fit of the generated frames failed: {why}")
    else:
        mt = motion_transfer(gen, d, src if mode == "head" else None)
        fit_frames = mt.pop("frames")
        m.update({k: as_number(v) for k, v in mt.items()})
    if mode == "face":
        notes.append("gaze: n/a in face mode (the target's own eyes are kept)")
    if emb is None:
        notes.append("CSIM: n/a (dlib's face-recognition files are not available)")
    else:
        lm = _generated_landmarks(gen, scale, d)
        if model["has_crops"]:
            ref = cached_reference(refs, model["label"], lambda: target_reference(emb, model["data"]))
            m["csim_target"] = None if ref is None else as_number(csim(emb, fake, ref, lm)["csim"])
            if ref is None:
                notes.append("CSIM target: n/a (no face found in the target's training crops)")
        else:
            notes.append("CSIM target: n/a (a packed model carries no training crops)")
        ref = cached_reference(refs, ("source", str(driver)),
                         lambda: identity_reference(emb, d.source[:: max(1, len(d.source) // 32)]))
        m["csim_source"] = None if ref is None else as_number(csim(emb, fake, ref, lm)["csim"])
        if ref is None:
            notes.append("CSIM source: n/a (dlib found no face in the driver's frames)")
    sample = out / "samples" / f"{model['label']}__{cell.parent.name}__{mode}.mp4"
    n = min(len(fake), cfg.sample_frames)
    write_frames(sample, fake[:n], d.fps, None, [d.source[:n], d.cond[:n, ..., :3]])
    rec = {"format": FORMAT, "model": model["label"], "target": model["target"], "flow": model["flow"],
           "driver": cell.parent.name, "mode": mode, "metrics": m, "frames": int(len(fake)), "fit_frames": fit_frames,
           "generation_fps": r.generation_fps, "checkpoint_step": r.step, "notes": notes,
           "model_dir": portable_path(model["path"], cell, climb=True), "driver_file": file_record(driver, cell),
           "seconds": time.perf_counter() - t0}
    rec["provenance"] = provenance(command, device=dev, base=out,
                                   weights={"generator": model_weights_file(model["path"])})
    rec = portable_json(rec, cell)
    vio.save_json(cell / "metrics.json", rec)
    return rec


# ============================================================================ tables

def _rows(records: list[dict]) -> list[dict]:
    """Table rows: every cell, then per (model, mode) the mean over its drivers."""
    rows = [{"model": r["model"], "driver": r["driver"], "mode": r["mode"], "frames": r["frames"],
             "metrics": r["metrics"]} for r in sorted(records, key=lambda r: (r["model"], r["mode"], r["driver"]))]
    groups: dict = {}
    for r in records:
        groups.setdefault((r["model"], r["mode"]), []).append(r)
    for (model, mode), rs in sorted(groups.items()):
        mean = {}
        for k in METRICS:
            vals = [x["metrics"].get(k) for x in rs if x["metrics"].get(k) is not None]
            mean[k] = float(np.mean(vals)) if vals else None
        rows.append({"model": model, "driver": f"mean of {len(rs)}", "mode": mode,
                     "frames": sum(x["frames"] for x in rs), "metrics": mean})
    return rows


def format_table_md(rows: list[dict]) -> str:
    """The Markdown table: model, driver, mode, frames, then every metric with its arrow."""
    head = ["Model (target, flow)", "Driver", "Mode", "Frames"] + [
        f"{lab} {ARROWS[better]}" for lab, better, _ in METRICS.values()]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        vals = [format_value(r["metrics"].get(k), dec) for k, (_, _, dec) in METRICS.items()]
        driver = f"**{r['driver']}**" if r["driver"].startswith("mean") else r["driver"]
        lines.append(f"| `{r['model']}` | {driver} | {r['mode']} | {r['frames']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def format_table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "driver", "mode", "frames"] + list(METRICS))
    for r in rows:
        w.writerow([r["model"], r["driver"], r["mode"], r["frames"]]
                   + ["n/a" if r["metrics"].get(k) is None else repr(r["metrics"][k]) for k in METRICS])
    return buf.getvalue()


def write_tables(out: Path, records: list[dict]) -> list[dict]:
    rows = _rows(records)
    notes = [f"{r['model']} / {r['driver']} / {r['mode']}: {n}" for r in records for n in r.get("notes", [])]
    md = ("# Cross-reenactment: identity and motion transfer\n\n"
          "Each target model driven by other people's videos (no ground truth: CSIM against the target's training "
          "crops and against the driver, AED / ARD / gaze between the re-fitted result and what it was driven "
          "with). Definitions: `evaluation/cross_reenact.py`.\n\n" + format_table_md(rows)
          + "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    write_text(out / "table.md", md)
    write_text(out / "table.csv", format_table_csv(rows))
    return rows


# ============================================================================ the run

def evaluate(models, drivers, out, cfg: CrossReenactConfig | None = None, *, say=_say,
             command: str | None = None) -> dict:
    """Run (or resume) the cells of ``models`` x ``drivers`` x ``cfg.modes`` into ``out``; returns
    {"records": [metrics.json dicts], "rows": table rows, "computed": [(model, driver, mode)]}."""
    cfg = cfg or CrossReenactConfig()
    if not models or not drivers:
        raise FaceflowError("give at least one model (--models) and one driver video (--drivers)")
    for m in cfg.modes:
        if m not in ("head", "face"):
            raise FaceflowError(f"unknown mode {m!r}: cross-reenactment scores head and face modes")
    drivers = [Path(v) for v in drivers]
    for v in drivers:
        if not v.is_file():
            raise FaceflowError(f"driver video not found: {v}")
    names = [safe_name(v.stem) for v in drivers]
    if len(set(names)) < len(names):
        raise FaceflowError(f"two drivers share a name ({', '.join(map(str, drivers))}); rename one")
    dev = resolve_device(cfg.device)
    entries = [_model_entry(p, dev) for p in models]
    labels = [e["label"] for e in entries]
    if len(set(labels)) < len(labels):
        raise FaceflowError(f"two models share a target and flow ({', '.join(labels)}); evaluate them into "
                            "different --out folders")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fixed = {"max_frames": cfg.max_frames}
    RunState(out, {"format": FORMAT, "options": fixed}, match=("format", "options"), name="config.json",
             refuse=lambda prev: f"{out} holds cells made with other options ({prev.get('format')}, "
                                 f"{prev.get('options')}; now {FORMAT}, {fixed}); use another --out").save()
    command = command or shlex.join(["python", "-m", "evaluation.cross_reenact", "--models", *map(str, models),
                                     "--drivers", *map(str, drivers), "--out", str(out)])
    log_command(out, command, cfg, dev)
    emb, refs, computed = optional_embedder(say), {}, []
    cells = [(e, v, mode) for e in entries for v in drivers for mode in cfg.modes]
    for i, (e, v, mode) in enumerate(cells, 1):
        cell = out / "cells" / e["label"] / safe_name(v.stem) / mode
        tag = f"[{i}/{len(cells)}] {e['label']} <- {v.name} ({mode})"
        if (cell / "metrics.json").is_file():
            say(f"{tag}: finished earlier")
            continue
        if e["source_sha256"] and file_record(v, v.parent).get("sha256") == e["source_sha256"]:
            say(f"{tag}: skipped (the driver is the target's own training video)")
            continue
        say(tag)
        cell.mkdir(parents=True, exist_ok=True)
        r = _score_cell(e, v, mode, cell, out, cfg, emb, refs, command, dev, say)
        m = r["metrics"]
        say(f"  CSIM target {format_value(m['csim_target'], 3)}, source {format_value(m['csim_source'], 3)}, "
            f"AED {format_value(m['aed'], 3)}, ARD {format_value(m['ard'], 2)}")
        computed.append((e["label"], v.stem, mode))
    records = read_cells(out, "*/*/*/metrics.json", FORMAT)
    rows = write_tables(out, records)
    say(f"tables: {out / 'table.md'}, samples in {out / 'samples'}")
    return {"records": records, "rows": rows, "computed": computed}


if __name__ == "__main__":  # python -m evaluation.cross_reenact: the command of evaluation/commands/cross_reenact.py
    from evaluation.commands.cross_reenact import main

    sys.exit(main())

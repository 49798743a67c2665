#!/usr/bin/env python
"""Which layers does int8 hurt? One-at-a-time sensitivity of an exported model.

Quantises the checkpoint's fp32 ONNX model (static QDQ, as ``musemo-export``) once
with every layer in int8, then once per convolution / linear layer with only that
layer's module kept in float, and scores each on held-out *training* sub-clips (the
exporter's ``check`` set: neither calibrated on nor part of the validation split).
The modules whose float copy removes the most error are the candidates for
``--keep-float``; ``musemo.export.formats.KEEP_FLOAT`` holds the defaults found this way.

    python benchmarks/int8_sensitivity.py RUN/last.pt --calib DATA --cache CACHE

Prints a table (best first) and writes ``benchmarks/results/int8_sensitivity.json``
(or ``--json``) atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from musemo._atomic import write_text
from musemo.edge import ModelInfo, open_model
from musemo.export.onnx import export_onnx, quantize_onnx
from musemo.export.pipeline import export_data
from musemo.features import FeatureSpec
from musemo.training import load_checkpoint, model_from_checkpoint


def _score(path: Path, x: np.ndarray, reference: np.ndarray) -> dict:
    logits = open_model(path).logits(x)
    return {
        "agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
        "logit_rmse": float(np.sqrt(((logits - reference) ** 2).mean())),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--calib", required=True, help="the model's training recordings")
    p.add_argument("--cache", default=tempfile.gettempdir())
    p.add_argument("--calib-size", type=int, default=256)
    p.add_argument("--method", default="minmax", help="onnx calibration method")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/int8_sensitivity.json"))
    args = p.parse_args(argv)

    state = load_checkpoint(args.checkpoint)
    spec = FeatureSpec.from_dict(state["spec"])
    data = export_data(args.calib, state, cache=args.cache, calib_size=args.calib_size)
    if not len(data.check):
        sys.exit(f"{args.calib}: no training sub-clips left beyond the calibration set")
    model = model_from_checkpoint(state).eval()
    with torch.inference_mode():
        reference = model(torch.from_numpy(data.check)).numpy()
    calibration = [x[None] for x in data.calibration]
    info = ModelInfo(
        spec, tuple(state["labels"]), state["model"], "fp32", (-1, 1, *spec.clip_shape)
    )

    rows = []
    with tempfile.TemporaryDirectory(prefix="musemo-sensitivity-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, info, fp32)
        int8_info = ModelInfo(spec, info.labels, info.architecture, "int8", info.input_shape)
        layers = [
            n.name.split("/", 1)[0]
            for n in onnx.load(str(fp32)).graph.node
            if n.op_type in ("Conv", "Gemm") and "/" in n.name
        ]
        t0 = time.perf_counter()
        for i, kept in enumerate([None, *layers]):
            keep = () if kept is None else (kept,)
            quantize_onnx(fp32, int8_info, int8, calibration, method=args.method, keep_float=keep)
            rows.append({"kept_float": kept, **_score(int8, data.check, reference)})
            print(
                f"[{i + 1}/{len(layers) + 1}] {kept or 'all int8':<28} "
                f"rmse {rows[-1]['logit_rmse']:.4f} agreement {rows[-1]['agreement']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
            )

    base = rows[0]
    ranked = sorted(rows[1:], key=lambda r: r["logit_rmse"])
    print(f"\n{state['model']}, {len(data.check)} held-out training sub-clips, {args.method}")
    print(f"all int8: logit RMSE {base['logit_rmse']:.4f}, agreement {base['agreement']:.3f}\n")
    print("| kept in float | logit RMSE | change | agreement |\n|---|---|---|---|")
    for r in ranked[:12]:
        change = r["logit_rmse"] / base["logit_rmse"] - 1
        print(
            f"| {r['kept_float']} | {r['logit_rmse']:.4f} | {change:+.0%} | {r['agreement']:.3f} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "checkpoint": str(args.checkpoint),
        "model": state["model"],
        "method": args.method,
        "check_subclips": len(data.check),
        "all_int8": base,
        "ranked": ranked,
    }
    write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

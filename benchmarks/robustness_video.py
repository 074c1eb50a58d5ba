"""Robustness and speed of the video watermark, beside the image watermark applied frame by frame.

Clips are made at run time (:func:`distillguard.video._synthetic.synthetic_video`: a camera
panning over a synthetic scene, 1280×720, 25 fps, 10 s by default), watermarked with a random
32-bit payload each, then attacked with PyAV's encoders: H.264 and H.265 at CRF 28, trimmed to
5 s (from 2.2 s, timestamps restarting at 0) at CRF 28, resized to 0.5× at CRF 28, re-timed to
15 fps, all of trim + resize + CRF 28 together, and crops (10% of each side; to 4:3 off-centre;
10% of each side then 0.5×), not resized back. For each attack: TPR at FPR 1e-3 (exact
pooled p <= 1e-3), exact payload recovery, FP on unmarked clips put through the same attack.

Baseline in the same run: the image watermark (:func:`distillguard.image.embed_pixels`, the
same key and payload, the same pattern in every frame, no temporal code) detected on single
frames (:func:`distillguard.image.detect_pixels` on the middle frame of the attacked clip).

Speed: frames marked per second at 720p on one core (marking only, and the whole
decode-mark-encode loop with x264 ``veryfast``).

    .venv/bin/python benchmarks/robustness_video.py [--clips N] [--seconds S] [--only TEXT]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402

from distillguard.errors import InputError  # noqa: E402
from distillguard.image import detect_pixels, embed_pixels  # noqa: E402
from distillguard.keyring import WatermarkKey  # noqa: E402
from distillguard.video import detect_video, reencode, synthetic_video, watermark_video  # noqa: E402

FPR = 1e-3
ATTACKS: dict[str, dict[str, Any] | None] = {
    "none (CRF 18 output)": None,
    "H.264 CRF 28": {"crf": 28},
    "H.265 CRF 28": {"crf": 28, "codec": "libx265"},
    "trim to 5 s + CRF 28": {"start": 2.2, "duration": 5.0, "crf": 28},
    "0.5x resize + CRF 28": {"scale": 0.5, "crf": 28},
    "15 fps + CRF 28": {"fps": 15, "crf": 28},
    "trim 5 s + 0.5x + CRF 28": {"start": 2.2, "duration": 5.0, "scale": 0.5, "crf": 28},
    "crop 10% of each side + CRF 28": {"crop": 0.1, "crf": 28},
    "crop to 4:3 off-centre + CRF 28": {"crop_box": (0.05, 0.0, 0.2, 0.0), "crf": 28},
    "crop 10% + 0.5x + CRF 28": {"crop": 0.1, "scale": 0.5, "crf": 28},
}


def _image_marked(source: Path, dest: Path, *, payload: int, key: WatermarkKey) -> None:
    """Baseline: the image watermark on every frame (RGB), same pattern throughout."""
    with av.open(str(source)) as container, av.open(str(dest), "w") as output:
        stream = container.streams.video[0]
        out = output.add_stream("libx264", rate=stream.average_rate)
        out.width, out.height = stream.codec_context.width, stream.codec_context.height
        out.pix_fmt = "yuv420p"
        out.options = {"crf": "18", "preset": "veryfast"}
        for frame in container.decode(stream):
            rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            marked = embed_pixels(rgb, payload=payload, key=key)
            new = av.VideoFrame.from_ndarray(marked, format="rgb24")
            for packet in out.encode(new):
                output.mux(packet)
        for packet in out.encode():
            output.mux(packet)


def _middle_frame(path: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.asarray(frames[len(frames) // 2], dtype=np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clips", type=int, default=6, help="marked clips (and as many clean)")
    parser.add_argument(
        "--first", type=int, default=0, help="index of the first clip (to extend a run)"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument(
        "--only", default=None, help="run only the attacks whose name contains this text"
    )
    args = parser.parse_args()
    attacks = {k: v for k, v in ATTACKS.items() if args.only is None or args.only in k}
    key = WatermarkKey(kid="wm-video", created_at=datetime.now(UTC), secret=bytes(range(32)))
    rng = np.random.default_rng(26)
    for _ in range(args.first):  # the payloads of the clips before --first
        rng.integers(0, 2**32)
    folder = Path(tempfile.mkdtemp(prefix="dg-video-"))
    rows: dict[str, dict[str, int]] = {
        name: {"tp": 0, "exact": 0, "fp": 0, "base": 0} for name in attacks
    }
    mark_fps: list[float] = []
    total_fps: list[float] = []
    started = time.perf_counter()
    for clip in range(args.first, args.first + args.clips):
        payload = int(rng.integers(0, 2**32))
        source = synthetic_video(
            folder / f"src{clip}.mp4",
            seed=1000 + clip,
            seconds=args.seconds,
            width=args.width,
            height=args.height,
        )
        clean = synthetic_video(
            folder / f"clean{clip}.mp4",
            seed=5000 + clip,
            seconds=args.seconds,
            width=args.width,
            height=args.height,
        )
        marked = folder / f"marked{clip}.mp4"
        report = watermark_video(source, marked, payload=payload, key=key)
        mark_fps.append(report.frames / report.mark_seconds)
        total_fps.append(report.frames / report.total_seconds)
        baseline = folder / f"image{clip}.mp4"
        _image_marked(source, baseline, payload=payload, key=key)
        for name, attack in attacks.items():
            if attack is None:
                test, test_clean, test_base = marked, clean, baseline
            else:
                tag = f"{clip}-{abs(hash(name)) % 10_000}"
                test = reencode(marked, folder / f"a{tag}.mp4", **attack)
                test_clean = reencode(clean, folder / f"c{tag}.mp4", **attack)
                test_base = reencode(baseline, folder / f"b{tag}.mp4", **attack)
            found = detect_video(test, key=key)
            rows[name]["tp"] += found.p_value <= FPR
            rows[name]["exact"] += found.payload == payload
            clean_p = detect_video(test_clean, key=key).p_value
            rows[name]["fp"] += clean_p <= FPR
            try:
                single = detect_pixels(_middle_frame(test_base), key=key).p_value
            except InputError:  # a frame under 128 pixels a side: nothing to detect
                single = 1.0
            rows[name]["base"] += single <= FPR
            print(
                f"clip {clip} {name:26s} p={found.p_value:.1e} payload ok="
                f"{found.payload == payload} ({found.hypothesis}); clean p={clean_p:.2g}; "
                f"image mark, one frame: p={single:.1e}",
                flush=True,
            )
    n = args.clips
    print(
        f"\nMeasured {datetime.now(UTC):%Y-%m-%d}: {n} watermarked and {n} clean synthetic "
        f"{args.width}x{args.height} 25 fps clips of {args.seconds:.0f} s; "
        f"{time.perf_counter() - started:.0f} s in all; load average at the end "
        f"{os.getloadavg()[0]:.1f} ({os.cpu_count()} cores).\n"
    )
    print("| attack | TPR (p <= 1e-3) | payload exact | FP (clean) | image mark, one frame: TPR |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['tp'] / n:.2f} | {r['exact']}/{n} | {r['fp']}/{n} "
            f"| {r['base'] / n:.2f} |"
        )
    print(
        f"\nmarking: median {statistics.median(mark_fps):.0f} frames/s at "
        f"{args.width}x{args.height}; decode + mark + x264 veryfast encode: "
        f"{statistics.median(total_fps):.0f} frames/s (one process; x264 uses its own threads)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Test videos made at run time, and the re-encodings the robustness tests apply to them.

:func:`synthetic_video` pans a camera over a large :func:`~distillguard.image._synthetic.
synthetic_image` scene (slow drift plus a little shake and sensor noise) and encodes it with
H.264 through PyAV. :func:`reencode` re-encodes a video as a platform or an attacker would:
H.264 or H.265 at a CRF, resized, trimmed, at another frame rate. Nothing is downloaded.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from distillguard.image import synthetic_image
from distillguard.video._watermark import _av

__all__ = ["reencode", "synthetic_video"]


def synthetic_video(
    path: Path | str,
    *,
    seed: int,
    seconds: float = 6.0,
    fps: int = 25,
    width: int = 320,
    height: int = 240,
    crf: int = 14,
) -> Path:
    """Write a deterministic panning-scene H.264 video to ``path`` and return the path."""
    av = _av()
    rng = np.random.default_rng(seed)
    scene = synthetic_image(seed=seed, width=int(width * 1.6), height=int(height * 1.6))
    frames = round(seconds * fps)
    span_x, span_y = scene.shape[1] - width, scene.shape[0] - height
    angle = rng.uniform(0, 2 * np.pi)
    path = Path(path)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for i in range(frames):
            t = i / max(frames - 1, 1)
            x = int(span_x * (0.5 + 0.45 * np.cos(angle) * (2 * t - 1)) + rng.integers(-1, 2))
            y = int(span_y * (0.5 + 0.45 * np.sin(angle) * (2 * t - 1)) + rng.integers(-1, 2))
            x, y = int(np.clip(x, 0, span_x)), int(np.clip(y, 0, span_y))
            view = scene[y : y + height, x : x + width].astype(np.int16)
            view = view + rng.integers(-2, 3, size=view.shape, dtype=np.int16)
            frame = av.VideoFrame.from_ndarray(np.clip(view, 0, 255).astype(np.uint8), "rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def reencode(
    source: Path | str,
    dest: Path | str,
    *,
    crf: int = 28,
    codec: str = "libx264",
    scale: float = 1.0,
    start: float = 0.0,
    duration: float | None = None,
    fps: int | None = None,
    crop: float = 0.0,
    preset: str = "veryfast",
    crop_box: tuple[float, float, float, float] | None = None,
) -> Path:
    """Re-encode ``source``: trim to ``[start, start + duration)``, crop ``crop`` of each side
    (or the shares ``crop_box`` = (left, top, right, bottom) cut from each side), resize by
    ``scale``, resample to ``fps`` (nearest frame in time) and encode with ``codec`` at
    ``crf``. Output timestamps restart at 0, as a trimmed upload's do."""
    av = _av()
    dest = Path(dest)
    with av.open(str(source)) as container, av.open(str(dest), "w") as output:
        stream = container.streams.video[0]
        in_w, in_h = stream.codec_context.width, stream.codec_context.height
        box = crop_box or (crop, crop, crop, crop)
        left, top = int(in_w * box[0]), int(in_h * box[1])
        right, bottom = in_w - int(in_w * box[2]), in_h - int(in_h * box[3])
        width = int((right - left) * scale) // 2 * 2
        height = int((bottom - top) * scale) // 2 * 2
        rate = fps or stream.average_rate or 25
        out = output.add_stream(codec, rate=rate)
        out.width, out.height = width, height
        out.pix_fmt = "yuv420p"
        out.options = {"crf": str(crf), "preset": preset}
        if codec == "libx265":
            out.options = {**out.options, "x265-params": "log-level=error"}
        tick = 1 / Fraction(rate)
        out.time_base = tick
        next_time = 0.0
        written = 0
        for frame in container.decode(stream):
            seconds = float(frame.time or 0.0)
            if seconds < start:
                continue
            if duration is not None and seconds >= start + duration:
                break
            local = seconds - start
            if fps is not None and local + 1e-6 < next_time:
                continue  # frame-rate reduction: keep the frame nearest each output tick
            rgb = frame.to_ndarray(format="rgb24")
            if any(box):
                rgb = rgb[top:bottom, left:right]
            new = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            new = new.reformat(width=width, height=height, format="yuv420p")
            new.pts = written  # constant frame rate from 0
            new.time_base = tick
            if fps is not None:
                next_time = (written + 1) / fps
            written += 1
            for packet in out.encode(new):
                output.mux(packet)
        for packet in out.encode():
            output.mux(packet)
    return dest

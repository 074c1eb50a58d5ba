"""Issue 26: the video watermark (temporal code, pooled exact test) through real encoders.

Test videos are generated at run time (a camera panning over a synthetic scene) and re-encoded
with PyAV's libx264/libx265, as a platform or an attacker would.
"""

from __future__ import annotations

import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

pytest.importorskip("av")

from distillguard.errors import InputError
from distillguard.image import synthetic_image
from distillguard.keyring import WatermarkKey
from distillguard.video import (
    VideoWatermarkConfig,
    detect_frames,
    detect_video,
    frame_sign,
    mark_frame,
    reencode,
    synthetic_video,
    watermark_video,
)

PAYLOAD = 0xC0FFEE11


def make_key(seed: int) -> WatermarkKey:
    secret = np.random.default_rng(seed).bytes(32)
    return WatermarkKey(kid=f"wm-video-{seed}", created_at=datetime.now(UTC), secret=secret)


@pytest.fixture(scope="module")
def key() -> WatermarkKey:
    return make_key(1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, key: WatermarkKey) -> dict[str, Path]:
    """A 7 s 384×216 clip and its watermarked copy."""
    folder = tmp_path_factory.mktemp("video")
    source = synthetic_video(folder / "source.mp4", seed=11, seconds=7, width=384, height=216)
    marked = folder / "marked.mp4"
    report = watermark_video(source, marked, payload=PAYLOAD, key=key)
    assert report.frames == 175 and (report.width, report.height) == (384, 216)
    return {"source": source, "marked": marked, "folder": folder}


ATTACKS = {
    "H.264 CRF 28": {"crf": 28},
    "H.265 CRF 28": {"crf": 28, "codec": "libx265"},
    "trim to 5 s + CRF 28": {"start": 1.3, "duration": 5.0, "crf": 28},
    "0.5x resize + CRF 23": {"scale": 0.5, "crf": 23},
    "15 fps + CRF 28": {"fps": 15, "crf": 28},
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_payload_survives_reencoding(
    videos: dict[str, Path], key: WatermarkKey, attack: str
) -> None:
    out = videos["folder"] / f"{attack.replace(' ', '_')}.mp4"
    reencode(videos["marked"], out, **ATTACKS[attack])  # type: ignore[arg-type]
    result = detect_video(out, key=key)
    assert result.detected and result.p_value <= 1e-6, (attack, result.sync_matches)
    assert result.payload == PAYLOAD
    claim = detect_video(out, key=key, claimed_payload=PAYLOAD)
    assert claim.bit_accuracy == 1.0
    assert claim.p_value == pytest.approx(float(binom.sf(31, 32, 0.5)))


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory, key: WatermarkKey) -> dict[str, Path]:
    """A 5 s 640×360 clip and its watermarked copy (crops need chips of a few pixels left)."""
    folder = tmp_path_factory.mktemp("wide")
    source = synthetic_video(folder / "source.mp4", seed=2, seconds=5, width=640, height=360)
    marked = folder / "marked.mp4"
    watermark_video(source, marked, payload=PAYLOAD, key=key)
    return {"source": source, "marked": marked, "folder": folder}


CROPS = {
    "crop 10% of each side + CRF 28": {"crop": 0.1},
    "crop 15% of each side + CRF 28": {"crop": 0.15},
    "crop to 4:3, off-centre + CRF 28": {"crop_box": (0.05, 0.0, 0.2, 0.0)},
    "crop top 12%, right 8%, bottom 2% + CRF 28": {"crop_box": (0.0, 0.12, 0.08, 0.02)},
}


@pytest.mark.parametrize("attack", list(CROPS))
def test_crops_are_searched(wide: dict[str, Path], key: WatermarkKey, attack: str) -> None:
    out = wide["folder"] / f"{attack.replace(' ', '_')}.mp4"
    reencode(wide["marked"], out, crf=28, **CROPS[attack])  # type: ignore[arg-type]
    result = detect_video(out, key=key)
    assert result.detected and result.payload == PAYLOAD, (attack, result.sync_matches)
    assert result.hypothesis.startswith("crop period")
    # the two stages share the level: the smallest p-value is 2 * 2^-32
    assert result.p_value >= 2 * 2.0**-32
    # without the crop search the mark is missed
    assert not detect_video(out, key=key, search_crops=False).detected


def test_crop_search_p_values_are_valid_on_clean_frames() -> None:
    """P(p <= a) <= a with the crop search too (it runs on every clean clip)."""
    p = np.array(
        [
            detect_frames(_frames(seed, count=16), key=make_key(300 + k)).p_value
            for seed in range(5)
            for k in range(4)
        ]
    )
    for level in (0.1, 0.5):
        assert int(np.sum(p <= level)) <= int(binom.ppf(0.999, len(p), level))
    assert int(np.sum(p <= 1e-3)) == 0


def test_unmarked_and_wrong_key_not_detected(videos: dict[str, Path], key: WatermarkKey) -> None:
    clean = detect_video(videos["source"], key=key)
    assert not clean.detected and clean.payload is None
    other = detect_video(videos["marked"], key=make_key(2))
    assert not other.detected and other.payload is None
    # Reading only the first 5 s still finds it (payload recovery from a 5 s clip).
    head = detect_video(videos["marked"], key=key, max_seconds=5.0)
    assert head.payload == PAYLOAD and head.frames <= 126


def _frames(seed: int, count: int = 40) -> list[tuple[float, np.ndarray]]:
    rng = np.random.default_rng(seed)
    scene = synthetic_image(seed=seed, width=200, height=160)[..., 1]
    out = []
    for i in range(count):
        dx, dy = rng.integers(0, 8, size=2)
        frame = scene[dy : dy + 144, dx : dx + 192]
        out.append((i / 25.0, np.ascontiguousarray(frame)))
    return out


def test_pooled_p_values_are_valid_on_clean_frames() -> None:
    """P(p <= a) <= a with the offset and shift searches, measured on clean frames."""
    p = np.array(
        [
            detect_frames(_frames(seed), key=make_key(100 + k), search_crops=False).p_value
            for seed in range(6)
            for k in range(10)
        ]
    )
    for level in (0.05, 0.2, 0.5):
        assert int(np.sum(p <= level)) <= int(binom.ppf(0.999, len(p), level))
    assert int(np.sum(p <= 1e-3)) == 0


def test_temporal_code_flips_the_pattern(key: WatermarkKey) -> None:
    """Frames a block apart carry opposite patterns when the code says so (no static mark)."""
    cfg = VideoWatermarkConfig()
    luma = np.full((144, 192), 128, dtype=np.uint8)
    times = [b * cfg.block_seconds + 0.1 for b in range(16)]
    signs = [frame_sign(key, t, cfg) for t in times]
    assert 1.0 in signs and -1.0 in signs
    deltas = [mark_frame(luma, seconds=t, payload=1, key=key).astype(int) - 128 for t in times]
    for sign, delta in zip(signs, deltas, strict=True):
        assert np.array_equal(delta, deltas[0] * int(sign * signs[0]))


def test_in_memory_frames_round_trip(key: WatermarkKey) -> None:
    frames = [
        (t, mark_frame(f, seconds=t, payload=PAYLOAD, key=key)) for t, f in _frames(7, count=60)
    ]
    result = detect_frames(frames, key=key)
    assert result.payload == PAYLOAD and result.sync_matches == 32


def test_errors(tmp_path: Path, key: WatermarkKey) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError):
        detect_video(bad, key=key)
    with pytest.raises(InputError):
        detect_frames([], key=key)
    with pytest.raises(InputError):
        VideoWatermarkConfig(frame=100)
    with pytest.raises(InputError):
        watermark_video(bad, tmp_path / "out.mp4", payload=2**40, key=key)


def test_unreadable_or_videoless_input_is_an_input_error(tmp_path: Path, key: WatermarkKey) -> None:
    """Reading and watermarking open their input the same way, with the same messages."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    out = tmp_path / "out.mp4"
    for path, message in ((bad, "cannot read video"), (sound, "has no video stream")):
        with pytest.raises(InputError, match=message):
            detect_video(path, key=key)
        with pytest.raises(InputError, match=message):
            watermark_video(path, out, payload=1, key=key)
    assert not out.exists()

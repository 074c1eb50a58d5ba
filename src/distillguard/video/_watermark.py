"""Keyed invisible video watermark: the image watermark under a keyed temporal sign code.

The scheme (see ``docs/multimodal.md``):

* **Per frame.** Every frame's luma carries the image watermark's tile pattern
  (:mod:`distillguard.image._watermark`: sync bits fixed by the key, payload bits, local-activity
  mask), multiplied by a sign ``c(t) = ±1``. The canonical frame is coarser than for images
  (``frame`` = 128 pixels, 2×2 tiles, by default): chips twice as large survive a half-size
  re-encode of a 16:9 video at CRF 28, and the pooling over frames makes up for the fewer tiles.
* **Temporal code.** ``c(t) = code[floor(t / block_seconds) mod code_blocks]``, a keyed ±1
  sequence indexed by the frame's *time*, not its number, so that a change of frame rate keeps
  it. A constant pattern would be the same in every frame (averaging frames would reveal it and
  the static scene would add to it); under the code, the pattern flips from block to block and
  the scene does not.
* **Detection.** Every decoded frame's luma is resampled to the canonical 256×256 frame,
  whitened and folded onto one 64×64 tile; the folds are summed per quarter block. A trimmed
  clip starts anywhere in the code, so every offset (quarter-block steps over one code period)
  is tried: the pooled fold ``P_o = Σ c_o(q) G_q`` with the largest energy is kept (the mark
  adds coherently only at the right offset), then, among the few most energetic offsets, the
  one with the largest magnitude score; on it the image detector's fold correlation gives the
  sync and payload bits.

**Exact p-value.** The offsets are chosen from fold energies (which do not involve the key's
chip signs at all) and the spatial shift and final offset from correlation magnitudes, so the
argument of the image watermark carries over unchanged: under the null hypothesis flipping all
chips of one bit (as likely as not) flips that bit's correlation at every offset and shift and
changes nothing the search looked at. The number of sync bits matching the key is exactly
``Binomial(sync_bits, 1/2)`` with no search correction, and so is the number of payload bits
equal to a claimed payload.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy.stats import binom

from distillguard.errors import InputError
from distillguard.image import ImageWatermarkConfig
from distillguard.image.tiles import (
    CHIP,
    TILE,
    activity_mask,
    evaluate_fold,
    fold,
    key_patterns,
    payload_signs,
    signs_to_payload,
    whiten,
)
from distillguard.keyring import WatermarkKey

__all__ = [
    "VideoDetection",
    "VideoEmbedding",
    "VideoWatermarkConfig",
    "detect_frames",
    "detect_video",
    "frame_sign",
    "mark_frame",
    "watermark_video",
]

logger = logging.getLogger(__name__)

_DOMAIN = b"distillguard/video-watermark/v1"
#: Offsets are searched in steps of a quarter block.
_QUARTERS = 4
#: How many of the most energetic offsets are correlated (magnitude score) before choosing.
_OFFSETS_CHECKED = 6
#: Crop search: frames are kept at this square size (tile period 128 when uncropped) ...
_CROP_SIDE = 256
#: ... at most this many (30 s at 25 frames/s; later frames are not used by the crop search),
_CROP_FRAMES = 750
#: ... and the tile period is looked for at these lags (kept share of a side 0.64 to 1.03),
_CROP_LAGS = (124, 200)
#: ... from this many autocorrelation peaks per axis, whose pairs are ranked by the lattice
#: they predict; the best few pairs are the crop hypotheses.
_CROP_PEAKS = 3
_CROP_PAIRS = 9
#: ... and the search stops at a hypothesis with this magnitude score (an aligned mark scores
#: about 25-40, noise 10-15).
_STRONG = 20.0


@dataclass(frozen=True)
class VideoWatermarkConfig:
    """Parameters of the video watermark (the embedder and detector must agree on them).

    Args:
        frame: side of the canonical frame (128, 192 or 256; 2×2 to 4×4 tiles of 64).
        payload_bits: bits of payload (an account id), 16 to 64.
        sync_bits: key-fixed bits for blind detection, 16 to 64.
        strength: base amplitude of the per-frame pattern in luma levels.
        block_seconds: how long the temporal sign stays constant.
        code_blocks: length of the temporal code (its period is ``code_blocks × block_seconds``).
        crf: x264/x265 constant rate factor of the watermarked output (lower: better quality).
        preset: x264/x265 speed preset of the output.
        codec: ``libx264`` (H.264) or ``libx265`` (H.265).
    """

    frame: int = 128
    payload_bits: int = 32
    sync_bits: int = 32
    strength: float = 3.0
    block_seconds: float = 0.5
    code_blocks: int = 64
    crf: int = 18
    preset: str = "veryfast"
    codec: str = "libx264"

    def __post_init__(self) -> None:
        if not 0.1 <= self.block_seconds <= 10.0:
            raise InputError(f"block_seconds must be in 0.1..10, got {self.block_seconds}")
        if not 8 <= self.code_blocks <= 4096:
            raise InputError(f"code_blocks must be in 8..4096, got {self.code_blocks}")
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be in 0..51, got {self.crf}")
        if self.frame not in (128, 192, 256):
            raise InputError(f"frame must be 128, 192 or 256, got {self.frame}")
        if self.codec not in ("libx264", "libx265"):
            raise InputError(f"codec must be libx264 or libx265, got {self.codec!r}")
        self.image  # validates the bit counts and strength  # noqa: B018

    @property
    def image(self) -> ImageWatermarkConfig:
        """The per-frame image watermark parameters."""
        return ImageWatermarkConfig(
            payload_bits=self.payload_bits, sync_bits=self.sync_bits, strength=self.strength
        )


@dataclass(frozen=True)
class VideoDetection:
    """What :func:`detect_video` found in one video.

    Attributes:
        detected: ``p_value <= alpha``.
        p_value: exact p-value of "this video carries this key's watermark" (blind: sync bits)
            or, with a claim, of the claimed payload (payload bits).
        blind_p_value: the blind p-value, whether or not a payload was claimed.
        payload: the decoded payload, or ``None`` when the mark was not found (blind or claimed).
        sync_matches: sync bits matching the key.
        payload_matches: payload bits equal to the claim (None without a claim).
        bit_accuracy: ``payload_matches / payload_bits`` (None without a claim).
        frames: frames pooled; seconds: the time they span.
        offset_seconds: where in the temporal code the clip was found to start.
        hypothesis: the geometry the mark was read under (``frame``: uncropped; ``crop period
            PXxPY``: a crop whose tile period, in a 256-pixel square frame, was PX by PY).
    """

    detected: bool
    p_value: float
    blind_p_value: float
    payload: int | None
    sync_matches: int
    sync_bits: int
    payload_bits: int
    payload_matches: int | None
    bit_accuracy: float | None
    claimed_payload: int | None
    frames: int
    seconds: float
    offset_seconds: float
    alpha: float
    kid: str
    hypothesis: str = ""
    method: str = field(default="binomial sign test on frames pooled under the temporal code")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "detected": self.detected,
            "p_value": self.p_value,
            "blind_p_value": self.blind_p_value,
            "payload": self.payload,
            "sync_matches": self.sync_matches,
            "sync_bits": self.sync_bits,
            "payload_bits": self.payload_bits,
            "payload_matches": self.payload_matches,
            "bit_accuracy": self.bit_accuracy,
            "claimed_payload": self.claimed_payload,
            "frames": self.frames,
            "seconds": self.seconds,
            "offset_seconds": self.offset_seconds,
            "alpha": self.alpha,
            "kid": self.kid,
            "hypothesis": self.hypothesis,
            "method": self.method,
        }


@dataclass(frozen=True)
class VideoEmbedding:
    """What :func:`watermark_video` wrote."""

    frames: int
    seconds: float
    width: int
    height: int
    fps: float
    codec: str
    mark_seconds: float  # time spent marking frames (not decoding or encoding)
    total_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "frames": self.frames,
            "seconds": self.seconds,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "codec": self.codec,
            "mark_seconds": self.mark_seconds,
            "total_seconds": self.total_seconds,
        }


def _code(key: WatermarkKey, config: VideoWatermarkConfig) -> NDArray[np.float64]:
    sub = hmac.new(key.secret, _DOMAIN + b"\x01", hashlib.sha256).digest()
    rng = np.random.Generator(np.random.PCG64(np.frombuffer(sub, dtype=np.uint32).tolist()))
    return rng.choice(np.array([-1.0, 1.0]), size=config.code_blocks)


def frame_sign(
    key: WatermarkKey, seconds: float, config: VideoWatermarkConfig | None = None
) -> float:
    """The temporal code's sign (±1) of a frame shown at ``seconds``."""
    cfg = config or VideoWatermarkConfig()
    code = _code(key, cfg)
    return float(code[int(np.floor(seconds / cfg.block_seconds)) % cfg.code_blocks])


def _tile_pattern(
    key: WatermarkKey, payload: int, config: VideoWatermarkConfig
) -> NDArray[np.float32]:
    """The ±1 pattern of the canonical frame for this key and payload (sign +1)."""
    pats = key_patterns(key, config.image)
    bits = np.concatenate([pats.sync, payload_signs(payload, config.payload_bits)])
    chips = pats.tile_signs * bits[pats.chip_bit]
    tile = np.repeat(np.repeat(chips, CHIP, axis=0), CHIP, axis=1)
    reps = config.frame // TILE
    return np.tile(tile, (reps, reps)).astype(np.float32)


def _canonical(luma: NDArray[np.uint8], side: int) -> NDArray[np.float32]:
    small = Image.fromarray(luma).resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32)


def _mark(
    luma: NDArray[np.uint8], pattern: NDArray[np.float32], sign: float, strength: float
) -> NDArray[np.uint8]:
    side = pattern.shape[0]
    delta = pattern * activity_mask(_canonical(luma, side)) * np.float32(strength * sign)
    height, width = luma.shape
    fine = Image.fromarray(delta, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    out = luma.astype(np.float32) + np.asarray(fine, dtype=np.float32)
    return np.asarray(np.clip(np.rint(out), 0, 255), dtype=np.uint8)


def mark_frame(
    luma: NDArray[np.uint8],
    *,
    seconds: float,
    payload: int,
    key: WatermarkKey,
    config: VideoWatermarkConfig | None = None,
) -> NDArray[np.uint8]:
    """Watermark one frame's luma plane (H×W ``uint8``) shown at ``seconds``."""
    cfg = config or VideoWatermarkConfig()
    pattern = _tile_pattern(key, payload, cfg)
    return _mark(luma, pattern, frame_sign(key, seconds, cfg), cfg.strength)


def detect_frames(
    frames: Iterable[tuple[float, NDArray[np.uint8]]],
    *,
    key: WatermarkKey,
    claimed_payload: int | None = None,
    config: VideoWatermarkConfig | None = None,
    alpha: float = 1e-3,
    search_crops: bool = True,
) -> VideoDetection:
    """Detect the watermark in ``(seconds, luma)`` frames (H×W ``uint8``) and pool them.

    With ``search_crops`` (the default), when the uncropped frame does not show the mark, the
    tile period of a cropped video is estimated from the pooled autocorrelation of its first
    frames and the frames are rescaled so that the period is a tile again (see
    :func:`_crop_search`); the two stages share the level (weighted Bonferroni, 1/2 each).

    Raises:
        InputError: no frame, a bad claim or a bad ``alpha``.
    """
    cfg = config or VideoWatermarkConfig()
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    claimed = (
        payload_signs(claimed_payload, cfg.payload_bits) if claimed_payload is not None else None
    )
    quarter = cfg.block_seconds / _QUARTERS
    bins: dict[int, NDArray[np.float64]] = {}
    kept: list[tuple[float, NDArray[np.uint8]]] = []
    count = 0
    first = last = None
    for seconds, luma in frames:
        folded = fold(whiten(_canonical(luma, cfg.frame)))
        _add_bin(bins, int(np.floor(seconds / quarter)), folded)
        if search_crops and len(kept) < _CROP_FRAMES:
            kept.append((seconds, _square(luma, _CROP_SIDE)))
        count += 1
        first = seconds if first is None else min(first, seconds)
        last = seconds if last is None else max(last, seconds)
    if count == 0 or first is None or last is None:
        raise InputError("no video frame to examine")
    pats = key_patterns(key, cfg.image)
    code = _code(key, cfg)
    n_sync = cfg.sync_bits
    offset, hyp = _search_offsets(bins, code, cfg, pats, label="frame")
    reader = hyp  # the hypothesis whose payload bits are read
    # weighted Bonferroni over the two stages: uncropped 1/2, the crop hypothesis 1/2 (without
    # the crop search the uncropped test has weight 1)
    weight = 2.0 if search_crops else 1.0
    blind_p = min(1.0, weight * float(binom.sf(hyp.sync_matches - 1, n_sync, 0.5)))
    if search_crops and blind_p > alpha:
        crop = _crop_search(kept, code, cfg, pats, quarter)
        if crop is not None:
            crop_p = min(1.0, 2.0 * float(binom.sf(crop[1].sync_matches - 1, n_sync, 0.5)))
            if crop_p < blind_p:
                offset, hyp, size = crop
                blind_p = crop_p
                reader = hyp
                if hyp.sync_matches < n_sync:
                    # the p-value is fixed above; the payload is read after a polish of the
                    # frame size on magnitudes (reads sync signs only: the payload test of a
                    # claim stays exact)
                    reader = _polish_crop(kept, code, cfg, pats, quarter, size, hyp)
    payload_corr = reader.correlations[n_sync:]
    matches: int | None = None
    accuracy: float | None = None
    p_value = blind_p
    if claimed is not None:
        hits = int(np.sum(np.sign(payload_corr) == claimed))
        p_value = float(binom.sf(hits - 1, cfg.payload_bits, 0.5))
        matches, accuracy = hits, hits / cfg.payload_bits
    found = p_value <= alpha or blind_p <= alpha
    result = VideoDetection(
        detected=p_value <= alpha,
        p_value=p_value,
        blind_p_value=blind_p,
        payload=signs_to_payload(payload_corr) if found else None,
        sync_matches=hyp.sync_matches,
        sync_bits=n_sync,
        payload_bits=cfg.payload_bits,
        payload_matches=matches,
        bit_accuracy=accuracy,
        claimed_payload=claimed_payload,
        frames=count,
        seconds=float(last - first),
        offset_seconds=float(offset * quarter),
        alpha=alpha,
        kid=key.kid,
        hypothesis=hyp.label,
    )
    logger.debug(
        "video detection kid=%s frames=%d sync=%d/%d p=%.3g",
        key.kid,
        count,
        hyp.sync_matches,
        n_sync,
        p_value,
    )
    return result


def _add_bin(bins: dict[int, NDArray[np.float64]], index: int, folded: NDArray[np.float32]) -> None:
    if index in bins:
        bins[index] += folded
    else:
        bins[index] = folded.astype(np.float64)


def _square(luma: NDArray[np.uint8], side: int) -> NDArray[np.uint8]:
    small = Image.fromarray(luma).resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.uint8)


def _search_offsets(
    bins: dict[int, NDArray[np.float64]],
    code: NDArray[np.float64],
    cfg: VideoWatermarkConfig,
    pats: Any,
    *,
    label: str,
) -> tuple[int, Any]:
    """The code offset of the pooled fold with the largest energy, then among the most
    energetic the largest correlation magnitude: (offset in quarter blocks, hypothesis).
    Neither choice reads a chip sign of the key."""
    keys = np.array(sorted(bins), dtype=np.int64)
    stacked = np.stack([bins[int(k)].ravel() for k in keys])  # (Q, TILE²)
    period = cfg.code_blocks * _QUARTERS
    offsets = np.arange(period)
    # signs[o, q]: the code's sign of quarter-bin q if the clip starts o quarters into the code
    signs = code[((keys[None, :] + offsets[:, None]) // _QUARTERS) % cfg.code_blocks]
    pooled = signs @ stacked  # (O, TILE²)
    energy = np.einsum("ij,ij->i", pooled, pooled)
    best: tuple[int, Any] | None = None
    for offset in np.argsort(-energy)[:_OFFSETS_CHECKED]:
        folded = pooled[offset].reshape(TILE, TILE).astype(np.float32)
        hyp = evaluate_fold(folded, pats, f"{label} offset={offset}")
        if best is None or hyp.strength > best[1].strength:
            best = (int(offset), hyp)
    if best is None:  # pragma: no cover - there is always at least one offset
        raise InputError("no video frame to examine")
    return best


def _lag_peaks(profile: NDArray[np.float64]) -> list[float]:
    """The strongest local maxima of an autocorrelation profile within :data:`_CROP_LAGS`,
    to sub-pixel precision (parabola through the three samples around each)."""
    lo, hi = _CROP_LAGS
    seg = profile[lo : hi + 1]
    found: list[float] = []
    for i in np.argsort(seg)[::-1]:
        if 0 < i < len(seg) - 1 and seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1]:
            denom = seg[i - 1] - 2 * seg[i] + seg[i + 1]
            frac = 0.5 * (seg[i - 1] - seg[i + 1]) / denom if denom != 0 else 0.0
            found.append(lo + int(i) + float(np.clip(frac, -0.5, 0.5)))
            if len(found) == _CROP_PEAKS:
                break
    return found


def _crop_search(
    kept: list[tuple[float, NDArray[np.uint8]]],
    code: NDArray[np.float64],
    cfg: VideoWatermarkConfig,
    pats: Any,
    quarter: float,
) -> tuple[int, Any, tuple[int, int]] | None:
    """Find the mark in a cropped video: (offset, hypothesis, rescaled size) of the crop
    hypothesis with the largest correlation magnitude, or None when there is no frame.

    A crop keeping a share ``f`` of a side stretches the tile period of the square frame
    (128 at :data:`_CROP_SIDE` = 256) to ``128 / f``. The whitened squares are pooled under
    the temporal code (at the code offset of largest pooled energy, as for folds) and the
    period is read from the pooled square's autocorrelation along each axis; each pair of the
    strongest peaks (:data:`_CROP_PEAKS` per axis) is a hypothesis under which the frames are
    rescaled so that the period is one tile, then folded and pooled as usual. Nothing here
    reads a chip sign of the key (the code, energies, autocorrelations, correlation
    magnitudes), so the chosen hypothesis's sign test is exact.
    """
    if not kept:
        return None
    side = _CROP_SIDE
    padded = 2 * side
    # the whitened squares summed per quarter block, then pooled under the code at the offset
    # whose pooled square has the largest energy (the mark adds up only at the right one, the
    # moving scene does not): one square where the mark stands out of the scene
    sums: dict[int, NDArray[np.float64]] = {}
    for seconds, square in kept:
        _add_bin(sums, int(np.floor(seconds / quarter)), whiten(square.astype(np.float32)))
    keys = np.array(sorted(sums), dtype=np.int64)
    stacked = np.stack([sums[int(k)].ravel() for k in keys]).astype(np.float32)  # (Q, side²)
    offsets = np.arange(cfg.code_blocks * _QUARTERS)
    signs = code[((keys[None, :] + offsets[:, None]) // _QUARTERS) % cfg.code_blocks]
    gram = stacked @ stacked.T
    energy = np.einsum("oq,qr,or->o", signs, gram, signs)
    pooled = (signs[int(np.argmax(energy))] @ stacked).reshape(side, side)
    spectrum = np.fft.rfft2(pooled, s=(padded, padded))
    auto = np.fft.irfft2(spectrum.real**2 + spectrum.imag**2, s=(padded, padded))
    # divide by the overlap of the square with its shifted self: long lags overlap less
    overlap = (side - np.arange(padded).clip(max=side)).astype(np.float64) * side
    lags = np.arange(padded, dtype=np.float64)
    x_profile = auto[0, :] / np.maximum(overlap, 1.0)
    y_profile = auto[:, 0] / np.maximum(overlap, 1.0)
    x_peaks = _lag_peaks(x_profile)
    y_peaks = _lag_peaks(y_profile)
    # pairs by the sum of their axis peaks (the 2-D lattice points off the axes overlap the
    # frame too little to help); the strongest first, stopping at a strong one
    pairs = sorted(
        (
            (float(np.interp(lx, lags, x_profile) + np.interp(ly, lags, y_profile)), lx, ly)
            for lx in x_peaks
            for ly in y_peaks
        ),
        reverse=True,
    )[:_CROP_PAIRS]
    best: tuple[int, Any, tuple[int, int]] | None = None
    for _, lag_x, lag_y in pairs:
        size = (round(side * TILE / lag_x), round(side * TILE / lag_y))
        found = _crop_hypothesis(kept, code, cfg, pats, quarter, size)
        if best is None or found[1].strength > best[1].strength:
            best = (*found, size)
        if best[1].strength >= _STRONG:
            break
    return best


def _crop_hypothesis(
    kept: list[tuple[float, NDArray[np.uint8]]],
    code: NDArray[np.float64],
    cfg: VideoWatermarkConfig,
    pats: Any,
    quarter: float,
    size: tuple[int, int],
) -> tuple[int, Any]:
    """The kept squares rescaled to ``size`` (width, height), folded, pooled and tested."""
    bins: dict[int, NDArray[np.float64]] = {}
    for seconds, square in kept:
        small = Image.fromarray(square.astype(np.float32), mode="F").resize(
            size, Image.Resampling.BILINEAR
        )
        _add_bin(bins, int(np.floor(seconds / quarter)), fold(whiten(np.asarray(small))))
    lag_x, lag_y = _CROP_SIDE * TILE / size[0], _CROP_SIDE * TILE / size[1]
    return _search_offsets(bins, code, cfg, pats, label=f"crop period {lag_x:.1f}x{lag_y:.1f}")


def _polish_crop(
    kept: list[tuple[float, NDArray[np.uint8]]],
    code: NDArray[np.float64],
    cfg: VideoWatermarkConfig,
    pats: Any,
    quarter: float,
    size: tuple[int, int],
    hyp: Any,
) -> Any:
    """Coordinate ascent of the rescaled size (±1 to ±3 pixels on each axis) on the magnitude
    score: the hypothesis to read the payload from."""
    best, best_size = hyp, size
    for axis in (0, 1):
        start = best_size
        for step in (-3, -2, -1, 1, 2, 3):
            trial = (start[0] + step, start[1]) if axis == 0 else (start[0], start[1] + step)
            _, found = _crop_hypothesis(kept, code, cfg, pats, quarter, trial)
            if found.strength > best.strength:
                best, best_size = found, trial
    return best


# ----------------------------------------------------------------------------- files (PyAV)


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - the video extra is missing
        raise InputError(
            "video needs PyAV", hint="pip install 'distillguard[video]' (PyAV, FFmpeg inside)"
        ) from None
    return av


@contextmanager
def _input_video(av: Any, path: Path | str) -> Iterator[tuple[Any, Any]]:
    """The open container of a video file and its first video stream (threaded decoding);
    the container is closed on leaving.

    Raises:
        InputError: the file cannot be opened, or holds no video stream.
    """
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise InputError(f"cannot read video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream


def _luma_frames(
    path: Path, *, max_seconds: float | None
) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    av = _av()
    with _input_video(av, path) as (container, stream):
        start = None
        index = 0
        rate = float(stream.average_rate or 25)
        try:
            for frame in container.decode(stream):
                seconds = float(frame.time) if frame.time is not None else index / rate
                index += 1
                start = seconds if start is None else start
                if max_seconds is not None and seconds - start > max_seconds:
                    break
                yield seconds, frame.to_ndarray(format="gray")
        except av.FFmpegError as exc:
            raise InputError(f"cannot decode video {path}: {exc}") from None


def detect_video(
    path: Path | str,
    *,
    key: WatermarkKey,
    claimed_payload: int | None = None,
    config: VideoWatermarkConfig | None = None,
    alpha: float = 1e-3,
    max_seconds: float | None = None,
    search_crops: bool = True,
) -> VideoDetection:
    """Detect this key's watermark in a video file (any container and codec FFmpeg reads).

    Args:
        path: the suspect video.
        key: the watermark key.
        claimed_payload: when given, ``p_value`` tests that this payload is embedded.
        config: must match the embedding configuration.
        alpha: significance level for ``detected``.
        max_seconds: read at most this much of the video (from its first frame).
        search_crops: look for a cropped copy when the uncropped frame shows no mark (see
            :func:`detect_frames`).

    Raises:
        InputError: the file cannot be read or holds no video frame.
    """
    return detect_frames(
        _luma_frames(Path(path), max_seconds=max_seconds),
        key=key,
        claimed_payload=claimed_payload,
        config=config,
        alpha=alpha,
        search_crops=search_crops,
    )


def watermark_video(
    source: Path | str,
    dest: Path | str,
    *,
    payload: int,
    key: WatermarkKey,
    config: VideoWatermarkConfig | None = None,
) -> VideoEmbedding:
    """Watermark every frame of ``source`` and write ``dest`` (H.264 or H.265, ``yuv420p``).

    Frame times are kept (variable frame rate too). Audio and subtitle streams are not copied.

    Raises:
        InputError: unreadable input, no video stream, a bad payload or an unwritable output.
    """
    cfg = config or VideoWatermarkConfig()
    pattern = _tile_pattern(key, payload, cfg)
    av = _av()
    started = time.perf_counter()
    marking = 0.0
    code = _code(key, cfg)
    with _input_video(av, source) as (container, stream):
        rate = stream.average_rate or 25
        width = stream.codec_context.width // 2 * 2
        height = stream.codec_context.height // 2 * 2
        if min(width, height) < 128:
            raise InputError(f"{source}: video frames must be at least 128 pixels a side")
        try:
            output = av.open(str(dest), "w")
        except (OSError, av.FFmpegError) as exc:
            raise InputError(f"cannot write {dest}: {exc}") from None
        frames = 0
        first = last = 0.0
        with output:
            out = output.add_stream(cfg.codec, rate=rate)
            out.width, out.height = width, height
            out.pix_fmt = "yuv420p"
            out.time_base = stream.time_base
            out.options = {"crf": str(cfg.crf), "preset": cfg.preset}
            if cfg.codec == "libx265":
                out.options = {**out.options, "x265-params": "log-level=error"}
            try:
                for frame in container.decode(stream):
                    seconds = float(frame.time) if frame.time is not None else frames / rate
                    planes = frame.reformat(width=width, height=height, format="yuv420p")
                    yuv = planes.to_ndarray()
                    tick = time.perf_counter()
                    sign = float(code[int(np.floor(seconds / cfg.block_seconds)) % cfg.code_blocks])
                    yuv[:height] = _mark(
                        np.ascontiguousarray(yuv[:height]), pattern, sign, cfg.strength
                    )
                    marking += time.perf_counter() - tick
                    marked = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                    marked.pts = frame.pts
                    marked.time_base = frame.time_base
                    for packet in out.encode(marked):
                        output.mux(packet)
                    first = seconds if frames == 0 else first
                    last = seconds
                    frames += 1
                for packet in out.encode():
                    output.mux(packet)
            except av.FFmpegError as exc:
                raise InputError(f"cannot transcode {source}: {exc}") from None
    if frames == 0:
        raise InputError(f"{source} holds no video frame")
    return VideoEmbedding(
        frames=frames,
        seconds=last - first,
        width=width,
        height=height,
        fps=float(rate),
        codec=cfg.codec,
        mark_seconds=marking,
        total_seconds=time.perf_counter() - started,
    )

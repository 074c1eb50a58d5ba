"""Keyed invisible image watermark with a payload, blind detection and exact p-values.

The scheme (DistillGuard's own; see ``docs/multimodal.md``):

* **Canonical frame.** The luma (Y) channel is resampled to a fixed 256×256 frame, whatever the
  image size or aspect ratio, so that resizing the image does not move the watermark in it.
* **Tiled spread spectrum.** The frame is tiled 4×4 with one 64×64 tile made of 32×32 chips of
  2×2 frame pixels. A key-derived permutation assigns each chip to one of ``sync_bits +
  payload_bits`` bits and gives it a key-derived sign; a chip carries ``sign × bit``. Each bit is
  therefore spread over many chips (repetition coding with soft decisions), and the sync bits are
  fixed by the key.
* **Embedding.** The ±1 tile pattern, scaled by a local-activity mask (stronger in texture,
  weaker in flat areas), is upsampled to the image size and added to R, G and B alike, which
  changes Y by exactly that amount and leaves the chroma nearly untouched.
* **Detection.** The frame is whitened (each pixel minus its 3×3 neighbourhood mean, clipped),
  folded onto one tile (tiles summed), and correlated with every bit's chip template at every
  cyclic shift (FFT). The shift with the largest ``Σ|correlation|`` is chosen: a crop moves the
  tile grid, and the fold plus the shift search find it again. When the image was cropped *and*
  rescaled into the frame, the tile period changes; the detector estimates it from the
  autocorrelation of the whitened frame and tries a fixed number of period hypotheses.
* **Geometric synchronisation.** The tiling is its own synchronisation template: whatever linear
  map the image went through (rotation, scaling, aspect change, shear; a small perspective warp
  is close to one), the tile lattice becomes another lattice, visible as sharp peaks in the
  autocorrelation of the whitened frame. The detector finds the peaks, fits the two lattice
  vectors that best explain them (least squares over up to ten lattice points, sub-pixel), maps
  the frame back with the inverse map and runs the fold and shift search; at most
  :data:`GEO_HYPOTHESES` lattices, ranked by autocorrelation evidence, are tried.

**Exact p-values.** Under the null hypothesis (the image does not carry this key's watermark) the
key's chip signs are independent fair coins, so flipping the sign of all chips of one bit is as
likely as not: the correlation of each bit has a sign-symmetric distribution, and its sign is
independent of its magnitude. The shift is chosen from magnitudes only, so at the chosen shift the
signs of the sync-bit correlations are i.i.d. fair coins: the number ``m`` of sync bits that
match the key has an exact ``Binomial(sync_bits, 1/2)`` law, and ``P(X ≥ m)`` is an exact
p-value for the shift search. The hypotheses (the uncropped frame, then at most
:data:`GEO_HYPOTHESES` lattices and :data:`SLOW_HYPOTHESES` estimated periods) are combined with
a weighted Bonferroni bound (weight 1/2 for the frame, 1/4 shared by the lattices, 1/4 by the
periods), so the blind p-value accounts for the whole search. Lattices and periods are chosen
from the image's autocorrelation alone, never from the key, so under the null hypothesis each
one's test stays exact.
For a claimed payload, the payload bits at the chosen hypothesis are compared with the claim; the
choice used only sync signs and magnitudes, so their matches are again exactly binomial.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageChops
from scipy import ndimage
from scipy.stats import binom

from distillguard.errors import InputError
from distillguard.image._codec import (
    DecodedImage,
    check_pixels,
    decode_image,
    encode_image,
)
from distillguard.keyring import WatermarkKey

__all__ = [
    "FRAME",
    "GEO_HYPOTHESES",
    "SLOW_HYPOTHESES",
    "ImageDetection",
    "ImageWatermarkConfig",
    "detect_image",
    "detect_pixels",
    "embed_pixels",
    "watermark_image",
]

logger = logging.getLogger(__name__)

#: Side of the canonical frame, in frame pixels.
FRAME = 256
#: Side of one tile, in frame pixels (the frame holds 4×4 tiles).
TILE = 64
#: Side of one chip, in frame pixels.
CHIP = 2
_CHIPS = (TILE // CHIP) ** 2
#: How many period hypotheses the detector may try after the uncropped one (fixed in advance,
#: so that the Bonferroni weights are known before looking at the image).
SLOW_HYPOTHESES = 24
#: How many lattice (geometric) hypotheses the detector may try; fixed in advance, like
#: :data:`SLOW_HYPOTHESES`.
GEO_HYPOTHESES = 8
#: Bonferroni weights of the three stages of the search (they sum to 1).
_W_FRAME, _W_GEO, _W_PERIOD = 0.5, 0.25, 0.25
_DOMAIN = b"distillguard/image-watermark/v1"
#: Images with fewer pixels get the precise (float) embedding path, larger ones the fast one.
_FAST_PIXELS = 512 * 512


@dataclass(frozen=True)
class ImageWatermarkConfig:
    """Parameters of the image watermark (the embedder and detector must agree on them).

    Args:
        payload_bits: bits of payload (an account or cluster id), 16 to 64.
        sync_bits: key-fixed bits used for blind detection, 16 to 64; the smallest blind p-value
            is ``2**-sync_bits``.
        strength: base amplitude of the pattern in luma levels (0-255 scale); the local
            activity mask scales it between 0.6× and 2.5×.
        search_crops: try estimated tile periods when the uncropped hypothesis finds nothing
            (slower; needed for cropped-and-rescaled images).
        search_geometry: try the tile lattices seen in the autocorrelation when the uncropped
            hypothesis finds nothing (rotation, scaling, aspect change, shear, small perspective).
    """

    payload_bits: int = 32
    sync_bits: int = 32
    strength: float = 2.0
    search_crops: bool = True
    search_geometry: bool = True

    def __post_init__(self) -> None:
        if not 16 <= self.payload_bits <= 64:
            raise InputError(f"payload_bits must be in 16..64, got {self.payload_bits}")
        if not 16 <= self.sync_bits <= 64:
            raise InputError(f"sync_bits must be in 16..64, got {self.sync_bits}")
        if not 0.25 <= self.strength <= 16.0:
            raise InputError(f"strength must be in 0.25..16, got {self.strength}")

    @property
    def total_bits(self) -> int:
        """Sync plus payload bits."""
        return self.sync_bits + self.payload_bits


@dataclass(frozen=True)
class ImageDetection:
    """What :func:`detect_image` found in one image.

    Attributes:
        detected: ``p_value <= alpha``.
        p_value: exact-bound p-value of "this image carries this key's watermark" (blind: sync
            bits over the whole search) — or of the claimed payload when one was given.
        blind_p_value: the blind p-value, whether or not a payload was claimed.
        payload: the decoded payload bits (meaningful only when :attr:`payload_found`; the
            JSON form, :meth:`to_dict`, gives ``None`` otherwise).
        sync_matches: sync bits matching the key, out of ``sync_bits``.
        bit_accuracy: share of payload bits equal to the claimed payload (None without a claim).
        claimed_payload: the claim, if any.
        alpha: the significance level used for ``detected``.
        hypothesis: ``"frame"`` (no crop), ``"lattice=..."`` (geometric search: the 2×2 map
            from canonical to observed frame coordinates, row-major) or ``"period=PX×PY"``
            (crop search).
        hypotheses_tried: how many hypotheses the detector evaluated.
        method: the test used, for reports.
        kid: the watermark key id.
    """

    detected: bool
    p_value: float
    blind_p_value: float
    payload: int
    sync_matches: int
    sync_bits: int
    payload_bits: int
    bit_accuracy: float | None
    payload_matches: int | None
    claimed_payload: int | None
    alpha: float
    hypothesis: str
    hypotheses_tried: int
    kid: str
    method: str = field(default="binomial sign test, weighted Bonferroni over the search")

    @property
    def payload_found(self) -> bool:
        """The decoded payload means something: the mark was found blind, or the claim holds.

        Without a mark, the payload bits are the signs of noise: a random number, not a result.
        """
        return self.detected or self.blind_p_value <= self.alpha

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``payload`` is ``None`` unless :attr:`payload_found`)."""
        return {
            "detected": self.detected,
            "p_value": self.p_value,
            "blind_p_value": self.blind_p_value,
            "payload": self.payload if self.payload_found else None,
            "sync_matches": self.sync_matches,
            "sync_bits": self.sync_bits,
            "payload_bits": self.payload_bits,
            "bit_accuracy": self.bit_accuracy,
            "payload_matches": self.payload_matches,
            "claimed_payload": self.claimed_payload,
            "alpha": self.alpha,
            "hypothesis": self.hypothesis,
            "hypotheses_tried": self.hypotheses_tried,
            "kid": self.kid,
            "method": self.method,
        }


# ----------------------------------------------------------------------------- key material


@dataclass(frozen=True)
class _Patterns:
    sync: NDArray[np.float32]  # (sync_bits,) ±1
    tile_signs: NDArray[np.float32]  # (32, 32) chip signs
    chip_bit: NDArray[np.int64]  # (32, 32) bit index of each chip
    templates_fft: NDArray[np.complex64]  # (total_bits, TILE, TILE//2+1), conj of template FFT


_CACHE: dict[tuple[bytes, int, int], _Patterns] = {}
_CACHE_LOCK = threading.Lock()


def _subkey(key: WatermarkKey) -> bytes:
    # HKDF-Expand (RFC 5869) with the 32-byte secret as PRK and a domain label as info: one block.
    return hmac.new(key.secret, _DOMAIN + b"\x01", hashlib.sha256).digest()


def _patterns(key: WatermarkKey, config: ImageWatermarkConfig) -> _Patterns:
    sub = _subkey(key)
    ident = (hashlib.blake2b(sub, digest_size=16).digest(), config.sync_bits, config.payload_bits)
    with _CACHE_LOCK:
        cached = _CACHE.get(ident)
    if cached is not None:
        return cached
    rng = np.random.Generator(np.random.PCG64(np.frombuffer(sub, dtype=np.uint32).tolist()))
    n = config.total_bits
    sync = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=config.sync_bits)
    side = TILE // CHIP
    tile_signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(side, side))
    chip_bit = (rng.permutation(_CHIPS) % n).reshape(side, side).astype(np.int64)
    onehot = (chip_bit[None, :, :] == np.arange(n)[:, None, None]).astype(np.float32)
    templates = onehot * tile_signs[None, :, :]
    templates = np.repeat(np.repeat(templates, CHIP, axis=1), CHIP, axis=2)
    templates_fft = np.conj(np.fft.rfft2(templates)).astype(np.complex64)
    pats = _Patterns(
        sync=sync.astype(np.float32),
        tile_signs=tile_signs,
        chip_bit=chip_bit,
        templates_fft=templates_fft,
    )
    with _CACHE_LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[ident] = pats
    return pats


def _payload_signs(payload: int, bits: int) -> NDArray[np.float32]:
    if payload < 0 or payload >= 1 << bits:
        raise InputError(
            f"payload {payload} does not fit in {bits} bits",
            hint=f"use an integer in 0..{(1 << bits) - 1}",
        )
    values = [(payload >> i) & 1 for i in range(bits)]
    return np.where(np.array(values, dtype=bool), 1.0, -1.0).astype(np.float32)


def _signs_to_payload(signs: NDArray[np.float64]) -> int:
    out = 0
    for i, s in enumerate(signs.tolist()):
        if s > 0:
            out |= 1 << i
    return out


# ----------------------------------------------------------------------------- resampling


def _frame_of(image: Image.Image) -> NDArray[np.float32]:
    """The luma of an RGB or L image resampled to the FRAME×FRAME canonical frame."""
    gray = image if image.mode == "L" else image.convert("L")  # ITU-R 601 luma, in C
    small = gray.resize((FRAME, FRAME), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small, dtype=np.float32)


def _activity_mask(frame: NDArray[np.float32]) -> NDArray[np.float32]:
    local = frame - ndimage.uniform_filter(frame, size=3)
    energy = ndimage.uniform_filter(local * local, size=5)
    act = np.sqrt(np.maximum(energy, 0.0))
    return np.asarray(np.clip(act / 3.0, 0.6, 2.5), dtype=np.float32)


# ----------------------------------------------------------------------------- embedding


def embed_pixels(
    pixels: NDArray[np.uint8],
    *,
    payload: int,
    key: WatermarkKey,
    config: ImageWatermarkConfig | None = None,
) -> NDArray[np.uint8]:
    """Watermark decoded pixels (H×W×3 or H×W ``uint8``); returns new pixels of the same shape.

    Raises:
        InputError: the payload does not fit; ImageFormatError: bad array or size.
    """
    cfg = config or ImageWatermarkConfig()
    check_pixels(pixels)
    pats = _patterns(key, cfg)
    bits = np.concatenate([pats.sync, _payload_signs(payload, cfg.payload_bits)])
    chips = pats.tile_signs * bits[pats.chip_bit]
    tile = np.repeat(np.repeat(chips, CHIP, axis=0), CHIP, axis=1)
    reps = FRAME // TILE
    pattern = np.tile(tile, (reps, reps)).astype(np.float32)
    height, width = pixels.shape[:2]
    source = Image.fromarray(pixels)
    frame = _frame_of(source)
    delta_frame = pattern * _activity_mask(frame) * np.float32(cfg.strength)
    if width * height < _FAST_PIXELS:
        # Small image: upsample the delta in float and round once (precise; cheap at this size).
        fine = Image.fromarray(delta_frame, mode="F").resize(
            (width, height), Image.Resampling.BILINEAR
        )
        step = np.asarray(fine, dtype=np.float32)
        out = pixels.astype(np.float32) + (step if pixels.ndim == 2 else step[:, :, None])
        return np.asarray(np.clip(np.rint(out), 0, 255), dtype=np.uint8)
    # Large image: the delta goes up as 8-bit levels around 128 and is added with saturation in
    # C. The same integer delta on R, G and B shifts Y by that amount and leaves chroma alone.
    offset = np.clip(np.rint(delta_frame + 128.0), 0, 255).astype(np.uint8)
    delta = Image.fromarray(offset, mode="L").resize((width, height), Image.Resampling.BILINEAR)
    if pixels.ndim == 3:
        delta = Image.merge("RGB", [delta, delta, delta])
    marked = ImageChops.add(source, delta, scale=1.0, offset=-128)
    return np.asarray(marked, dtype=np.uint8).copy()


def watermark_image(
    image_bytes: bytes,
    *,
    payload: int,
    key: WatermarkKey,
    config: ImageWatermarkConfig | None = None,
    output_format: str | None = None,
    jpeg_quality: int = 95,
) -> bytes:
    """Watermark an encoded image and re-encode it (same format unless ``output_format``).

    Alpha channels are preserved (except in JPEG); CMYK and palette images come back as RGB.

    Raises:
        ImageFormatError: the bytes are not a usable image; InputError: bad payload.
    """
    decoded = decode_image(image_bytes)
    marked = embed_pixels(decoded.pixels, payload=payload, key=key, config=config)
    fmt = output_format or decoded.format
    if fmt.upper() not in ("JPEG", "JPG", "PNG", "WEBP", "TIFF"):
        fmt = "PNG"
    return encode_image(marked, alpha=decoded.alpha, format=fmt, quality=jpeg_quality)


# ----------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class _Hypothesis:
    label: str
    correlations: NDArray[np.float64]  # (total_bits,) at the chosen shift
    sync_matches: int
    p_value: float  # unadjusted sync p-value
    strength: float = 0.0  # Σ|correlation| at the chosen shift over the fold's norm (magnitudes)
    matrix: NDArray[np.float64] | None = None  # the lattice map, for lattice hypotheses


def _whiten(frame: NDArray[np.float32]) -> NDArray[np.float32]:
    resid = frame - ndimage.uniform_filter(frame, size=3)
    scale = float(np.median(np.abs(resid))) * 4.0 + 1e-3
    return np.asarray(np.clip(resid, -scale, scale), dtype=np.float32)


def _fold(white: NDArray[np.float32]) -> NDArray[np.float32]:
    h, w = white.shape
    if h % TILE == 0 and w % TILE == 0:
        return np.asarray(
            white.reshape(h // TILE, TILE, w // TILE, TILE).sum(axis=(0, 2)), dtype=np.float32
        )
    ys = (np.arange(h) % TILE)[:, None]
    xs = (np.arange(w) % TILE)[None, :]
    idx = (ys * TILE + xs).ravel()
    return (
        np.bincount(idx, weights=white.ravel(), minlength=TILE * TILE)
        .reshape(TILE, TILE)
        .astype(np.float32)
    )


def _evaluate(folded: NDArray[np.float32], pats: _Patterns, label: str) -> _Hypothesis:
    spectrum = np.fft.rfft2(folded).astype(np.complex64)
    corr = np.fft.irfft2(spectrum[None, :, :] * pats.templates_fft, s=(TILE, TILE), axes=(1, 2))
    score = np.abs(corr).sum(axis=0)
    flat = int(np.argmax(score))
    sy, sx = divmod(flat, TILE)
    c = corr[:, sy, sx].astype(np.float64)
    n_sync = pats.sync.shape[0]
    matches = int(np.sum(np.sign(c[:n_sync]) == pats.sync))
    p = float(binom.sf(matches - 1, n_sync, 0.5))
    strength = float(score[sy, sx]) / (float(np.linalg.norm(folded)) + 1e-9)
    return _Hypothesis(
        label=label, correlations=c, sync_matches=matches, p_value=p, strength=strength
    )


def _period_candidates(white: NDArray[np.float32]) -> list[tuple[float, float]]:
    spec = np.fft.rfft2(white)
    auto = np.fft.irfft2(np.abs(spec) ** 2, s=white.shape)
    lo, hi = TILE - 2, min(2 * TILE + 8, FRAME // 2)

    def peaks(profile: NDArray[np.float64]) -> list[float]:
        seg = profile[lo : hi + 1]
        order = np.argsort(seg)[::-1]
        found: list[float] = []
        for i in order[:16]:
            if 0 < i < len(seg) - 1 and seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1]:
                denom = seg[i - 1] - 2 * seg[i] + seg[i + 1]
                frac = 0.5 * (seg[i - 1] - seg[i + 1]) / denom if denom != 0 else 0.0
                found.append(lo + i + float(np.clip(frac, -0.5, 0.5)))
            if len(found) == 3:
                break
        return found or [float(TILE)]

    # Average a few rows/columns near lag 0 to steady the profiles.
    prof_x = auto[[0, 1, -1], :].mean(axis=0)[: FRAME // 2 + 9]
    prof_y = auto[:, [0, 1, -1]].mean(axis=1)[: FRAME // 2 + 9]
    # Crops usually keep the aspect ratio: one period for both axes first (both profiles
    # summed), refined on a small grid; then each axis on its own.
    iso = peaks(prof_x + prof_y)
    cands: list[tuple[float, float]] = []
    for dx in (0.0, -0.3, 0.3):
        for dy in (0.0, -0.3, 0.3):
            cands.append((iso[0] + dx, iso[0] + dy))
    px, py = peaks(prof_x), peaks(prof_y)
    cands.extend((p, p) for p in iso[1:])
    for ax in px:
        for ay in py:
            cands.append((ax, ay))
    unique: list[tuple[float, float]] = []
    for c in cands:
        if all(abs(c[0] - u[0]) > 0.05 or abs(c[1] - u[1]) > 0.05 for u in unique):
            unique.append(c)
    return unique[:SLOW_HYPOTHESES]


def _rescale_frame(
    frame: NDArray[np.float32], period_x: float, period_y: float
) -> NDArray[np.float32]:
    sx = TILE / period_x
    sy = TILE / period_y
    out_w = max(TILE, int(FRAME * sx))
    out_h = max(TILE, int(FRAME * sy))
    matrix = np.array([1.0 / sy, 1.0 / sx])
    out = ndimage.affine_transform(
        frame, matrix, output_shape=(out_h, out_w), order=1, mode="nearest"
    )
    return np.asarray(out, dtype=np.float32)


#: Lattice points (in units of the two lattice vectors) scored and fitted by the geometric search.
_LATTICE_POINTS = np.array(
    [(1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (1, 2), (2, -1), (1, -2)],
    dtype=np.float64,
)
#: Lattice points used to refine a pair (more and longer lags: finer estimates).
_FIT_POINTS = np.array(
    [(u, v) for u in range(0, 4) for v in range(-3, 4) if (u > 0 or v > 0)], dtype=np.float64
)
_ACF = 2 * FRAME  # zero-padded autocorrelation: linear, not cyclic, lags


def _acf_peaks_map(white: NDArray[np.float32]) -> NDArray[np.float64]:
    """The autocorrelation of the whitened frame, high-passed and standardised (z-scores).

    The tile pattern gives sharp peaks (a few pixels wide) on its lattice; image content gives
    smooth autocorrelation, which the high-pass (minus a Gaussian blur) removes. Lag (dx, dy) is
    at ``[dy + FRAME, dx + FRAME]``.
    """
    spec = np.fft.rfft2(white, s=(_ACF, _ACF))
    auto = np.fft.fftshift(np.fft.irfft2(np.abs(spec) ** 2, s=(_ACF, _ACF)))
    high = auto - ndimage.gaussian_filter(auto, 3.0)
    yy, xx = np.ogrid[-FRAME:FRAME, -FRAME:FRAME]
    radius = np.sqrt(xx * xx + yy * yy)
    ring = (radius >= 36) & (radius <= 180)
    return np.asarray((high - high[ring].mean()) / (high[ring].std() + 1e-12), dtype=np.float64)


def _z_at(zmax: NDArray[np.float64], points: NDArray[np.float64]) -> NDArray[np.float64]:
    ix = np.rint(points[..., 0]).astype(np.int64) + FRAME
    iy = np.rint(points[..., 1]).astype(np.int64) + FRAME
    inside = (ix >= 0) & (ix < _ACF) & (iy >= 0) & (iy < _ACF)
    values = zmax[np.clip(iy, 0, _ACF - 1), np.clip(ix, 0, _ACF - 1)]
    return np.asarray(np.where(inside, values, 0.0), dtype=np.float64)


def _subpixel(z: NDArray[np.float64], point: NDArray[np.float64]) -> NDArray[np.float64] | None:
    ix, iy = int(np.rint(point[0])) + FRAME, int(np.rint(point[1])) + FRAME
    if not (1 <= ix < _ACF - 1 and 1 <= iy < _ACF - 1):
        return None
    q = z[iy - 1 : iy + 2, ix - 1 : ix + 2]

    def vertex(a: float, b: float, c: float) -> float:
        d = a - 2 * b + c
        return float(np.clip(0.5 * (a - c) / d, -0.5, 0.5)) if d < 0 else 0.0

    return np.array(
        [
            ix - FRAME + vertex(q[1, 0], q[1, 1], q[1, 2]),
            iy - FRAME + vertex(q[0, 1], q[1, 1], q[2, 1]),
        ]
    )


def _lattice_candidates(
    white: NDArray[np.float32], limit: int = GEO_HYPOTHESES
) -> list[NDArray[np.float64]]:
    """Up to ``limit`` 2×2 maps (columns: the images of the canonical tile vectors / TILE).

    The 32 strongest autocorrelation peaks at lags of 36-136 frame pixels (tile periods from a
    shrink to 0.56× to a blow-up to 2.1×) are split into x-like and y-like vectors (within 30°
    of an axis: rotations up to about ±25°, with shear); every pair is scored by the summed
    z-scores at ten of the lattice points it predicts, and the best pairs are refined by least
    squares on the sub-pixel peaks they explain. Depends on the image only, never on the key.
    """
    z = _acf_peaks_map(white)
    zmax = ndimage.maximum_filter(z, size=3)
    yy, xx = np.ogrid[-FRAME:FRAME, -FRAME:FRAME]
    radius = np.sqrt(xx * xx + yy * yy)
    half = (yy > 0) | ((yy == 0) & (xx > 0))
    local = (z == ndimage.maximum_filter(z, size=5)) & (radius >= 36) & (radius <= 136) & half
    ys, xs = np.nonzero(local)
    order = np.argsort(z[ys, xs])[::-1][:32]
    peaks = np.stack([xs[order] - FRAME, ys[order] - FRAME], axis=1).astype(np.float64)
    angle = np.degrees(np.arctan2(peaks[:, 1], peaks[:, 0]))  # 0..180 (upper half plane)
    x_like = peaks[(angle <= 30.0) | (angle >= 150.0)]
    x_like = x_like * np.sign(x_like[:, :1])
    y_like = peaks[np.abs(angle - 90.0) <= 30.0]
    if len(x_like) == 0 or len(y_like) == 0:
        return []
    a = x_like[:, None, None, :]
    b = y_like[None, :, None, :]
    points = _LATTICE_POINTS[None, None, :, :1] * a + _LATTICE_POINTS[None, None, :, 1:] * b
    score = np.clip(_z_at(zmax, points), None, 12.0).sum(axis=2)
    ratio = np.hypot(x_like[:, 0], x_like[:, 1])[:, None] / np.hypot(y_like[:, 0], y_like[:, 1])
    score = np.where((ratio > 0.6) & (ratio < 1.67), score, -np.inf)
    maps: list[NDArray[np.float64]] = []
    for flat in np.argsort(score.ravel())[::-1][: 3 * limit]:
        i, j = divmod(int(flat), score.shape[1])
        if not np.isfinite(score[i, j]):
            break
        va, vb = x_like[i], y_like[j]
        # Two passes: the near lattice points first, then farther ones with the refined pair
        # (a far lag magnifies the error of the pair, hence is looked up only once it is small).
        for fit_points, reach in ((_LATTICE_POINTS, 200.0), (_FIT_POINTS, 240.0)):
            rows: list[NDArray[np.float64]] = []
            found: list[NDArray[np.float64]] = []
            for uv in fit_points:
                lag = uv[0] * va + uv[1] * vb
                if np.hypot(lag[0], lag[1]) > reach or _z_at(zmax, lag[None])[0] < 2.5:
                    continue
                sub = _subpixel(z, lag)
                if sub is not None:
                    rows.append(uv)
                    found.append(sub)
            if len(rows) >= 3:
                fit, *_ = np.linalg.lstsq(np.array(rows), np.array(found), rcond=None)
                va, vb = fit[0], fit[1]
        matrix = np.column_stack([va, vb]) / TILE
        if abs(np.linalg.det(matrix)) < 0.2:
            continue
        if any(np.abs(matrix - m).max() < 0.3 / TILE for m in maps):
            continue
        maps.append(matrix)
        if len(maps) == limit:
            break
    return maps


def _unwarp(white: NDArray[np.float32], matrix: NDArray[np.float64]) -> NDArray[np.float32]:
    """The whitened frame mapped back to canonical coordinates (outside: 0, no evidence)."""
    inverse = np.linalg.inv(matrix)
    corners = np.array([[0, 0], [FRAME, 0], [0, FRAME], [FRAME, FRAME]], dtype=np.float64)
    pre = (corners - FRAME / 2) @ inverse.T
    span = float((pre.max(axis=0) - pre.min(axis=0)).max())
    side = int(min(2 * FRAME, max(TILE, np.ceil(span / TILE) * TILE)))
    offset = np.array([FRAME / 2, FRAME / 2]) - matrix @ np.array([side / 2, side / 2])
    coeffs = (
        float(matrix[0, 0]),
        float(matrix[0, 1]),
        float(offset[0]),
        float(matrix[1, 0]),
        float(matrix[1, 1]),
        float(offset[1]),
    )
    warped = Image.fromarray(white, mode="F").transform(
        (side, side), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(warped, dtype=np.float32)


def _refined(white: NDArray[np.float32], hyp: _Hypothesis, pats: _Patterns) -> _Hypothesis:
    """Polish a detected lattice map for decoding: coordinate ascent on the magnitude score.

    Run when the map found the mark with some sync bits wrong (a sign of a slightly wrong map).
    Only magnitudes and sync signs steer it, so it leaves the tests exact: flipping every chip of
    a payload bit (as likely as not under the null) changes neither the magnitudes nor the sync
    signs, hence neither the decision to polish nor the polished map, and flips that bit's sign
    there. The blind p-value stays the one of the unpolished hypothesis. At most 24 evaluations.
    """
    if hyp.matrix is None:
        return hyp
    best = hyp
    matrix = hyp.matrix
    for step in (0.004, 0.002):
        budget = 12
        improved = True
        while improved and budget > 0:
            improved = False
            for index in range(4):
                for sign in (1.0, -1.0):
                    if budget == 0:
                        break
                    budget -= 1
                    trial = matrix.copy()
                    trial.flat[index] += sign * step
                    cand = _evaluate(_fold(_unwarp(white, trial)), pats, hyp.label)
                    if cand.strength > best.strength * 1.001:
                        best, matrix, improved = cand, trial, True
                        break
    return best


def detect_pixels(
    pixels: NDArray[np.uint8],
    *,
    key: WatermarkKey,
    claimed_payload: int | None = None,
    config: ImageWatermarkConfig | None = None,
    alpha: float = 1e-3,
) -> ImageDetection:
    """Detect the watermark in decoded pixels; see :func:`detect_image`."""
    cfg = config or ImageWatermarkConfig()
    check_pixels(pixels)
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    claimed = (
        _payload_signs(claimed_payload, cfg.payload_bits) if claimed_payload is not None else None
    )
    pats = _patterns(key, cfg)
    frame = _frame_of(Image.fromarray(pixels))
    white = _whiten(frame)
    hyps = [_evaluate(_fold(white), pats, "frame")]
    adjusted = [min(1.0, hyps[0].p_value / _W_FRAME)]
    if cfg.search_geometry and adjusted[0] > alpha:
        weight = _W_GEO / GEO_HYPOTHESES
        for matrix in _lattice_candidates(white):
            label = "lattice=" + ",".join(f"{v:.4f}" for v in matrix.ravel())
            hyp = replace(_evaluate(_fold(_unwarp(white, matrix)), pats, label), matrix=matrix)
            hyps.append(hyp)
            adjusted.append(min(1.0, hyp.p_value / weight))
            if adjusted[-1] <= alpha / 10:
                break
    if cfg.search_crops and min(adjusted) > alpha:
        weight = _W_PERIOD / SLOW_HYPOTHESES
        for period_x, period_y in _period_candidates(white):
            if abs(period_x - TILE) < 0.05 and abs(period_y - TILE) < 0.05:
                continue
            rescaled = _rescale_frame(frame, period_x, period_y)
            hyp = _evaluate(_fold(_whiten(rescaled)), pats, f"period={period_x:.2f}x{period_y:.2f}")
            hyps.append(hyp)
            adjusted.append(min(1.0, hyp.p_value / weight))
            if adjusted[-1] <= alpha / 10:
                break
    best = int(np.argmin(adjusted))
    hyp = hyps[best]
    blind_p = adjusted[best]
    payload_corr = hyp.correlations[cfg.sync_bits :]
    if hyp.matrix is not None and blind_p <= alpha and hyp.sync_matches < cfg.sync_bits:
        payload_corr = _refined(white, hyp, pats).correlations[cfg.sync_bits :]
    payload = _signs_to_payload(payload_corr)
    if claimed is not None:
        matches = int(np.sum(np.sign(payload_corr) == claimed))
        p_claim = float(binom.sf(matches - 1, cfg.payload_bits, 0.5))
        # Exact without a search correction: flipping every chip of one payload bit (as likely
        # as not under the key) flips that bit's sign at every shift and hypothesis and leaves
        # all magnitudes and sync signs, hence the choice of hypothesis, unchanged.
        p_value = p_claim
        accuracy: float | None = matches / cfg.payload_bits
        payload_matches: int | None = matches
    else:
        p_value = blind_p
        accuracy = None
        payload_matches = None
    result = ImageDetection(
        detected=p_value <= alpha,
        p_value=p_value,
        blind_p_value=blind_p,
        payload=payload,
        sync_matches=hyp.sync_matches,
        sync_bits=cfg.sync_bits,
        payload_bits=cfg.payload_bits,
        bit_accuracy=accuracy,
        payload_matches=payload_matches,
        claimed_payload=claimed_payload,
        alpha=alpha,
        hypothesis=hyp.label,
        hypotheses_tried=len(hyps),
        kid=key.kid,
    )
    logger.debug(
        "image detection kid=%s hypothesis=%s sync=%d/%d p=%.3g",
        key.kid,
        hyp.label,
        hyp.sync_matches,
        cfg.sync_bits,
        p_value,
    )
    return result


def detect_image(
    image_bytes: bytes,
    *,
    key: WatermarkKey,
    claimed_payload: int | None = None,
    config: ImageWatermarkConfig | None = None,
    alpha: float = 1e-3,
    name: str = "image",
) -> ImageDetection:
    """Detect this key's watermark in an encoded image and decode its payload.

    Args:
        image_bytes: the suspect image (JPEG, PNG, WebP, TIFF ...).
        key: the watermark key (``Keyring.watermark_key(kid)``).
        claimed_payload: when given, ``p_value`` tests that this payload is embedded (binomial
            tail on matching payload bits) and ``bit_accuracy`` is reported.
        config: must match the embedding configuration.
        alpha: significance level for ``detected``.
        name: how errors name the image.

    Raises:
        ImageFormatError: the bytes are not a usable image.
    """
    decoded: DecodedImage = decode_image(image_bytes, name=name)
    return detect_pixels(
        decoded.pixels, key=key, claimed_payload=claimed_payload, config=config, alpha=alpha
    )

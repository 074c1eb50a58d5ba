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
  autocorrelation of the whitened frame and as harmonics in its spectrum. The detector proposes
  up to :data:`GEO_EXAMINED` maps from autocorrelation peaks (pairs of peaks, single peaks
  completed by a similarity of the picture, least-squares sub-pixel fits), polishes every map
  on the spectral coherence (the whitened power at its harmonics), then folds and correlates
  the most coherent ones until one gives a strong magnitude score; if none does, the crop
  periods are tried as above.

**Exact p-values.** Under the null hypothesis (the image does not carry this key's watermark) the
key's chip signs are independent fair coins, so flipping the sign of all chips of one bit is as
likely as not: the correlation of each bit has a sign-symmetric distribution, and its sign is
independent of its magnitude. The shift is chosen from magnitudes only, so at the chosen shift the
signs of the sync-bit correlations are i.i.d. fair coins: the number ``m`` of sync bits that
match the key has an exact ``Binomial(sync_bits, 1/2)`` law, and ``P(X ≥ m)`` is an exact
p-value for the shift search. The same holds for any choice made from the image and from
magnitudes: the maps are proposed and polished from the image alone, and the maps tested are the
:data:`GEO_HYPOTHESES` with the largest magnitude scores (``Σ|correlation|``), so each tested
map's sign test is exact too. The uncropped frame (weight 1/2) and the tested maps (1/2 shared)
are combined with a weighted Bonferroni bound, so the blind p-value covers the whole search.
For a claimed payload, the payload bits at the chosen hypothesis are compared with the claim; the
choice used only sync signs and magnitudes, so their matches are again exactly binomial.
"""

from __future__ import annotations

import functools
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
    "GEO_EXAMINED",
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
#: How many crop periods (estimated from the autocorrelation) the detector may propose as maps.
SLOW_HYPOTHESES = 24
#: How many lattice maps (geometric hypotheses) the detector may propose from autocorrelation
#: peaks; every proposed map is polished on the spectral coherence.
GEO_EXAMINED = 24
#: How many of the checked maps (lattices and periods) are tested: those with the largest
#: magnitude score. Fixed in advance: the Bonferroni weight of each is ``1/2 / GEO_HYPOTHESES``.
GEO_HYPOTHESES = 8
#: Bonferroni weight of the uncropped hypothesis; the tested maps share the rest.
_W_FRAME = 0.5
#: Magnitude score (Σ|correlation| at the best shift over the fold's norm) at which the search
#: stops: noise gives 7-16, an aligned mark 18-35 in the robustness runs. Reads no sign.
_STRONG = 20.0
#: How many of the most coherent maps are checked (fold and correlation) when none was strong.
_CHECKED = 8
#: Canonical frequencies (cycles per frame pixel, rows (fx, fy)) of the tile lattice used by the
#: coherence: a half plane of harmonics 2-16 of the 64-pixel tile (the 2-pixel chips put most
#: of their energy below harmonic 16; the lowest harmonics are the picture's).
_HARMONICS = (
    np.array(
        [
            (u, v)
            for u in range(-16, 17)
            for v in range(0, 17)
            if (v > 0 or u > 0) and max(abs(u), abs(v)) >= 2
        ],
        dtype=np.float64,
    )
    / 64.0
)
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
        hypotheses_tried: how many hypotheses the detector examined (the frame and every
            geometric map it proposed and polished); at most ``1 + GEO_HYPOTHESES`` are tested.
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
    """The key's chip-to-bit map, chip signs, sync bits and correlation templates (cached)."""
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
    """``payload`` as ``bits`` ±1 values (bit ``j`` is ``(payload >> j) & 1``).

    Raises:
        InputError: the payload does not fit in ``bits`` bits.
    """
    if payload < 0 or payload >= 1 << bits:
        raise InputError(
            f"payload {payload} does not fit in {bits} bits",
            hint=f"use an integer in 0..{(1 << bits) - 1}",
        )
    values = [(payload >> i) & 1 for i in range(bits)]
    return np.where(np.array(values, dtype=bool), 1.0, -1.0).astype(np.float32)


def _signs_to_payload(signs: NDArray[np.float64]) -> int:
    """The payload whose bit ``j`` is set where ``signs[j] > 0``."""
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
    """The embedding gain per pixel of a canonical frame: 0.6 in flat areas, up to 2.5 in
    texture."""
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
    return _embed_signed(pixels, payload=payload, key=key, config=cfg, sign=1.0)


def _embed_signed(
    pixels: NDArray[np.uint8],
    *,
    payload: int,
    key: WatermarkKey,
    config: ImageWatermarkConfig,
    sign: float,
) -> NDArray[np.uint8]:
    """:func:`embed_pixels` with the whole pattern multiplied by ``sign`` (±1; video frames)."""
    cfg = config
    pats = _patterns(key, cfg)
    bits = np.concatenate([pats.sync, _payload_signs(payload, cfg.payload_bits)]) * np.float32(sign)
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
    """Each pixel minus its 3×3 mean, clipped at 4× the median absolute residual."""
    resid = frame - ndimage.uniform_filter(frame, size=3)
    scale = float(np.median(np.abs(resid))) * 4.0 + 1e-3
    return np.asarray(np.clip(resid, -scale, scale), dtype=np.float32)


def _fold(white: NDArray[np.float32]) -> NDArray[np.float32]:
    """The frame's TILE×TILE tiles summed onto one (pixel ``(y, x)`` to ``(y % TILE, x %
    TILE)``, any frame size)."""
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
    """Correlate a fold with every bit's template at all cyclic shifts; at the shift with the
    largest summed magnitude, the bits' correlations, sync matches, p-value and strength."""
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
_PEAKS = 96  # autocorrelation peaks considered by the lattice search


@functools.lru_cache(maxsize=1)
def _acf_geometry() -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
    """Ring index of every lag, the high-pass transfer function, the lags searched for peaks."""
    yy, xx = np.ogrid[-FRAME:FRAME, -FRAME:FRAME]
    radius = np.sqrt(xx * xx + yy * yy)
    ring = (radius / 4.0).astype(np.int64)
    fy = np.fft.fftfreq(_ACF)[:, None]
    fx = np.fft.rfftfreq(_ACF)[None, :]
    # 1 - the transfer function of a Gaussian blur of σ = 3 lags: a high-pass.
    high_pass = 1.0 - np.exp(-2.0 * np.pi**2 * 9.0 * (fx * fx + fy * fy))
    half = (yy > 0) | ((yy == 0) & (xx > 0))
    searched = (radius >= 36) & (radius <= 136) & half
    return ring, high_pass, searched


def _padded_power(white: NDArray[np.float32]) -> NDArray[np.float64]:
    """Power spectrum of the whitened frame zero-padded to 512×512 (``rfft2`` layout)."""
    spec = np.fft.rfft2(white, s=(_ACF, _ACF))
    return np.asarray(spec.real**2 + spec.imag**2, dtype=np.float64)


def _coherence_map(power: NDArray[np.float64]) -> NDArray[np.float32]:
    """The power spectrum over its local mean (9×9 bins): about 1 where there is no lattice."""
    local = ndimage.uniform_filter(power, size=9, mode="wrap")
    return np.asarray(power / (local + 1e-9), dtype=np.float32)


def _coherence(
    flat: NDArray[np.float32],
    matrices: NDArray[np.float64],
    harmonics: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """How well each 2×2 map explains the spectrum: mean whitened power at its harmonics.

    If the frame holds the canonical pattern mapped by ``M`` (frame = M · canonical), its
    spectrum has the pattern's harmonics ``k`` at ``M^-T k``. Read with bilinear interpolation
    in the padded spectrum; uses the image only (no key). ``matrices`` is (K, 2, 2).
    """
    inverse = np.linalg.inv(matrices)  # (K, 2, 2)
    chosen = _HARMONICS if harmonics is None else harmonics
    freq = np.matmul(chosen[None], inverse) * _ACF  # (K, n, 2): bins (fx, fy)
    sign = np.where(freq[..., 0] < 0, -1.0, 1.0)  # the rfft half plane: conjugate symmetry
    width = flat.shape[1]
    fx = np.clip(freq[..., 0] * sign, 0.0, width - 2.0)
    fy = freq[..., 1] * sign
    x0 = fx.astype(np.int64)
    fy_floor = np.floor(fy)
    wx, wy = fx - x0, fy - fy_floor
    y0 = fy_floor.astype(np.int64) % _ACF
    above = y0 * width + x0
    below = ((y0 + 1) % _ACF) * width + x0
    values = flat.ravel()
    top = values[above] + wx * (values[above + 1] - values[above])
    bottom = values[below] + wx * (values[below + 1] - values[below])
    return np.asarray((top + wy * (bottom - top)).mean(axis=1), dtype=np.float64)


#: The eight moves of the polish: one entry of the map up or down by one step.
_STEPS = np.stack([sign * np.eye(4)[i].reshape(2, 2) for i in range(4) for sign in (1.0, -1.0)])


def _polish(
    flat: NDArray[np.float32], matrices: NDArray[np.float64], steps: tuple[float, ...]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Ascent of the coherence over the four entries of each map, one step size after another.

    An autocorrelation peak locates a lattice vector to a fraction of a pixel, which over the
    four tiles of the frame can still leave the chips misaligned; the coherence, read at
    hundreds of harmonics at once, pins the map down. At each step size the eight one-entry
    moves are tried, and every entry takes its better move if that helps (or, if the moves
    interfere, the single best move is taken). All maps (N, 2, 2) at once; key-free.
    """
    count = len(matrices)
    if count == 0:
        return matrices, np.zeros(0)
    best = _coherence(flat, matrices)
    for step in steps:
        trials = matrices[:, None] + step * _STEPS[None]  # (N, 8, 2, 2)
        values = _coherence(flat, trials.reshape(-1, 2, 2)).reshape(count, 8)
        up, down = values[:, 0::2], values[:, 1::2]  # (N, 4) per entry
        helps = np.maximum(up, down) > best[:, None]
        move = np.where(helps, np.where(up >= down, step, -step), 0.0)
        joint = matrices + move.reshape(count, 2, 2)
        joint_value = _coherence(flat, joint)
        top = np.argmax(values, axis=1)
        top_value = values[np.arange(count), top]
        take_joint = helps.any(axis=1) & (joint_value > best)
        take_single = ~take_joint & (top_value > best)
        single = matrices + step * _STEPS[top]
        matrices = np.where(
            take_joint[:, None, None], joint, np.where(take_single[:, None, None], single, matrices)
        )
        best = np.where(take_joint, joint_value, np.where(take_single, top_value, best))
    return matrices, best


def _acf_peaks_map(power: NDArray[np.float64]) -> NDArray[np.float32]:
    """The autocorrelation of the whitened frame, high-passed and standardised (z-scores).

    The tile pattern gives sharp peaks (a few pixels wide) on its lattice; image content gives
    smooth autocorrelation, which the high-pass (minus a Gaussian blur, applied in the Fourier
    domain) removes. Lag (dx, dy) is at ``[dy + FRAME, dx + FRAME]``.
    """
    ring, high_pass, _ = _acf_geometry()
    high = np.fft.fftshift(np.fft.irfft2(power * high_pass, s=(_ACF, _ACF)))
    # Standardised per ring of 4 lags: the picture's leftover autocorrelation fades with the
    # lag, so one global scale would favour short lags (small, false lattices).
    flat = ring.ravel()
    count = np.maximum(np.bincount(flat), 1)
    mean = np.bincount(flat, weights=high.ravel()) / count
    power_ring = np.bincount(flat, weights=(high * high).ravel()) / count
    std = np.sqrt(np.maximum(power_ring - mean * mean, 0.0)) + 1e-12
    return np.asarray((high - mean[ring]) / std[ring], dtype=np.float32)


def _z_at(zmax: NDArray[np.float32], points: NDArray[np.float64]) -> NDArray[np.float64]:
    ix = np.rint(points[..., 0]).astype(np.int64) + FRAME
    iy = np.rint(points[..., 1]).astype(np.int64) + FRAME
    inside = (ix >= 0) & (ix < _ACF) & (iy >= 0) & (iy < _ACF)
    values = zmax[np.clip(iy, 0, _ACF - 1), np.clip(ix, 0, _ACF - 1)]
    return np.asarray(np.where(inside, values, 0.0), dtype=np.float64)


def _subpixel(z: NDArray[np.float32], points: NDArray[np.float64]) -> NDArray[np.float64]:
    """The peaks near ``points`` (n, 2), located by a parabola through 3 lags on each axis."""
    ix = np.clip(np.rint(points[:, 0]).astype(np.int64) + FRAME, 1, _ACF - 2)
    iy = np.clip(np.rint(points[:, 1]).astype(np.int64) + FRAME, 1, _ACF - 2)
    centre = z[iy, ix].astype(np.float64)

    def vertex(before: NDArray[np.float64], after: NDArray[np.float64]) -> NDArray[np.float64]:
        curve = before - 2 * centre + after
        safe = np.where(curve < 0, curve, -1.0)
        return np.where(curve < 0, np.clip(0.5 * (before - after) / safe, -0.5, 0.5), 0.0)

    dx = vertex(z[iy, ix - 1].astype(np.float64), z[iy, ix + 1].astype(np.float64))
    dy = vertex(z[iy - 1, ix].astype(np.float64), z[iy + 1, ix].astype(np.float64))
    return np.stack([ix - FRAME + dx, iy - FRAME + dy], axis=1)


def _fit_lattice(
    z: NDArray[np.float32],
    zmax: NDArray[np.float32],
    va: NDArray[np.float64],
    vb: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Refine a pair of lattice vectors by least squares on the sub-pixel peaks they predict.

    Two passes: the near lattice points first, then farther ones with the refined pair (a far
    lag magnifies the error of the pair, hence is looked up only once that error is small).
    """
    for fit_points, reach in ((_LATTICE_POINTS, 200.0), (_FIT_POINTS, 240.0)):
        lags = fit_points[:, :1] * va + fit_points[:, 1:] * vb
        keep = (np.hypot(lags[:, 0], lags[:, 1]) <= reach) & (_z_at(zmax, lags) >= 2.5)
        if int(keep.sum()) < 3:
            continue
        rows = fit_points[keep]
        found = _subpixel(z, lags[keep])
        fit, *_ = np.linalg.lstsq(rows, found, rcond=None)
        va, vb = fit[0], fit[1]
    return va, vb


def _lattice_candidates(
    power: NDArray[np.float64], *, aspect: float = 1.0, limit: int = GEO_EXAMINED
) -> list[NDArray[np.float64]]:
    """Up to ``limit`` 2×2 maps (columns: the images of the canonical tile vectors / TILE).

    The strongest autocorrelation peaks at lags of 36-136 frame pixels (tile periods from a
    shrink to 0.56× to a blow-up to 2.1×) are split into x-like and y-like vectors (within 30°
    of an axis: rotations up to about ±25°, with shear). Candidates are (a) pairs of an x-like
    and a y-like peak and (b) single peaks completed by a similarity of the image (rotation and
    uniform scale of the picture, whose ``height / width`` is ``aspect``: the partner peak
    may be too weak to be listed). Each is scored by the summed z-scores at ten lattice points
    it predicts; the best, refined by least squares on sub-pixel peaks, come first. Depends on
    the image only, never on the key.
    """
    z = _acf_peaks_map(power)
    zmax = ndimage.maximum_filter(z, size=3)
    _, _, searched = _acf_geometry()
    # Peaks are looked for at lags up to 136 only: a window of ±140 around lag 0.
    lo, hi = FRAME - 140, FRAME + 141
    window = z[lo:hi, lo:hi]
    local = (window == ndimage.maximum_filter(window, size=5)) & searched[lo:hi, lo:hi]
    ys, xs = np.nonzero(local)
    ys, xs = ys + lo, xs + lo
    order = np.argsort(z[ys, xs])[::-1][:_PEAKS]
    peaks = np.stack([xs[order] - FRAME, ys[order] - FRAME], axis=1).astype(np.float64)
    angle = np.degrees(np.arctan2(peaks[:, 1], peaks[:, 0]))  # 0..180 (upper half plane)
    is_x = (angle <= 30.0) | (angle >= 150.0)
    is_y = np.abs(angle - 90.0) <= 30.0
    x_like = peaks[is_x] * np.sign(peaks[is_x][:, :1])
    y_like = peaks[is_y]
    k2 = aspect * aspect
    # (b) completions: in frame coordinates a similarity of the picture maps the tile vector
    # (64, 0) to (a, b) and (0, 64) to (-b k², a), k = height / width.
    singles_a = np.concatenate([x_like[:12], np.stack([y_like[:12, 1], -y_like[:12, 0] / k2], 1)])
    singles_b = np.concatenate([np.stack([-x_like[:12, 1] * k2, x_like[:12, 0]], 1), y_like[:12]])
    pairs_a: list[NDArray[np.float64]] = [singles_a]
    pairs_b: list[NDArray[np.float64]] = [singles_b]
    if len(x_like) and len(y_like):
        ii, jj = np.meshgrid(np.arange(len(x_like)), np.arange(len(y_like)), indexing="ij")
        pairs_a.append(x_like[ii.ravel()])
        pairs_b.append(y_like[jj.ravel()])
    cand_a = np.concatenate(pairs_a)
    cand_b = np.concatenate(pairs_b)
    if len(cand_a) == 0:
        return []
    # The strongest peaks may be those of twice the lattice (every other tile: a straight edge
    # of the picture along a tile axis lines them up); the halved pair competes too.
    half_ok = np.minimum(np.hypot(*cand_a.T), np.hypot(*cand_b.T)) >= 72.0
    cand_a = np.concatenate([cand_a, cand_a[half_ok] / 2.0])
    cand_b = np.concatenate([cand_b, cand_b[half_ok] / 2.0])
    points = (
        _LATTICE_POINTS[None, :, :1] * cand_a[:, None, :]
        + _LATTICE_POINTS[None, :, 1:] * cand_b[:, None, :]
    )
    score = np.clip(_z_at(zmax, points), None, 12.0).sum(axis=1)
    ratio = np.hypot(cand_a[:, 0], cand_a[:, 1]) / (np.hypot(cand_b[:, 0], cand_b[:, 1]) + 1e-9)
    score = np.where((ratio > 0.5) & (ratio < 2.0), score, -np.inf)
    # Completions and pairs are ranked apart and taken in turn: on a busy picture the pairs of
    # its own peaks can outscore a lattice whose second vector is too weak to be listed.
    n_single = len(singles_a)
    by_single = [int(i) for i in np.argsort(score[:n_single])[::-1]]
    by_pair = [int(i) + n_single for i in np.argsort(score[n_single:])[::-1]]
    turns = [i for both in zip(by_single, by_pair, strict=False) for i in both]
    turns += by_single[len(by_pair) :] + by_pair[len(by_single) :]
    maps: list[NDArray[np.float64]] = []
    used: dict[tuple[int, int], int] = {}
    for index in turns[: 6 * limit]:
        if not np.isfinite(score[index]):
            continue
        # Diversity: a periodic picture (railings, tiles, fabric) makes its own lattice, and
        # every pair built on one of its peaks scores high; each peak may serve twice at most.
        keys = [(int(np.rint(v[0])), int(np.rint(v[1]))) for v in (cand_a[index], cand_b[index])]
        if any(used.get(k, 0) >= 2 for k in keys):
            continue
        for k in keys:
            used[k] = used.get(k, 0) + 1
        va, vb = _fit_lattice(z, zmax, cand_a[index], cand_b[index])
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
    examined = 1
    checked: list[_Hypothesis] = []
    if adjusted[0] > alpha and cfg.search_geometry:
        # Lattice maps: all polished coarsely on the coherence, the most coherent finely, then
        # checked (fold and correlation) in order of coherence until one is strong.
        power = _padded_power(white)
        aspect = pixels.shape[0] / pixels.shape[1]
        maps = _lattice_candidates(power, aspect=aspect)
        examined += len(maps)
        if maps:
            flat = _coherence_map(power)
            stacked, value = _polish(flat, np.stack(maps), (0.008, 0.004, 0.002))
            order = np.argsort(-value)[:_CHECKED]
            fine, value = _polish(flat, stacked[order], (0.002, 0.001, 0.001))
            for rank in np.argsort(-value):
                matrix = fine[rank]
                label = "lattice=" + ",".join(f"{v:.4f}" for v in matrix.ravel())
                folded = _fold(_unwarp(white, matrix))
                checked.append(replace(_evaluate(folded, pats, label), matrix=matrix))
                if checked[-1].strength >= _STRONG:
                    break
    if adjusted[0] > alpha and cfg.search_crops and not any(h.strength >= _STRONG for h in checked):
        # Crop periods, evaluated as before the lattice search existed: the frame rescaled so
        # that the period is 64 again, then whitened.
        for period_x, period_y in _period_candidates(white):
            if abs(period_x - TILE) < 0.05 and abs(period_y - TILE) < 0.05:
                continue
            rescaled = _rescale_frame(frame, period_x, period_y)
            label = f"period={period_x:.2f}x{period_y:.2f}"
            checked.append(_evaluate(_fold(_whiten(rescaled)), pats, label))
            examined += 1
            if checked[-1].strength >= _STRONG:
                break
    # Which maps are tested (the largest magnitude scores among those checked) is decided from
    # the image and from magnitudes, never from a sign, so each tested map's sign test is
    # exact; Bonferroni over GEO_HYPOTHESES.
    weight = (1.0 - _W_FRAME) / GEO_HYPOTHESES
    for hyp in sorted(checked, key=lambda h: -h.strength)[:GEO_HYPOTHESES]:
        hyps.append(hyp)
        adjusted.append(min(1.0, hyp.p_value / weight))
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
        hypotheses_tried=examined,
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

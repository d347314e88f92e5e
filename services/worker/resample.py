"""Resampling audio to the rate a model was trained on, in numpy.

Speech models take audio at one rate (16 kHz for wav2vec2 and Whisper);
uploads come at 8, 22.05, 44.1 or 48 kHz. transformers would resample with
torchaudio (or ffmpeg), which pipeq does not install, so this is a plain
band-limited resampler: each output sample is a Kaiser-windowed sinc
interpolation of the input around its position, with the cut-off below the
lower of the two Nyquist frequencies, so that downsampling does not alias.
The filter for each fractional position is precomputed (one row per phase).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

#: Zero crossings of the sinc on each side: longer is sharper and slower.
ZERO_CROSSINGS = 16
#: Cut-off as a fraction of the lower Nyquist frequency (a little margin for the window).
ROLLOFF = 0.945
KAISER_BETA = 8.6
#: Most distinct fractional positions kept in the table; finer ratios are rounded to it.
MAX_PHASES = 4096
CHUNK = 8192

Audio = npt.NDArray[np.float32]


def resample(samples: npt.ArrayLike, source_rate: int, target_rate: int) -> Audio:
    """``samples`` (mono) at ``source_rate`` Hz, as float32 at ``target_rate`` Hz."""
    signal = np.asarray(samples, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {signal.shape}")
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sampling rates must be positive ({source_rate}, {target_rate})")
    if source_rate == target_rate or signal.size == 0:
        return signal
    common = math.gcd(source_rate, target_rate)
    up, down = target_rate // common, source_rate // common
    phases = min(up, MAX_PHASES)
    cutoff = min(1.0, up / down) * ROLLOFF
    half = math.ceil(ZERO_CROSSINGS / cutoff)
    table = _filters(phases, half, cutoff)

    padded = np.pad(signal, (half, half + 1))
    taps = np.arange(-half + 1, half + 1)
    length = math.ceil(signal.size * up / down)
    output = np.empty(length, dtype=np.float32)
    for start in range(0, length, CHUNK):
        n = np.arange(start, min(start + CHUNK, length), dtype=np.int64)
        position = n * down
        base = position // up
        phase = (position % up) * phases // up
        window = padded[base[:, None] + taps[None, :] + half]
        output[start : start + n.size] = np.einsum("ij,ij->i", window, table[phase])
    return output


def _filters(phases: int, half: int, cutoff: float) -> npt.NDArray[np.float32]:
    """Row ``p``: the weights of input samples ``base - half + 1 .. base + half`` for an
    output at ``base + p / phases``, each row summing to one (unit gain at DC)."""
    fraction = np.arange(phases, dtype=np.float64)[:, None] / phases
    taps = np.arange(-half + 1, half + 1, dtype=np.float64)[None, :]
    distance = fraction - taps
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (distance / half) ** 2, 0, None)))
    weights = cutoff * np.sinc(cutoff * distance) * window / np.i0(KAISER_BETA)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)

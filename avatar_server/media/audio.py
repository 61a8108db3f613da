"""Audio in and out: decode what clients send (PyAV), write WAV (stdlib), resample (PyAV/swresample)."""

from __future__ import annotations

import io
import logging
import wave
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from avatar_server.errors import AvatarError, InvalidInput, TooLarge

log = logging.getLogger(__name__)

STT_SAMPLE_RATE = 16000

# The demuxer for each accepted mime type: forced, so untrusted data never goes through FFmpeg's format probe
# (which would also consider playlists and other formats that open further URLs).
_DEMUXERS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/webm": "matroska",
    "video/webm": "matroska",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
}
PCM_TYPES = {"audio/pcm", "audio/l16"}
ACCEPTED_TYPES = sorted([*_DEMUXERS, "audio/pcm;rate=N"])
# The codecs a person's recording comes in: PCM (WAV), Opus and Vorbis (Ogg, WebM). Nothing else is decoded.
ALLOWED_CODECS = frozenset(
    {
        *(f"pcm_{k}" for k in ("s16le", "s16be", "s24le", "s32le", "f32le", "f64le", "u8", "s8", "mulaw", "alaw")),
        "opus",
        "vorbis",
    }
)
MIN_RATE, MAX_RATE = 8000, 192000
MAX_CHANNELS = 2
# Demuxer options: only local reads (the data is in memory: no protocol is ever needed), and a bounded look
# at the stream's parameters.
_OPTIONS = {"protocol_whitelist": "file", "probesize": str(1 << 20), "analyzeduration": str(5_000_000)}


@dataclass(frozen=True)
class MimeType:
    """A parsed mime type: `audio/pcm;rate=16000` -> essence "audio/pcm", params {"rate": "16000"}."""

    essence: str
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> MimeType:
        parts = [p.strip() for p in value.split(";")]
        params = {}
        for p in parts[1:]:
            if "=" in p:
                k, v = p.split("=", 1)
                params[k.strip().lower()] = v.strip().strip('"')
        return cls(essence=parts[0].lower(), params=params)


def decode_audio(
    data: bytes, mime_type: str, *, max_seconds: float, rate: int = STT_SAMPLE_RATE
) -> npt.NDArray[np.float32]:
    """Decode client audio to mono float32 at `rate`. Raises InvalidInput or TooLarge."""
    if not data:
        raise InvalidInput("The audio is empty.")
    mime = MimeType.parse(mime_type or "")
    if mime.essence in PCM_TYPES:
        samples = _decode_pcm(data, mime, rate, max_seconds)
    elif mime.essence in _DEMUXERS:
        samples = _decode_container(data, mime, rate, max_seconds)
    else:
        shown = repr(mime_type[:40]) if mime_type else "(none)"
        raise InvalidInput(f"Unsupported audio type {shown}; send one of: {', '.join(ACCEPTED_TYPES)}.")
    if len(samples) > max_seconds * rate:
        raise TooLarge(f"The audio is {len(samples) / rate:.1f} s long; the limit is {max_seconds:g} s.")
    if len(samples) == 0:
        raise InvalidInput("The audio holds no samples.")
    return samples


def _decode_pcm(data: bytes, mime: MimeType, rate: int, max_seconds: float) -> npt.NDArray[np.float32]:
    try:
        source_rate = int(mime.params.get("rate", ""))
    except ValueError:
        raise InvalidInput("Raw PCM needs its sample rate: use 'audio/pcm;rate=16000'.") from None
    if not MIN_RATE <= source_rate <= MAX_RATE:
        raise InvalidInput(f"PCM sample rate {source_rate} Hz is outside {MIN_RATE}..{MAX_RATE}.")
    if len(data) % 2:
        raise InvalidInput("Raw PCM must be 16-bit samples: the byte count is odd.")
    seconds = len(data) / 2 / source_rate
    if seconds > max_seconds:  # before resampling: the cost of resampling grows with the length
        raise TooLarge(f"The audio is {seconds:.1f} s long; the limit is {max_seconds:g} s.")
    pcm = np.frombuffer(data, dtype="<i2")
    return resample(pcm.astype(np.float32) / 32768.0, source_rate, rate)


def _check_stream(codec: str, sample_rate: int, channels: int) -> None:
    """The stream's codec, sample rate and channels, before anything is decoded."""
    if codec not in ALLOWED_CODECS:
        raise InvalidInput(f"The audio codec {codec or 'unknown'!r} is not accepted; send PCM, Opus or Vorbis audio.")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise InvalidInput(f"The audio's sample rate is {sample_rate} Hz; {MIN_RATE}..{MAX_RATE} Hz are accepted.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidInput(f"The audio has {channels} channels; mono or stereo are accepted.")


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The length the container states, where it states one."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _decode_container(data: bytes, mime: MimeType, rate: int, max_seconds: float) -> npt.NDArray[np.float32]:
    chunks: list[npt.NDArray[np.float32]] = []
    try:
        with av.open(io.BytesIO(data), mode="r", format=_DEMUXERS[mime.essence], options=_OPTIONS) as container:
            if not container.streams.audio:
                raise InvalidInput("The file has no audio stream.")
            stream = container.streams.audio[0]
            cc = stream.codec_context
            _check_stream(cc.name, cc.sample_rate, cc.layout.nb_channels)
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds + 0.5:
                raise TooLarge(f"The audio is {declared:.1f} s long; the limit is {max_seconds:g} s.")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            decoded = 0.0  # seconds, at the source's rate: a bomb of silence stops at the cap
            for frame in container.decode(stream):
                _check_stream(cc.name, frame.sample_rate, frame.layout.nb_channels)  # a chained stream may change
                decoded += frame.samples / frame.sample_rate
                if decoded > max_seconds:
                    raise TooLarge(f"The audio is longer than {max_seconds:g} s; the limit is {max_seconds:g} s.")
                for out in resampler.resample(frame):
                    chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
            for out in resampler.resample(None):
                chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
    except AvatarError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OverflowError, ZeroDivisionError) as exc:
        log.info("audio could not be decoded as %s: %s", mime.essence, exc)
        raise InvalidInput(
            f"The audio could not be decoded as {mime.essence}: the data is damaged or not {mime.essence}."
        ) from None
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def resample(samples: npt.NDArray[np.float32], source_rate: int, rate: int) -> npt.NDArray[np.float32]:
    """Mono float32 resampling through libswresample."""
    if source_rate == rate or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = source_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def to_pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def encode_wav(samples: npt.NDArray[np.float32], rate: int) -> bytes:
    """Mono 16-bit WAV."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_pcm16(samples))
    return buf.getvalue()

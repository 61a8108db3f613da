"""Audio in and out: decode what clients send (PyAV), write WAV (stdlib), resample (PyAV/swresample)."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from avatar_server.errors import InvalidInput, TooLarge

STT_SAMPLE_RATE = 16000

# Containers PyAV should probe for each accepted mime type (the declared type is checked, not trusted).
_CONTAINERS = {
    "audio/wav": {"wav"},
    "audio/x-wav": {"wav"},
    "audio/wave": {"wav"},
    "audio/vnd.wave": {"wav"},
    "audio/webm": {"matroska,webm", "webm"},
    "video/webm": {"matroska,webm", "webm"},
    "audio/ogg": {"ogg"},
    "audio/opus": {"ogg"},
}
PCM_TYPES = {"audio/pcm", "audio/l16"}
ACCEPTED_TYPES = sorted([*_CONTAINERS, "audio/pcm;rate=N"])


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
        samples = _decode_pcm(data, mime, rate)
    elif mime.essence in _CONTAINERS:
        samples = _decode_container(data, mime, rate, max_seconds)
    else:
        raise InvalidInput(f"Unsupported audio type {mime_type!r}; send one of: {', '.join(ACCEPTED_TYPES)}.")
    if len(samples) > max_seconds * rate:
        raise TooLarge(f"The audio is {len(samples) / rate:.1f} s long; the limit is {max_seconds:g} s.")
    if len(samples) == 0:
        raise InvalidInput("The audio holds no samples.")
    return samples


def _decode_pcm(data: bytes, mime: MimeType, rate: int) -> npt.NDArray[np.float32]:
    try:
        source_rate = int(mime.params.get("rate", ""))
    except ValueError:
        raise InvalidInput("Raw PCM needs its sample rate: use 'audio/pcm;rate=16000'.") from None
    if not 8000 <= source_rate <= 192000:
        raise InvalidInput(f"PCM sample rate {source_rate} Hz is outside 8000..192000.")
    if len(data) % 2:
        raise InvalidInput("Raw PCM must be 16-bit samples: the byte count is odd.")
    pcm = np.frombuffer(data, dtype="<i2")
    return resample(pcm.astype(np.float32) / 32768.0, source_rate, rate)


def _decode_container(data: bytes, mime: MimeType, rate: int, max_seconds: float) -> npt.NDArray[np.float32]:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            names = set(container.format.name.split(","))
            allowed = {n for group in _CONTAINERS[mime.essence] for n in group.split(",")}
            if not names & allowed:
                raise InvalidInput(
                    f"The data is {container.format.long_name or container.format.name}, not {mime.essence}."
                )
            if not container.streams.audio:
                raise InvalidInput("The file has no audio stream.")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks: list[npt.NDArray[np.float32]] = []
            total = 0
            limit = int((max_seconds + 1) * rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    arr = np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)
                    chunks.append(arr)
                    total += len(arr)
                if total > limit:
                    break  # over the cap: stop decoding, the caller reports it
            for out in resampler.resample(None):
                chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
    except InvalidInput:
        raise
    except (av.FFmpegError, ValueError, EOFError) as exc:
        raise InvalidInput(f"The audio could not be decoded as {mime.essence}: {exc}") from None
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

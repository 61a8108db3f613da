"""Malformed media and messages for the bad-input corpus: small on disk, built in the test, no network.

Each builder returns bytes a hostile or careless client could send: WAV headers that lie, containers holding the
wrong codec, Opus/Ogg and WebM "decompression bombs" (hours of silence in a few hundred kilobytes), playlist and
concat scripts disguised as audio, and protobuf messages with invalid UTF-8 in string fields (which the Python
protobuf runtime refuses to build, so they are encoded here by hand).
"""

from __future__ import annotations

import io
import re
import wave
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms at 48 kHz


def wav_bytes(
    samples: npt.NDArray[np.float32] | None = None,
    *,
    seconds: float = 1.0,
    rate: int = 16000,
    channels: int = 1,
    header_rate: int | None = None,
) -> bytes:
    """16-bit WAV of `samples` (mono float32 at `rate`; silence when None), copied to every channel.

    `header_rate` writes another sample rate into the header than the one the samples were made at.
    """
    if samples is None:
        samples = np.zeros(int(seconds * rate), np.float32)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    frames = np.repeat(pcm.reshape(-1, 1), channels, axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(header_rate or rate)
        w.writeframes(frames.tobytes())
    return buf.getvalue()


def truncated(data: bytes, keep: int) -> bytes:
    """The first `keep` bytes: a header that promises more than follows."""
    return data[:keep]


def _encode(container_format: str, codec: str, samples: npt.NDArray[np.float32], rate: int, **options: str) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        for key, value in options.items():
            stream.codec_context.options[key] = value
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        step = OPUS_FRAME if codec == "libopus" else 1024
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[i : i + step].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def ogg_opus(samples: npt.NDArray[np.float32] | None = None, seconds: float = 1.0) -> bytes:
    """A genuine Ogg/Opus file (48 kHz mono)."""
    if samples is None:
        samples = np.zeros(int(seconds * OPUS_RATE), np.float32)
    return _encode("ogg", "libopus", samples, OPUS_RATE)


def ogg_flac(samples: npt.NDArray[np.float32], rate: int = 16000) -> bytes:
    """FLAC in an Ogg container: a real container holding a codec outside the allowed set (PCM, Opus, Vorbis)."""
    return _encode("ogg", "flac", samples, rate)


def silence_bomb(container_format: str, hours: float) -> bytes:
    """`hours` of Opus silence in an Ogg or WebM container, a few hundred kilobytes on disk.

    Each packet is two bytes: the TOC of a real silent 20 ms packet with frame-count code 3, then "6 frames, all
    empty" (RFC 6716 3.2.5), which a decoder plays as 120 ms of silence. Muxed over and over, the file decodes
    to `hours` of audio, which a server must refuse by its duration cap long before it has decoded it all.
    """
    one = bytes([_first_packet_bytes()[0] | 3, 6])
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as out:
        stream = out.add_stream("libopus", rate=OPUS_RATE, layout="mono")
        stream.codec_context.extradata = _opus_head()
        base = Fraction(1, OPUS_RATE)
        for i in range(int(hours * 3600 * OPUS_RATE / (6 * OPUS_FRAME))):
            packet = av.Packet(one)
            packet.stream = stream
            packet.time_base = base
            packet.pts = packet.dts = i * 6 * OPUS_FRAME
            packet.duration = 6 * OPUS_FRAME
            out.mux(packet)
    return buf.getvalue()


def _first_packet_bytes() -> bytes:
    with av.open(io.BytesIO(ogg_opus(seconds=0.2)), "r") as c:
        for packet in c.demux(c.streams.audio[0]):
            if packet.size:
                return bytes(packet)
    raise RuntimeError("libopus gave no packet")


def _opus_head() -> bytes:
    """RFC 7845 identification header: version 1, mono, pre-skip 312, 48 kHz, gain 0, mapping family 0."""
    return b"OpusHead" + bytes([1, 1]) + (312).to_bytes(2, "little") + OPUS_RATE.to_bytes(4, "little") + b"\0\0\0"


def playlist_texts(port: int) -> dict[str, bytes]:
    """Text files that FFmpeg's probe would follow to a URL: an HLS playlist and a concat script."""
    url = f"http://127.0.0.1:{port}/x"
    return {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{url}\n#EXT-X-ENDLIST\n".encode(),
        "concat": f"ffconcat version 1.0\nfile '{url}'\n".encode(),
    }


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def proto_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2), for strings, bytes and nested messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def raw_interact_request(**fields: bytes) -> bytes:
    """A serialized InteractRequest whose string fields hold arbitrary bytes (e.g. invalid UTF-8).

    Field numbers as in avatar.proto: text 2, session_id 3, avatar_id 4, language 5, voice 6; outputs (7) is
    set to no media so that an accepted request costs as little as possible.
    """
    numbers = {"text": 2, "session_id": 3, "avatar_id": 4, "language": 5, "voice": 6}
    body = b"".join(proto_field(numbers[name], value) for name, value in fields.items())
    no_media = b"\x08\x00\x10\x00\x18\x00"  # audio=false, video=false, animation=false (explicit optional bools)
    return body + proto_field(7, no_media)


def raw_converse_text(text: bytes) -> bytes:
    """A serialized ConverseRequest carrying `text` (field 3) as raw bytes."""
    return proto_field(3, text)


_CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b")
_LEAKS = ("Traceback", ".py", "ipv4:", "ipv6:", "[Errno", 'File "', "0x7f", "site-packages")


def leaks(message: str) -> list[str]:
    """What in an error message is not for a person: tracebacks, file paths, addresses, exception names."""
    found = [s for s in _LEAKS if s in message]
    found += _CLASS_NAME.findall(message)
    return found

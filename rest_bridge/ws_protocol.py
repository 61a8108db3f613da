"""The WebSocket's browser → bridge messages, checked before they become gRPC requests.

Every malformed message raises ProtocolError with a plain message; the route answers it with an `error`
event and close code 1008. Nothing a browser sends may escape as another exception.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from avatar.v1 import avatar_pb2 as pb

from rest_bridge.input_checks import InputError, check_id, check_language, check_unicode

MAX_TEXT_FRAME_BYTES = 64 * 1024  # a JSON control message
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
MAX_END_SILENCE_MS = 10_000
AUDIO_FRAME_SECONDS = 1.0  # the longest binary audio message, in seconds at the config's rate
OUTPUT_NAMES = ("audio", "video", "animation")
_CONFIG_HINT = 'The first message must be the config: {"type": "config", ...}.'


class ProtocolError(Exception):
    """The browser sent something out of order or malformed; str(self) is the message it is told."""


def _no_constants(name: str) -> NoReturn:
    raise ProtocolError(f"{name} is not a JSON number; control messages must be valid JSON.")


def parse_text_frame(text: str) -> dict[str, Any]:
    """A text frame as a JSON object, or ProtocolError (too big, not JSON, nested too deep, not an object)."""
    if len(text) > MAX_TEXT_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_FRAME_BYTES:
        raise ProtocolError(f"A control message may be at most {MAX_TEXT_FRAME_BYTES // 1024} KiB.")
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ProtocolError("The control message is nested too deeply.") from None
    except ValueError:
        raise ProtocolError("Control messages must be JSON objects.") from None
    if not isinstance(data, dict):
        raise ProtocolError("Control messages must be JSON objects, not a JSON " + type(data).__name__ + ".")
    return data


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string.")
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ProtocolError(f"{key} must be true or false.")
    return value


def _integer(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key)
    if value is None:
        return default
    # bool is an int in Python; 1e400 arrives as float('inf'); 16000.5 or "16000" are not integers either.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{key} must be a whole number from {low} to {high}.")
    return value


def _outputs(data: dict[str, Any]) -> pb.OutputOptions | None:
    outputs = data.get("outputs")
    if outputs is None:
        return None
    # Each item is checked to be a string before any set is built: [[1]] would raise TypeError (unhashable).
    if not isinstance(outputs, list) or not all(isinstance(o, str) and o in OUTPUT_NAMES for o in outputs):
        raise ProtocolError("outputs must be a list of audio, video, animation.")
    return pb.OutputOptions(**{name: name in outputs for name in OUTPUT_NAMES})


def config_message(data: dict[str, Any]) -> pb.ConverseConfig:
    """The first message, `{"type": "config", ...}`, as a ConverseConfig."""
    if data.get("type") != "config":
        raise ProtocolError(_CONFIG_HINT)
    try:
        ids = {key: check_id(key, _string(data, key)) for key in ("session_id", "avatar_id", "voice")}
        language = check_language(_string(data, "language"))
    except InputError as exc:
        raise ProtocolError(str(exc)) from None
    rate = _integer(data, "sample_rate", 16000, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    return pb.ConverseConfig(
        **ids,
        language=language,
        input_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=rate),
        outputs=_outputs(data),
        barge_in=_flag(data, "barge_in"),
        end_silence_ms=_integer(data, "end_silence_ms", 0, 0, MAX_END_SILENCE_MS),
        interim_results=_flag(data, "interim_results"),
    )


def control_message(data: dict[str, Any], max_text_chars: int) -> pb.ConverseRequest:
    """A later JSON message: text, end_of_utterance or interrupt."""
    kind = data.get("type")
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("text must be a string.")
        if len(text) > max_text_chars:
            raise ProtocolError(f"The text is over {max_text_chars} characters.")
        try:
            return pb.ConverseRequest(text=check_unicode("text", text))
        except InputError as exc:
            raise ProtocolError(str(exc)) from None
    if kind == "end_of_utterance":
        return pb.ConverseRequest(end_of_utterance=pb.EndOfUtterance())
    if kind == "interrupt":
        return pb.ConverseRequest(interrupt=pb.Interrupt())
    if kind == "config":
        raise ProtocolError("The config may be sent only once, first.")
    shown = repr(kind)[:40] if isinstance(kind, str) else "missing or not a string"
    raise ProtocolError(f"Unknown message type {shown}; use text, end_of_utterance or interrupt.")


def max_audio_frame_bytes(sample_rate: int) -> int:
    """The largest binary message: one second of mono PCM16 at the config's rate."""
    return int(sample_rate * AUDIO_FRAME_SECONDS) * 2


def audio_message(frame: bytes, sample_rate: int | None) -> pb.ConverseRequest | None:
    """A binary frame as audio (None for an empty one), or ProtocolError."""
    if sample_rate is None:
        raise ProtocolError("The first message must be the JSON config, not audio.")
    if len(frame) % 2:
        raise ProtocolError("Audio must be 16-bit PCM: a binary message of an even number of bytes.")
    limit = max_audio_frame_bytes(sample_rate)
    if len(frame) > limit:
        raise ProtocolError(f"An audio message may hold at most 1 s of audio ({limit} bytes at {sample_rate} Hz).")
    return pb.ConverseRequest(audio=frame) if frame else None

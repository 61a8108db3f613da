"""`avatar` command line: `avatar interact --audio q.wav --out DIR`, `avatar capabilities`, `avatar health`.

Connection flags come before the command: `avatar --target HOST:PORT --api-key KEY --ca-file ca.pem health`
(the key and files also from AVATAR_API_KEY, AVATAR_GRPC_CA_FILE, AVATAR_GRPC_CERT_FILE, AVATAR_GRPC_KEY_FILE)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import grpc
from avatar.v1 import avatar_pb2 as pb
from google.protobuf.json_format import MessageToDict

from avatar_client.client import AvatarClient, mime_type_for


def _client(args: argparse.Namespace) -> AvatarClient:
    """A client with the key and TLS files from the command line (or their environment variables)."""
    return AvatarClient(
        args.target,
        api_key=args.api_key or None,
        ca_file=args.ca_file or None,
        cert_file=args.cert_file or None,
        key_file=args.key_file or None,
        server_name=args.server_name or None,
    )


def _write_outputs(resp: pb.InteractResponse, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if resp.HasField("audio") and resp.audio.data:
        (out / "reply.wav").write_bytes(resp.audio.data)
        written.append(out / "reply.wav")
    if resp.HasField("video") and resp.video.data:
        (out / "reply.mp4").write_bytes(resp.video.data)
        written.append(out / "reply.mp4")
    if resp.HasField("animation"):
        track = {
            "fps": resp.animation.fps,
            "names": list(resp.animation.names),
            "frames": [
                {"time": f.time_seconds, "weights": [round(w, 4) for w in f.weights]} for f in resp.animation.frames
            ],
        }
        (out / "track.json").write_text(json.dumps(track))
        written.append(out / "track.json")
    return written


def _interact(args: argparse.Namespace) -> int:
    kwargs: dict[str, object] = {
        "session_id": args.session or "",
        "avatar_id": args.avatar or "",
        "language": args.language or "",
        "voice": args.voice or "",
        "want_audio": not args.no_audio,
        "want_video": not args.no_video,
        "want_animation": not args.no_animation,
    }
    if args.audio:
        path = Path(args.audio)
        kwargs["audio"] = path.read_bytes()
        kwargs["mime_type"] = args.mime_type or mime_type_for(path, args.pcm_rate)
    else:
        kwargs["text"] = args.text
    with _client(args) as client:
        resp = client.interact(timeout=args.timeout, **kwargs)
    t = resp.timings
    print(f"transcription: {resp.transcription}")
    print(f"reply:         {resp.reply_text}")
    print(f"session:       {resp.session_id}  turn: {resp.turn_id}  language: {resp.language}")
    print(
        f"timings (s):   stt {t.stt_seconds:.3f}  llm {t.llm_seconds:.3f}  tts {t.tts_seconds:.3f}  "
        f"animation {t.animation_seconds:.3f}  total {t.total_seconds:.3f}"
    )
    if args.out:
        for path in _write_outputs(resp, Path(args.out)):
            print(f"wrote {path}")
    return 0


def _describe(event: pb.ConverseResponse) -> str:
    kind = event.WhichOneof("event")
    if kind == "transcript":
        return f"{'final' if event.transcript.is_final else 'partial'}: {event.transcript.text}"
    if kind == "reply_text_delta":
        return repr(event.reply_text_delta.text)
    if kind == "audio_chunk":
        c = event.audio_chunk
        return f"{len(c.pcm) / 2 / c.sample_rate_hertz:.2f} s of audio at {c.start_seconds:.2f} s"
    if kind == "animation_frames":
        f = event.animation_frames.frames
        return f"{len(f)} frames from {f[0].time_seconds:.2f} s" if f else "0 frames"
    if kind == "video_segment":
        return (
            f"{event.video_segment.video.duration_seconds:.2f} s of video at {event.video_segment.start_seconds:.2f} s"
        )
    if kind == "turn_completed":
        t = event.turn_completed.timings
        return (
            f"reply: {event.turn_completed.reply_text!r} | "
            f"voice-to-first-audio {t.voice_to_first_audio_seconds:.3f} s, "
            f"stt {t.stt_seconds:.3f} s, llm first token {t.llm_first_token_seconds:.3f} s, "
            f"tts first byte {t.tts_first_byte_seconds:.3f} s, end of turn {t.end_of_turn_seconds:.3f} s, "
            f"total {t.total_seconds:.3f} s"
        )
    if kind == "error":
        return f"{event.error.code}: {event.error.message}"
    if kind in ("speech_started", "speech_ended"):
        return f"at {getattr(event, kind).time_seconds:.2f} s of input"
    if kind == "backchannel":
        return f"{event.backchannel.text!r} at {event.backchannel.start_seconds:.2f} s of input (the reply goes on)"
    return ""


async def _converse_async(args: argparse.Namespace) -> int:
    import wave

    import numpy as np

    from avatar_client import AsyncAvatarClient
    from avatar_client.converse import StreamClock, paced_requests

    with wave.open(args.audio, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError("converse streams 16-bit PCM WAV files")
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels()).mean(axis=1).astype("<i2")
    config = pb.ConverseConfig(
        session_id=args.session or "",
        avatar_id=args.avatar or "",
        language=args.language or "",
        input_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=rate),
        outputs=pb.OutputOptions(audio=True, animation=True, video=args.video),
        barge_in=args.barge_in,
        interim_results=args.interim,
    )
    clock = StreamClock()
    aio_client = AsyncAvatarClient(
        args.target,
        api_key=args.api_key or None,
        ca_file=args.ca_file or None,
        cert_file=args.cert_file or None,
        key_file=args.key_file or None,
        server_name=args.server_name or None,
    )
    async with aio_client as client:
        async for event in client.converse(paced_requests(config, pcm.tobytes(), rate, clock=clock)):
            kind = event.WhichOneof("event")
            print(f"{time.perf_counter() - clock.started:7.3f}s  {event.turn_id[:8]}  {kind:17s} {_describe(event)}")
    return 0


def _converse(args: argparse.Namespace) -> int:
    return asyncio.run(_converse_async(args))


def _capabilities(args: argparse.Namespace) -> int:
    with _client(args) as client:
        caps = client.capabilities()
    print(json.dumps(MessageToDict(caps, preserving_proto_field_name=True), indent=2, ensure_ascii=False))
    return 0


def _health(args: argparse.Namespace) -> int:
    """Exit 0 when AvatarService is SERVING, 1 otherwise (the container health check)."""
    with _client(args) as client:
        try:
            status = client.health(timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(status)
    return 0 if status == "SERVING" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avatar", description="Talk to an avatar.v1.AvatarService")
    parser.add_argument("--target", default="127.0.0.1:50051", help="server address (default 127.0.0.1:50051)")
    env = os.environ.get
    parser.add_argument(
        "--api-key", default=env("AVATAR_API_KEY"), help="API key sent as 'authorization: Bearer' (AVATAR_API_KEY)"
    )
    parser.add_argument(
        "--ca-file", default=env("AVATAR_GRPC_CA_FILE"), help="the server's CA (PEM): use TLS (AVATAR_GRPC_CA_FILE)"
    )
    parser.add_argument(
        "--cert-file", default=env("AVATAR_GRPC_CERT_FILE"), help="client certificate for mutual TLS (PEM)"
    )
    parser.add_argument("--key-file", default=env("AVATAR_GRPC_KEY_FILE"), help="the client certificate's key (PEM)")
    parser.add_argument(
        "--server-name",
        default=env("AVATAR_GRPC_SERVER_NAME"),
        help="check the server's certificate against this name instead of the target's host",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("interact", help="one turn: audio or text in, reply out")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="audio file: .wav, .webm, .ogg, or raw .pcm with --pcm-rate")
    source.add_argument("--text", help="typed input")
    p.add_argument("--mime-type", help="override the mime type guessed from the file name")
    p.add_argument("--pcm-rate", type=int, help="sample rate of a raw .pcm file")
    p.add_argument("--session", help="session id for conversation memory")
    p.add_argument("--avatar", help="avatar id")
    p.add_argument("--language", help="language code, e.g. en, uk (default: detect)")
    p.add_argument("--voice", help="voice id (see `avatar capabilities`)")
    p.add_argument("--out", help="folder for reply.wav, reply.mp4 and track.json")
    p.add_argument("--no-audio", action="store_true")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--no-animation", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=_interact)
    v = sub.add_parser("converse", help="stream a WAV file at real-time pace; print the live events with times")
    v.add_argument("--audio", required=True, help="16-bit PCM WAV file")
    v.add_argument("--session", help="session id")
    v.add_argument("--avatar", help="avatar id")
    v.add_argument("--language", help="language code (default: detect)")
    v.add_argument("--video", action="store_true", help="also ask for a video segment per sentence")
    v.add_argument("--barge-in", action="store_true", help="speaking over the reply interrupts it")
    v.add_argument("--interim", action="store_true", help="ask for partial transcripts while speaking")
    v.set_defaults(func=_converse)
    c = sub.add_parser("capabilities", help="list avatars, voices, languages and engines")
    c.set_defaults(func=_capabilities)
    h = sub.add_parser("health", help="exit 0 when the service is SERVING, 1 otherwise")
    h.add_argument("--timeout", type=float, default=3.0)
    h.set_defaults(func=_health)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

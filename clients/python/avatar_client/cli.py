"""`avatar` command line: `avatar interact --audio q.wav --out DIR`, `avatar capabilities`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc
from avatar.v1 import avatar_pb2 as pb
from google.protobuf.json_format import MessageToDict

from avatar_client.client import AvatarClient, mime_type_for


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
    with AvatarClient(args.target) as client:
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


def _capabilities(args: argparse.Namespace) -> int:
    with AvatarClient(args.target) as client:
        caps = client.capabilities()
    print(json.dumps(MessageToDict(caps, preserving_proto_field_name=True), indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avatar", description="Talk to an avatar.v1.AvatarService")
    parser.add_argument("--target", default="127.0.0.1:50051", help="server address (default 127.0.0.1:50051)")
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
    c = sub.add_parser("capabilities", help="list avatars, voices, languages and engines")
    c.set_defaults(func=_capabilities)
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

"""protobuf <-> domain types, once at the gRPC edge."""

from __future__ import annotations

from avatar.v1 import avatar_pb2 as pb

from avatar_server.animation.track import Track
from avatar_server.domain import AudioData, MediaFile, Outputs, Timings, TurnRequest, TurnResult


def turn_request(msg: pb.InteractRequest) -> TurnRequest:
    which = msg.WhichOneof("input")
    o = msg.outputs
    fields = ("audio", "video", "animation")
    if any(o.HasField(f) for f in fields):
        outputs = Outputs(audio=o.audio, video=o.video, animation=o.animation)
    else:
        outputs = Outputs()  # nothing said: everything, as the seed's widget expects a video every time
    return TurnRequest(
        text=msg.text if which == "text" else None,
        audio=AudioData(msg.audio.data, msg.audio.mime_type) if which == "audio" else None,
        session_id=msg.session_id,
        avatar_id=msg.avatar_id,
        language=msg.language,
        voice=msg.voice,
        outputs=outputs,
    )


def media(m: MediaFile | None) -> pb.Media | None:
    if m is None:
        return None
    return pb.Media(data=m.data, mime_type=m.mime_type, duration_seconds=m.duration)


def animation_track(track: Track | None) -> pb.AnimationTrack | None:
    if track is None:
        return None
    frames = [
        pb.AnimationFrame(time_seconds=float(t), weights=row)
        for t, row in zip(track.times.tolist(), track.weights.round(4).tolist(), strict=True)
    ]
    return pb.AnimationTrack(fps=track.fps, names=list(track.names), frames=frames)


def timings(t: Timings) -> pb.Timings:
    return pb.Timings(
        stt_seconds=t.stt,
        llm_seconds=t.llm,
        tts_seconds=t.tts,
        animation_seconds=t.animation,
        total_seconds=t.total,
    )


def interact_response(r: TurnResult) -> pb.InteractResponse:
    return pb.InteractResponse(
        transcription=r.transcription,
        reply_text=r.reply_text,
        audio=media(r.audio),
        video=media(r.video),
        animation=animation_track(r.track),
        timings=timings(r.timings),
        session_id=r.session_id,
        turn_id=r.turn_id,
        language=r.language,
    )

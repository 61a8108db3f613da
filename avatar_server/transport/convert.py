"""protobuf <-> domain types, once at the gRPC edge."""

from __future__ import annotations

from avatar.v1 import avatar_pb2 as pb

from avatar_server.core import events as ev
from avatar_server.values import AudioData, MediaFile, Outputs, SessionConfig, Timings, Track, TurnRequest, TurnResult


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
        llm_first_token_seconds=t.llm_first_token,
        tts_first_byte_seconds=t.tts_first_byte,
        voice_to_first_audio_seconds=t.voice_to_first_audio,
        end_of_turn_seconds=t.end_of_turn,
        end_of_turn_probability=t.end_of_turn_probability,
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


_ENCODINGS = {pb.AUDIO_ENCODING_UNSPECIFIED: "pcm16", pb.AUDIO_ENCODING_PCM16: "pcm16", pb.AUDIO_ENCODING_OPUS: "opus"}


def session_config(msg: pb.ConverseConfig) -> SessionConfig:
    o = msg.outputs
    if any(o.HasField(f) for f in ("audio", "video", "animation")):
        outputs = Outputs(audio=o.audio, video=o.video, animation=o.animation)
    else:
        outputs = Outputs(audio=True, video=False, animation=True)
    fmt = msg.input_format
    return SessionConfig(
        session_id=msg.session_id,
        avatar_id=msg.avatar_id,
        language=msg.language,
        voice=msg.voice,
        encoding=_ENCODINGS.get(fmt.encoding, "unknown"),
        sample_rate=fmt.sample_rate_hertz or (48000 if fmt.encoding == pb.AUDIO_ENCODING_OPUS else 16000),
        outputs=outputs,
        barge_in=msg.barge_in,
        end_silence_ms=msg.end_silence_ms,
        interim_results=msg.interim_results,
    )


def _frames(track: Track, offset: float) -> list[pb.AnimationFrame]:
    return [
        pb.AnimationFrame(time_seconds=float(t) + offset, weights=row)
        for t, row in zip(track.times.tolist(), track.weights.round(4).tolist(), strict=True)
    ]


def converse_event(e: ev.Event, session_id: str) -> pb.ConverseResponse:
    out = pb.ConverseResponse(turn_id=e.turn_id, session_id=session_id)
    match e:
        case ev.SpeechStarted():
            out.speech_started.time_seconds = e.time_seconds
        case ev.SpeechEnded():
            out.speech_ended.time_seconds = e.time_seconds
        case ev.TranscriptEvent():
            out.transcript.CopyFrom(pb.Transcript(text=e.text, is_final=e.is_final))
        case ev.ReplyDelta():
            out.reply_text_delta.text = e.text
        case ev.AudioChunkEvent():
            out.audio_chunk.CopyFrom(
                pb.AudioChunk(pcm=e.pcm, sample_rate_hertz=e.sample_rate, start_seconds=e.start_seconds)
            )
        case ev.AnimationFramesEvent():
            out.animation_frames.CopyFrom(
                pb.AnimationFrames(fps=e.track.fps, names=list(e.track.names), frames=_frames(e.track, e.start_seconds))
            )
        case ev.VideoSegmentEvent():
            out.video_segment.CopyFrom(
                pb.VideoSegment(
                    video=pb.Media(data=e.mp4, mime_type="video/mp4", duration_seconds=e.duration),
                    start_seconds=e.start_seconds,
                )
            )
        case ev.TurnCompleted():
            out.turn_completed.CopyFrom(
                pb.TurnCompleted(
                    transcription=e.transcription,
                    reply_text=e.reply_text,
                    timings=timings(e.timings),
                    interrupted=e.interrupted,
                )
            )
        case ev.BackchannelEvent():
            out.backchannel.CopyFrom(
                pb.Backchannel(start_seconds=e.start_seconds, end_seconds=e.end_seconds, text=e.text)
            )
        case ev.ErrorEvent():
            out.error.CopyFrom(pb.ErrorEvent(code=e.code, message=e.message))
    return out

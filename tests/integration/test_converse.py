"""Converse end to end: real server, clips streamed at real-time pace, barge-in, isolation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from avatar.v1 import avatar_pb2 as pb
from avatar.v1 import avatar_pb2_grpc as pb_grpc
from avatar_client.converse import paced_requests, pcm16_chunks

from avatar_server.media.audio import decode_audio, to_pcm16
from tests.conftest import Clip, ServerProcess
from tests.helpers import word_error_rate

pytestmark = pytest.mark.slow
PCM16 = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=16000)


def clip_pcm(clip: Clip, lead: float = 0.4) -> bytes:
    x = decode_audio(clip.path.read_bytes(), "audio/wav", max_seconds=60)
    return to_pcm16(np.concatenate([np.zeros(int(lead * 16000), np.float32), x]))


async def collect(
    server: ServerProcess, requests: AsyncIterator[pb.ConverseRequest], deadline: float = 120
) -> list[pb.ConverseResponse]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.AvatarServiceStub(channel)
        return [ev async for ev in stub.Converse(requests, timeout=deadline)]


def kinds(events: list[pb.ConverseResponse]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


def check_reply_stream(events: list[pb.ConverseResponse]) -> pb.TurnCompleted:
    """Frames precede their audio, audio is contiguous on the turn clock, one turn, completed."""
    assert len({e.turn_id for e in events}) == 1, kinds(events)
    assert len({e.session_id for e in events}) == 1
    k = kinds(events)
    assert k[-1] == "turn_completed", k
    clock = 0.0
    frames_until = -1.0
    for e in events:
        if e.HasField("animation_frames"):
            frames = e.animation_frames.frames
            assert frames[0].time_seconds == pytest.approx(clock, abs=1e-6)
            frames_until = frames[-1].time_seconds
            assert list(e.animation_frames.names)[:1] == ["jawOpen"]
        if e.HasField("audio_chunk"):
            chunk = e.audio_chunk
            assert chunk.start_seconds == pytest.approx(clock, abs=1e-6), "gap or overlap in reply audio"
            seconds = len(chunk.pcm) / 2 / chunk.sample_rate_hertz
            assert frames_until >= clock + seconds - 2 / 30, "audio arrived before its animation frames"
            clock += seconds
    assert clock > 0.3
    done = events[-1].turn_completed
    deltas = "".join(e.reply_text_delta.text for e in events if e.HasField("reply_text_delta"))
    assert done.reply_text and done.reply_text.split()[0] in deltas
    t = done.timings
    assert t.voice_to_first_audio_seconds > 0 and t.llm_first_token_seconds > 0 and t.tts_first_byte_seconds > 0
    assert t.total_seconds >= t.llm_seconds > 0
    return done


async def test_spoken_turn_streams_every_stage(server: ServerProcess, clips: dict[str, Clip]) -> None:
    clip = clips["espeak"]
    config = pb.ConverseConfig(input_format=PCM16, end_silence_ms=400)
    events = await collect(server, paced_requests(config, clip_pcm(clip), 16000))
    k = kinds(events)
    assert k[:3] == ["speech_started", "speech_ended", "transcript"], k
    transcript = events[2].transcript
    assert transcript.is_final and word_error_rate(clip.text, transcript.text) <= 0.2, transcript.text
    done = check_reply_stream(events)
    assert done.transcription == transcript.text
    assert done.timings.stt_seconds > 0


async def test_end_of_utterance_ends_the_turn_at_once(server: ServerProcess, clips: dict[str, Clip]) -> None:
    clip = clips["flite"]
    x = decode_audio(clip.path.read_bytes(), "audio/wav", max_seconds=60, rate=8000)
    config = pb.ConverseConfig(
        input_format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM16, sample_rate_hertz=8000), end_silence_ms=5000
    )
    events = await collect(
        server, paced_requests(config, to_pcm16(x), 8000, trailing_silence=0.1, end_of_utterance=True, speed=2.0)
    )
    transcript = next(e.transcript.text for e in events if e.HasField("transcript"))
    assert "how are you" in transcript.lower()
    check_reply_stream([e for e in events if e.WhichOneof("event") not in ("speech_started", "speech_ended")])


async def test_after_push_to_talk_the_vad_still_ends_turns(server: ServerProcess, clips: dict[str, Clip]) -> None:
    speech = clip_pcm(clips["flite"])

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(config=pb.ConverseConfig(input_format=PCM16))
        for chunk in pcm16_chunks(speech + bytes(3200), 16000):  # the button released just after speaking
            yield pb.ConverseRequest(audio=chunk)
            await asyncio.sleep(0.01)  # 2x real time, the fastest a server accepts
        yield pb.ConverseRequest(end_of_utterance=pb.EndOfUtterance())
        for chunk in pcm16_chunks(bytes(32000) + speech + bytes(48000), 16000):  # then hands-free: the VAD ends it
            yield pb.ConverseRequest(audio=chunk)
            await asyncio.sleep(0.01)

    events = await collect(server, requests())
    finals = [e.transcript.text for e in events if e.HasField("transcript") and e.transcript.is_final]
    errors = [e.error.message for e in events if e.HasField("error")]
    assert len(finals) == 2 and all("how are you" in t.lower() for t in finals), (finals, errors)


async def test_text_turns_and_errors_keep_the_session(server: ServerProcess) -> None:
    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        yield pb.ConverseRequest(config=pb.ConverseConfig(session_id="text-session"))
        yield pb.ConverseRequest(text="   ")
        yield pb.ConverseRequest(text="Hello!")

    events = await collect(server, requests())
    assert events[0].HasField("error") and "text is empty" in events[0].error.message
    assert events[0].error.code == "INVALID_ARGUMENT"
    rest = events[1:]
    # A session id the server did not issue starts a fresh session under an issued one, kept for every event.
    assert len({e.session_id for e in events}) == 1 and events[0].session_id not in ("", "text-session")
    assert rest[0].transcript.text == "Hello!"
    check_reply_stream(rest[1:] if rest[0].HasField("transcript") else rest)


@pytest.mark.parametrize(
    ("messages", "detail"),
    [
        ([pb.ConverseRequest(audio=b"\0\0")], "first Converse message must be the session config"),
        (
            [pb.ConverseRequest(config=pb.ConverseConfig()), pb.ConverseRequest(config=pb.ConverseConfig())],
            "config may be sent only once",
        ),
        ([pb.ConverseRequest(config=pb.ConverseConfig(avatar_id="nobody"))], "Unknown avatar"),
        ([pb.ConverseRequest(config=pb.ConverseConfig(input_format=pb.AudioFormat(sample_rate_hertz=100)))], "100 Hz"),
        ([pb.ConverseRequest(config=pb.ConverseConfig()), pb.ConverseRequest(audio=b"\0\0\0")], "odd"),
        ([pb.ConverseRequest(config=pb.ConverseConfig()), pb.ConverseRequest()], "Empty Converse message"),
    ],
)
async def test_out_of_order_or_bad_messages(
    server: ServerProcess, messages: list[pb.ConverseRequest], detail: str
) -> None:
    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        for m in messages:
            yield m

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(server, requests(), deadline=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (err.value.details() or "")


async def test_interrupt_stops_the_turn_and_the_session_goes_on(server: ServerProcess) -> None:
    outbox: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
    outbox.put_nowait(pb.ConverseRequest(config=pb.ConverseConfig()))
    outbox.put_nowait(pb.ConverseRequest(text="Tell me everything about the history of computers."))

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        while (m := await outbox.get()) is not None:
            yield m

    seen: list[tuple[float, pb.ConverseResponse]] = []
    interrupted_at = 0.0
    first_turn = ""
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = pb_grpc.AvatarServiceStub(channel).Converse(requests(), timeout=120)
        async for ev in call:
            seen.append((time.perf_counter(), ev))
            if not first_turn and ev.HasField("audio_chunk"):
                first_turn = ev.turn_id
                interrupted_at = time.perf_counter()
                outbox.put_nowait(pb.ConverseRequest(interrupt=pb.Interrupt()))
                later = asyncio.get_running_loop().call_later  # anything still coming would arrive meanwhile
                later(1.5, outbox.put_nowait, pb.ConverseRequest(text="Hello again."))
            if ev.HasField("turn_completed") and ev.turn_id != first_turn:
                outbox.put_nowait(None)
    of_first = [(t, ev) for t, ev in seen if ev.turn_id == first_turn]
    closing = [(t, ev) for t, ev in of_first if ev.HasField("turn_completed")]
    assert len(closing) == 1 and closing[0][1].turn_completed.interrupted, kinds([ev for _, ev in of_first])
    assert of_first[-1][1] is closing[0][1], "events of the interrupted turn after its interrupted TurnCompleted"
    assert closing[0][0] - interrupted_at < 0.5  # acknowledged at once
    spoken = closing[0][1].turn_completed.reply_text
    assert spoken and len(spoken) < 400  # what was said before the interrupt, not the whole reply
    second = [ev for _, ev in seen if ev.turn_id not in ("", first_turn)]
    assert second and second[-1].HasField("turn_completed")


async def test_voice_barge_in_interrupts_the_reply(server: ServerProcess, clips: dict[str, Clip]) -> None:
    speech = clip_pcm(clips["flite"], lead=0.0)
    outbox: asyncio.Queue[pb.ConverseRequest | None] = asyncio.Queue()
    outbox.put_nowait(pb.ConverseRequest(config=pb.ConverseConfig(input_format=PCM16, barge_in=True)))
    outbox.put_nowait(pb.ConverseRequest(text="Tell me everything about the history of computers."))

    async def requests() -> AsyncIterator[pb.ConverseRequest]:
        while (m := await outbox.get()) is not None:
            yield m

    async def speak_over() -> None:
        for k in range(0, len(speech) + 64000, 640):  # 20 ms chunks, real time, then 2 s of silence
            chunk = speech[k : k + 640] or bytes(640)
            outbox.put_nowait(pb.ConverseRequest(audio=chunk))
            await asyncio.sleep(0.02)

    events: list[tuple[float, pb.ConverseResponse]] = []
    first_turn = ""
    barge: asyncio.Task[None] | None = None
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = pb_grpc.AvatarServiceStub(channel).Converse(requests(), timeout=120)
        async for ev in call:
            events.append((time.perf_counter(), ev))
            if not first_turn and ev.HasField("audio_chunk"):
                first_turn = ev.turn_id
                barge = asyncio.create_task(speak_over())
            if ev.HasField("turn_completed") and ev.turn_id != first_turn:
                outbox.put_nowait(None)
    assert barge is not None
    await barge
    of_first = [ev for _, ev in events if ev.turn_id == first_turn]
    assert of_first[-1].HasField("turn_completed") and of_first[-1].turn_completed.interrupted, kinds(of_first)
    started = next(t for t, ev in events if ev.HasField("speech_started"))
    closed = next(t for t, ev in events if ev.turn_id == first_turn and ev.HasField("turn_completed"))
    assert closed - started < 0.5, "the reply went on after the person spoke over it"
    answered = [ev for _, ev in events if ev.HasField("transcript")]
    assert answered and "how are you" in answered[-1].transcript.text.lower()


async def test_concurrent_sessions_are_isolated(server: ServerProcess) -> None:
    questions = {"iso-a": "What is a compiler?", "iso-b": "Who are you?", "iso-c": "What is COBOL?"}

    async def one(session_id: str, question: str) -> list[pb.ConverseResponse]:
        async def requests() -> AsyncIterator[pb.ConverseRequest]:
            yield pb.ConverseRequest(config=pb.ConverseConfig(session_id=session_id))
            yield pb.ConverseRequest(text=question)

        return await collect(server, requests(), deadline=180)

    results = await asyncio.gather(*(one(s, q) for s, q in questions.items()))
    turn_ids = [{e.turn_id for e in events} for events in results]
    for (session_id, question), events in zip(questions.items(), results, strict=True):
        assert len({e.session_id for e in events}) == 1 and events[0].session_id != session_id  # issued
        assert events[0].transcript.text == question
        check_reply_stream(events[1:])
    assert len({events[0].session_id for events in results}) == len(results)
    assert not (turn_ids[0] & turn_ids[1]) and not (turn_ids[1] & turn_ids[2]) and not (turn_ids[0] & turn_ids[2])


async def test_interim_results_send_partial_transcripts(server: ServerProcess, clips: dict[str, Clip]) -> None:
    clip = clips["arctic"]
    config = pb.ConverseConfig(input_format=PCM16, interim_results=True)
    events = await collect(server, paced_requests(config, clip_pcm(clip), 16000))
    transcripts = [e.transcript for e in events if e.HasField("transcript")]
    partial = [t for t in transcripts if not t.is_final]
    assert partial, kinds(events)
    assert transcripts[-1].is_final and word_error_rate(clip.text, transcripts[-1].text) <= 0.3
    first_partial = kinds(events).index("transcript")
    assert first_partial < kinds(events).index("speech_ended")  # while the person is still speaking
    assert events[-1].HasField("turn_completed")

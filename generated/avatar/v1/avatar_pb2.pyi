from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM16: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_OPUS: _ClassVar[AudioEncoding]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM16: AudioEncoding
AUDIO_ENCODING_OPUS: AudioEncoding

class AudioInput(_message.Message):
    __slots__ = ("data", "mime_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("audio", "video", "animation")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    ANIMATION_FIELD_NUMBER: _ClassVar[int]
    audio: bool
    video: bool
    animation: bool
    def __init__(self, audio: _Optional[bool] = ..., video: _Optional[bool] = ..., animation: _Optional[bool] = ...) -> None: ...

class InteractRequest(_message.Message):
    __slots__ = ("audio", "text", "session_id", "avatar_id", "language", "voice", "outputs")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    audio: AudioInput
    text: str
    session_id: str
    avatar_id: str
    language: str
    voice: str
    outputs: OutputOptions
    def __init__(self, audio: _Optional[_Union[AudioInput, _Mapping]] = ..., text: _Optional[str] = ..., session_id: _Optional[str] = ..., avatar_id: _Optional[str] = ..., language: _Optional[str] = ..., voice: _Optional[str] = ..., outputs: _Optional[_Union[OutputOptions, _Mapping]] = ...) -> None: ...

class Media(_message.Message):
    __slots__ = ("data", "mime_type", "duration_seconds", "uri")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    duration_seconds: float
    uri: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., uri: _Optional[str] = ...) -> None: ...

class AnimationFrame(_message.Message):
    __slots__ = ("time_seconds", "weights")
    TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    time_seconds: float
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, time_seconds: _Optional[float] = ..., weights: _Optional[_Iterable[float]] = ...) -> None: ...

class AnimationTrack(_message.Message):
    __slots__ = ("fps", "names", "frames")
    FPS_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    fps: float
    names: _containers.RepeatedScalarFieldContainer[str]
    frames: _containers.RepeatedCompositeFieldContainer[AnimationFrame]
    def __init__(self, fps: _Optional[float] = ..., names: _Optional[_Iterable[str]] = ..., frames: _Optional[_Iterable[_Union[AnimationFrame, _Mapping]]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("stt_seconds", "llm_seconds", "tts_seconds", "animation_seconds", "total_seconds", "llm_first_token_seconds", "tts_first_byte_seconds", "voice_to_first_audio_seconds", "end_of_turn_seconds", "end_of_turn_probability")
    STT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LLM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ANIMATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LLM_FIRST_TOKEN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTS_FIRST_BYTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VOICE_TO_FIRST_AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_OF_TURN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_OF_TURN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    stt_seconds: float
    llm_seconds: float
    tts_seconds: float
    animation_seconds: float
    total_seconds: float
    llm_first_token_seconds: float
    tts_first_byte_seconds: float
    voice_to_first_audio_seconds: float
    end_of_turn_seconds: float
    end_of_turn_probability: float
    def __init__(self, stt_seconds: _Optional[float] = ..., llm_seconds: _Optional[float] = ..., tts_seconds: _Optional[float] = ..., animation_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ..., llm_first_token_seconds: _Optional[float] = ..., tts_first_byte_seconds: _Optional[float] = ..., voice_to_first_audio_seconds: _Optional[float] = ..., end_of_turn_seconds: _Optional[float] = ..., end_of_turn_probability: _Optional[float] = ...) -> None: ...

class InteractResponse(_message.Message):
    __slots__ = ("transcription", "reply_text", "audio", "video", "animation", "timings", "session_id", "turn_id", "language")
    TRANSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    ANIMATION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    transcription: str
    reply_text: str
    audio: Media
    video: Media
    animation: AnimationTrack
    timings: Timings
    session_id: str
    turn_id: str
    language: str
    def __init__(self, transcription: _Optional[str] = ..., reply_text: _Optional[str] = ..., audio: _Optional[_Union[Media, _Mapping]] = ..., video: _Optional[_Union[Media, _Mapping]] = ..., animation: _Optional[_Union[AnimationTrack, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., language: _Optional[str] = ...) -> None: ...

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hertz")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hertz: int
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hertz: _Optional[int] = ...) -> None: ...

class ConverseConfig(_message.Message):
    __slots__ = ("session_id", "avatar_id", "language", "voice", "input_format", "outputs", "barge_in", "end_silence_ms", "interim_results")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    BARGE_IN_FIELD_NUMBER: _ClassVar[int]
    END_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    avatar_id: str
    language: str
    voice: str
    input_format: AudioFormat
    outputs: OutputOptions
    barge_in: bool
    end_silence_ms: int
    interim_results: bool
    def __init__(self, session_id: _Optional[str] = ..., avatar_id: _Optional[str] = ..., language: _Optional[str] = ..., voice: _Optional[str] = ..., input_format: _Optional[_Union[AudioFormat, _Mapping]] = ..., outputs: _Optional[_Union[OutputOptions, _Mapping]] = ..., barge_in: _Optional[bool] = ..., end_silence_ms: _Optional[int] = ..., interim_results: _Optional[bool] = ...) -> None: ...

class EndOfUtterance(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Interrupt(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("config", "audio", "text", "end_of_utterance", "interrupt")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    END_OF_UTTERANCE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    config: ConverseConfig
    audio: bytes
    text: str
    end_of_utterance: EndOfUtterance
    interrupt: Interrupt
    def __init__(self, config: _Optional[_Union[ConverseConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., text: _Optional[str] = ..., end_of_utterance: _Optional[_Union[EndOfUtterance, _Mapping]] = ..., interrupt: _Optional[_Union[Interrupt, _Mapping]] = ...) -> None: ...

class SpeechStarted(_message.Message):
    __slots__ = ("time_seconds",)
    TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    time_seconds: float
    def __init__(self, time_seconds: _Optional[float] = ...) -> None: ...

class SpeechEnded(_message.Message):
    __slots__ = ("time_seconds",)
    TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    time_seconds: float
    def __init__(self, time_seconds: _Optional[float] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("text", "is_final")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    text: str
    is_final: bool
    def __init__(self, text: _Optional[str] = ..., is_final: _Optional[bool] = ...) -> None: ...

class ReplyTextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("pcm", "sample_rate_hertz", "start_seconds")
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    pcm: bytes
    sample_rate_hertz: int
    start_seconds: float
    def __init__(self, pcm: _Optional[bytes] = ..., sample_rate_hertz: _Optional[int] = ..., start_seconds: _Optional[float] = ...) -> None: ...

class AnimationFrames(_message.Message):
    __slots__ = ("fps", "names", "frames")
    FPS_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    fps: float
    names: _containers.RepeatedScalarFieldContainer[str]
    frames: _containers.RepeatedCompositeFieldContainer[AnimationFrame]
    def __init__(self, fps: _Optional[float] = ..., names: _Optional[_Iterable[str]] = ..., frames: _Optional[_Iterable[_Union[AnimationFrame, _Mapping]]] = ...) -> None: ...

class VideoSegment(_message.Message):
    __slots__ = ("video", "start_seconds")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    video: Media
    start_seconds: float
    def __init__(self, video: _Optional[_Union[Media, _Mapping]] = ..., start_seconds: _Optional[float] = ...) -> None: ...

class TurnCompleted(_message.Message):
    __slots__ = ("transcription", "reply_text", "timings", "interrupted")
    TRANSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    transcription: str
    reply_text: str
    timings: Timings
    interrupted: bool
    def __init__(self, transcription: _Optional[str] = ..., reply_text: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class ErrorEvent(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Backchannel(_message.Message):
    __slots__ = ("start_seconds", "end_seconds", "text")
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    start_seconds: float
    end_seconds: float
    text: str
    def __init__(self, start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("turn_id", "session_id", "speech_started", "speech_ended", "transcript", "reply_text_delta", "audio_chunk", "animation_frames", "video_segment", "turn_completed", "error", "backchannel")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ENDED_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHUNK_FIELD_NUMBER: _ClassVar[int]
    ANIMATION_FRAMES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    TURN_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BACKCHANNEL_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    session_id: str
    speech_started: SpeechStarted
    speech_ended: SpeechEnded
    transcript: Transcript
    reply_text_delta: ReplyTextDelta
    audio_chunk: AudioChunk
    animation_frames: AnimationFrames
    video_segment: VideoSegment
    turn_completed: TurnCompleted
    error: ErrorEvent
    backchannel: Backchannel
    def __init__(self, turn_id: _Optional[str] = ..., session_id: _Optional[str] = ..., speech_started: _Optional[_Union[SpeechStarted, _Mapping]] = ..., speech_ended: _Optional[_Union[SpeechEnded, _Mapping]] = ..., transcript: _Optional[_Union[Transcript, _Mapping]] = ..., reply_text_delta: _Optional[_Union[ReplyTextDelta, _Mapping]] = ..., audio_chunk: _Optional[_Union[AudioChunk, _Mapping]] = ..., animation_frames: _Optional[_Union[AnimationFrames, _Mapping]] = ..., video_segment: _Optional[_Union[VideoSegment, _Mapping]] = ..., turn_completed: _Optional[_Union[TurnCompleted, _Mapping]] = ..., error: _Optional[_Union[ErrorEvent, _Mapping]] = ..., backchannel: _Optional[_Union[Backchannel, _Mapping]] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AvatarInfo(_message.Message):
    __slots__ = ("id", "name", "voice", "language", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    voice: str
    language: str
    description: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., voice: _Optional[str] = ..., language: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class VoiceInfo(_message.Message):
    __slots__ = ("id", "engine", "languages")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    id: str
    engine: str
    languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., engine: _Optional[str] = ..., languages: _Optional[_Iterable[str]] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("stage", "name", "model")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    stage: str
    name: str
    model: str
    def __init__(self, stage: _Optional[str] = ..., name: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("avatars", "voices", "languages", "engines", "default_avatar_id")
    AVATARS_FIELD_NUMBER: _ClassVar[int]
    VOICES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    avatars: _containers.RepeatedCompositeFieldContainer[AvatarInfo]
    voices: _containers.RepeatedCompositeFieldContainer[VoiceInfo]
    languages: _containers.RepeatedScalarFieldContainer[str]
    engines: _containers.RepeatedCompositeFieldContainer[EngineInfo]
    default_avatar_id: str
    def __init__(self, avatars: _Optional[_Iterable[_Union[AvatarInfo, _Mapping]]] = ..., voices: _Optional[_Iterable[_Union[VoiceInfo, _Mapping]]] = ..., languages: _Optional[_Iterable[str]] = ..., engines: _Optional[_Iterable[_Union[EngineInfo, _Mapping]]] = ..., default_avatar_id: _Optional[str] = ...) -> None: ...

class GetAvatarFaceRequest(_message.Message):
    __slots__ = ("avatar_id",)
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    def __init__(self, avatar_id: _Optional[str] = ...) -> None: ...

class GetAvatarFaceResponse(_message.Message):
    __slots__ = ("avatar_id", "portrait_png", "mouth_png", "face_model_json")
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    PORTRAIT_PNG_FIELD_NUMBER: _ClassVar[int]
    MOUTH_PNG_FIELD_NUMBER: _ClassVar[int]
    FACE_MODEL_JSON_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    portrait_png: bytes
    mouth_png: bytes
    face_model_json: str
    def __init__(self, avatar_id: _Optional[str] = ..., portrait_png: _Optional[bytes] = ..., mouth_png: _Optional[bytes] = ..., face_model_json: _Optional[str] = ...) -> None: ...

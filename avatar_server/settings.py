"""Service settings: environment (AVATAR_ prefix), optionally a YAML/TOML file, then defaults."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

PACKAGE_DIR = Path(__file__).resolve().parent


class Settings(BaseSettings):
    """Everything an operator can set. Environment variables win over the config file."""

    # hide_input_in_errors: a mistyped or misplaced setting must not print its value (it may be a key).
    model_config = SettingsConfigDict(
        env_prefix="AVATAR_", extra="forbid", populate_by_name=True, hide_input_in_errors=True
    )

    config_file: Path | None = Field(default=None, description="YAML or TOML file with these settings")
    host: str = "127.0.0.1"
    port: int = 50051
    # SIGTERM: health NOT_SERVING and no new work at once; running turns get this long to finish, then live
    # sessions receive a final event and the process exits (within about 2 s more). A second SIGTERM exits at once.
    grace_seconds: float = 10.0

    # Security (README "Keys and TLS for gRPC"). Accepted API keys, comma-separated in the environment: each a
    # key or `sha256:<64 hex>` of one; callers send `authorization: Bearer <key>`. None: no check (loopback
    # only; another host needs keys or allow_insecure=true, else the server refuses to start).
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    allow_insecure: bool = False
    # PEM files: certificate chain and key (both: TLS only, no plaintext); a client CA: mutual TLS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # gRPC server reflection. Unset: on when the host is loopback. With api_keys it needs a key too.
    reflection: bool | None = None

    # Engines, chosen by name.
    stt_engine: str = "faster-whisper"
    llm_engine: str = "llama-cpp"
    tts_engine: str = "piper"
    fallback_tts_engine: str = "espeak"
    animator: str = "portrait"

    # Model files. Bundled models are assembled under models_dir on first start.
    models_dir: Path = Path.home() / ".cache" / "talking-avatar" / "models"
    whisper_model: str = Field(default="base", validation_alias=AliasChoices("AVATAR_WHISPER_MODEL", "WHISPER_MODEL"))
    whisper_device: str = "cpu"  # or "cuda"
    whisper_compute_type: str = ""  # "" = int8 on the CPU, float16 on CUDA
    whisper_beam_size: int = 1
    whisper_encoder_window_seconds: float = 6.0  # 30 = Whisper's full window (slower, the reference)
    # The bundled chat model: "qwen2.5-coder-0.5b" (the best replies within the latency budget) or
    # "smollm2-135m" (tiny: faster, far less sensible). llm_model_path overrides it with any GGUF.
    llm_bundled: str = "qwen2.5-coder-0.5b"
    llm_model_path: Path | None = None
    llm_context_tokens: int = 2048
    # A longer question is shortened in its middle before the model reads it (0: only to fit the context).
    llm_question_max_tokens: int = 400
    llm_max_tokens: int = 60
    llm_temperature: float = 0.3
    # Set: every reply is sampled with this seed, so a run of requests repeats (a repeated prompt may still
    # differ: llama.cpp's prompt cache changes how much of it is evaluated at once, hence the numerics).
    llm_seed: int | None = None
    threads: int = 2
    # llama.cpp's most threads, for the prompt and the reply (0: `threads`). It uses them all while the cores
    # are free and one while something else computes (a token step far slower than the fastest): more threads
    # bring the first words sooner on free cores and stall when another computation takes a core
    # (bench/bench_first_words.py, bench/README.md).
    llm_threads: int = 2
    # Heavy engine jobs (STT, LLM tokens, TTS, video) that may compute at once; each uses `threads` cores.
    compute_slots: int = 1
    # llama.cpp contexts for live turns, so a live reply never waits for another reply to finish (0: none).
    llm_live_contexts: int = 2

    # Cloud backends (documented HTTP APIs) and the organisation's OpenAI-compatible LLM service.
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr = SecretStr("")
    openai_stt_model: str = "whisper-1"
    llm_base_url: str = "http://127.0.0.1:8001/v1"
    llm_model: str = ""
    llm_api_key: SecretStr = SecretStr("")
    http_timeout_seconds: float = 30.0
    http_retries: int = 3
    elevenlabs_api_key: SecretStr = SecretStr("")
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    elevenlabs_voice_id: str = ""
    elevenlabs_model_id: str = "eleven_multilingual_v2"

    # GPU backends.
    xtts_model_dir: Path | None = None  # default: <models_dir>/xtts_v2
    xtts_device: str = "cuda"
    xtts_speaker_wav: Path | None = None
    sadtalker_dir: Path = Path("/opt/SadTalker")
    sadtalker_python: str = sys.executable  # SadTalker usually lives in a virtualenv of its own
    sadtalker_checkpoint_dir: Path | None = None  # default: <models_dir>/sadtalker
    sadtalker_size: int = 256
    sadtalker_preprocess: str = "full"
    sadtalker_still: bool = True
    sadtalker_enhancer: str = ""
    sadtalker_timeout_seconds: float = 900.0

    # The languages this deployment serves (ISO 639-1 codes; comma-separated in the environment: "en,uk").
    # Speech is heard only as one of them (Whisper's language detection is limited to these); a request for
    # another is INVALID_ARGUMENT; a typed turn in another is answered in the avatar's language, saying so.
    languages: Annotated[tuple[str, ...], NoDecode] = ("en", "uk")
    # Detection less sure than this (Whisper's probability of the best served language) takes the avatar's
    # language instead.
    language_min_probability: float = 0.25

    # Avatars (persona files) and defaults.
    avatars_dir: Path = PACKAGE_DIR / "avatars"
    default_avatar: str = "grace"

    # Reply shaping and memory.
    reply_max_sentences: int = 2
    reply_max_chars: int = 160
    memory_turns: int = 6
    # The history's tokens in the prompt (the model's tokenizer counts them): past this, or past
    # `memory_turns` exchanges, the oldest go until half is left (a block: the prompt cache stays warm).
    memory_max_tokens: int = 1024
    memory_ttl_seconds: float = 1800.0
    memory_max_sessions: int = 1000  # the in-process store's bound; in Redis idle sessions go by their TTL
    # Shared memory (README "Shared memory (Redis)"): `redis://[:password@]host:port/db` or `rediss://` (TLS)
    # keeps every session's history in Redis, so restarts and other replicas (same session_secret) keep it.
    # Unset: in this process. A secret: the URL may hold a password, and logs show it without one.
    memory_url: SecretStr = SecretStr("")
    memory_timeout_seconds: float = 0.5  # per Redis call; a failed call turns memory off for that turn

    # Live conversation: when the person's turn ends. At each pause the turn model (Smart Turn v3.2) judges
    # whether the utterance is complete: complete (probability >= `turn_complete_threshold`, and the
    # transcript does not stop on a word like "the" or "and") ends the turn after `turn_confirm_ms` of
    # silence; incomplete waits up to `turn_incomplete_ms` for the person to go on. With the model off
    # (`turn_model=false`), for a language it does not know, or when a client sets its own `end_silence_ms`,
    # a fixed `end_silence_ms` of silence ends the turn.
    end_silence_ms: int = 400
    turn_model: bool = True
    turn_complete_threshold: float = 0.5
    # Between this and `turn_complete_threshold` the model is unsure: if the words end a sentence, the turn
    # ends after `end_silence_ms`; below it the person gets `turn_incomplete_ms` to go on.
    turn_unsure_threshold: float = 0.08
    turn_confirm_ms: int = 160
    turn_incomplete_ms: int = 1500
    # Speech over the avatar's reply: shorter than `backchannel_max_ms` of speech as the VAD hears it (which
    # runs on a little past the sound itself) and only an acknowledgement by its transcript ("mm-hm",
    # "yeah", a laugh), it is a backchannel and the avatar goes on; longer, or anything else, it takes the
    # turn (and interrupts the reply when the client asked for barge-in).
    backchannel_max_ms: int = 1000
    # Microphone audio no louder than the reply's loudness minus this many dB (plus a 6 dB margin) is the
    # avatar's own voice coming back, not the person. Browsers' echo cancellation usually leaves far less.
    echo_return_loss_db: float = 20.0

    # Admission control (defaults suit 2 cores). Interact turns: at most `max_running_turns` at once and
    # `max_waiting_turns` queued; beyond that RESOURCE_EXHAUSTED at once with a retry hint. Live sessions
    # run one turn at a time each, ahead of Interact turns at every engine, up to `max_live_sessions`.
    max_running_turns: int = 2
    max_waiting_turns: int = 4
    max_live_sessions: int = 4
    max_pending_turns_per_session: int = 3

    # Every wait is bounded: a stage over its limit ends the turn with DEADLINE_EXCEEDED naming the stage.
    decode_timeout_seconds: float = 20.0
    stt_timeout_seconds: float = 30.0
    llm_timeout_seconds: float = 30.0  # the longest wait for the model's next words
    tts_timeout_seconds: float = 30.0
    animation_timeout_seconds: float = 60.0
    # The watchdog turns health NOT_SERVING while an engine makes no progress for this long.
    stall_seconds: float = 30.0
    watchdog_interval_seconds: float = 1.0

    # Live conversation limits.
    converse_config_timeout_seconds: float = 10.0  # the first message (the config) must come within this
    converse_idle_timeout_seconds: float = 300.0  # no message and no turn running for this long ends it
    converse_max_chunk_seconds: float = 1.0  # audio in one message
    converse_max_realtime_factor: float = 2.0  # audio may arrive at most this much faster than real time
    converse_event_queue: int = 512  # events waiting for a client that reads slowly
    converse_write_timeout_seconds: float = 10.0  # a client that reads nothing this long is closed

    # Input caps.
    max_audio_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 120.0
    max_text_chars: int = 2000

    # Input hardening. Session ids are issued by the server and bound to the caller's key with an HMAC under
    # this secret; unset: a random one per process (issued ids then do not survive a restart, nor are they
    # shared between replicas: give every replica the same secret).
    session_secret: SecretStr = SecretStr("")

    # Video.
    video_fps: int = 25
    video_size: int = 384

    # Observability (README "Observability"). Prometheus /metrics over HTTP on metrics_host:metrics_port (0: off);
    # with api_keys a scrape sends the same `Authorization: Bearer <key>` unless metrics_open=true. Off loopback
    # with no keys, metrics_open (or allow_insecure) must say that anyone on the network may read them.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_open: bool = False
    # OpenTelemetry traces (the `otel` extra), exported as the standard OTEL_* environment says (OTLP over HTTP
    # by default). Unset: on when OTEL_TRACES_EXPORTER (not "none") or OTEL_EXPORTER_OTLP_ENDPOINT is set.
    tracing: bool | None = None

    @field_validator("api_keys", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            keys = [v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value]
            keys = [k.strip() for k in keys if k.strip()]
            for i, key in enumerate(keys, 1):  # the message never quotes an entry: it may be a key
                if key.startswith("sha256:") and not _is_sha256_hex(key[7:]):
                    raise ValueError(f"api_keys entry {i} starts with 'sha256:' but is not 64 hex digits after it")
            return tuple(SecretStr(k) for k in dict.fromkeys(keys))
        return value

    @field_validator("languages", mode="before")
    @classmethod
    def _language_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            codes = tuple(dict.fromkeys(str(v).strip().lower() for v in value if str(v).strip()))
            bad = [c for c in codes if not (2 <= len(c) <= 3 and c.isascii() and c.isalpha())]
            if bad or not codes:
                raise ValueError(f"languages must be ISO 639-1 codes such as en,uk (got {value!r})")
            return codes
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path(init_settings, env_settings)
        if path is not None:
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _config_path(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        value: Any = source().get("config_file")
        if value:
            path = Path(value)
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            return path
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()

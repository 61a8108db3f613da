"""SadTalker (OpenTalker/SadTalker) as the video animator: its inference.py in a job folder of its own.

SadTalker is far slower than real time (users report 12-36 s of GPU time per second of video), so it
serves Interact and per-sentence video segments, never the live audio path; tracks still come from the
embedded phoneme/audio driver.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from avatar_server.engines.animator.portrait import PortraitAnimator
from avatar_server.errors import EngineFailure
from avatar_server.media.audio import encode_wav
from avatar_server.personas import Avatar
from avatar_server.values import Speech, Track

log = logging.getLogger(__name__)

# What SadTalker's process may see of ours: the path, locale, home and temp folder, Python's own paths, the
# GPU runtime's variables and thread counts. Nothing else (API keys, the AVATAR_ settings, cloud credentials).
_PASSED = re.compile(
    r"PATH|HOME|USER|LOGNAME|TZ|TMPDIR|TEMP|TMP|LANG|LANGUAGE|LC_\w+|LD_LIBRARY_PATH|PYTHONPATH|PYTHONHOME"
    r"|PYTHONIOENCODING|VIRTUAL_ENV|CONDA_PREFIX|CUDA_\w+|NVIDIA_\w+|PYTORCH_CUDA_ALLOC_CONF|TORCH_HOME"
    r"|OMP_NUM_THREADS|MKL_NUM_THREADS|OPENBLAS_NUM_THREADS|XDG_CACHE_HOME"
)
_SECRET = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)


def scrubbed_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a SadTalker job: only the variables it needs, never a secret (a name that looks
    like one is dropped even where the pattern above would pass it)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if _PASSED.fullmatch(k) and not _SECRET.search(k)}


@dataclass(frozen=True)
class SadTalkerOptions:
    repo_dir: Path
    checkpoint_dir: Path
    python: str = sys.executable
    size: int = 256  # 256 or 512
    preprocess: str = "full"  # crop | resize | full | extcrop | extfull
    still: bool = True
    enhancer: str = ""  # "" or gfpgan / RestoreFormer
    timeout_seconds: float = 900.0
    jobs_dir: Path | None = None

    def check(self) -> None:
        if not (self.repo_dir / "inference.py").is_file():
            raise FileNotFoundError(f"SadTalker's inference.py not found in {self.repo_dir}")
        if not self.checkpoint_dir.is_dir() or not any(self.checkpoint_dir.iterdir()):
            raise FileNotFoundError(f"SadTalker checkpoints not found in {self.checkpoint_dir}")
        if self.size not in (256, 512):
            raise ValueError("SadTalker size must be 256 or 512")


class SadTalkerRunner:
    def __init__(self, options: SadTalkerOptions) -> None:
        options.check()
        self.options = options

    def command(self, audio: Path, image: Path, result_dir: Path) -> list[str]:
        o = self.options
        cmd = [
            o.python, "inference.py",
            "--driven_audio", str(audio),
            "--source_image", str(image),
            "--result_dir", str(result_dir),
            "--checkpoint_dir", str(o.checkpoint_dir),
            "--preprocess", o.preprocess,
            "--size", str(o.size),
        ]  # fmt: skip
        if o.still:
            cmd.append("--still")
        if o.enhancer:
            cmd += ["--enhancer", o.enhancer]
        return cmd

    def render(self, image: Path, speech: Speech) -> bytes:
        """Run one job; the job folder is removed whatever happens."""
        job = Path(tempfile.mkdtemp(prefix="sadtalker-", dir=self.options.jobs_dir))
        try:
            audio = job / "speech.wav"
            audio.write_bytes(encode_wav(speech.samples, speech.sample_rate))
            source = job / f"portrait{image.suffix or '.png'}"
            shutil.copyfile(image, source)
            results = job / "results"
            results.mkdir()
            started = time.perf_counter()
            try:
                done = subprocess.run(
                    self.command(audio, source, results),
                    cwd=self.options.repo_dir,
                    env=scrubbed_env(),
                    capture_output=True,
                    text=True,
                    timeout=self.options.timeout_seconds,
                )
            except subprocess.TimeoutExpired:
                raise EngineFailure(
                    f"SadTalker took longer than {self.options.timeout_seconds:.0f} s and was stopped"
                ) from None
            if done.returncode != 0:
                tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                raise EngineFailure(f"SadTalker failed (exit {done.returncode}): {tail}")
            videos = sorted(results.rglob("*.mp4"), key=lambda p: p.stat().st_mtime)
            if not videos:
                raise EngineFailure("SadTalker finished but wrote no mp4")
            log.info("SadTalker rendered %.1f s of video in %.1f s", speech.duration, time.perf_counter() - started)
            return videos[-1].read_bytes()
        finally:
            shutil.rmtree(job, ignore_errors=True)


class SadTalkerAnimator:
    """Tracks from the embedded driver, video from SadTalker."""

    name = "sadtalker"
    local = False  # a GPU subprocess: waiting on it must not hold this machine's cores

    def __init__(self, portrait: PortraitAnimator, runner: SadTalkerRunner, avatars: dict[str, Avatar]) -> None:
        self._portrait = portrait
        self._runner = runner
        self._images = {a.id: a.portrait.path for a in avatars.values()}
        self.video_fps = 25  # SadTalker's native rate

    def track(self, speech: Speech, text: str) -> Track:
        return self._portrait.track(speech, text)

    def video(self, avatar_id: str, speech: Speech, track: Track, start: float = 0.0) -> tuple[bytes, float]:
        mp4 = self._runner.render(self._images[avatar_id], speech)
        return mp4, _duration(mp4)


def _duration(mp4: bytes) -> float:
    import io

    import av

    container = av.open(io.BytesIO(mp4), mode="r")
    try:
        return float(container.duration or 0) / 1e6
    finally:
        container.close()

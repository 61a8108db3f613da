"""Avatars: persona (name, style, facts), voice and portrait, one readable YAML file each."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from avatar_server.languages import answer_in
from avatar_server.models import package_dir
from avatar_server.values import Landmarks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Portrait:
    path: Path
    landmarks: Landmarks


@dataclass(frozen=True)
class Avatar:
    id: str
    name: str
    description: str
    language: str
    voice: str
    style: str
    facts: tuple[str, ...]
    portrait: Portrait
    extra: dict[str, Any] = field(default_factory=dict)

    def system_prompt(self, reply_language: str) -> str:
        """The persona as a system prompt; a small model invents facts, so the true ones are given. A reply
        language other than English is named ("Always answer in Ukrainian.")."""
        facts = "\n".join(f"- {f}" for f in self.facts)
        lang = "" if reply_language.lower().startswith("en") else f" {answer_in(reply_language)}"
        return (
            f"You are {self.name}. {self.description} {self.style} Speak as yourself, {self.name}, in the first "
            f"person (I, my), to the person you talk with (you, your).{lang}\n"
            f"What you say about yourself (only these facts, in your own words):\n{facts}"
        )


class AvatarConfigError(ValueError):
    """An avatar file is malformed."""


def _portrait_file(path: Path, portrait_cfg: dict[str, Any]) -> Path:
    if "package" in portrait_cfg:
        return package_dir(str(portrait_cfg["package"])) / str(portrait_cfg["path"])
    return (path.parent / str(portrait_cfg["path"])).resolve()


def portrait_path(path: Path) -> Path:
    """The portrait image an avatar file names (it may have no landmarks yet)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return _portrait_file(path, raw["portrait"])
    except (KeyError, TypeError) as exc:
        raise AvatarConfigError(f"{path}: missing or malformed field {exc}") from exc


def load_avatar(path: Path) -> Avatar:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        portrait_cfg = raw["portrait"]
        image = _portrait_file(path, portrait_cfg)
        marks = portrait_cfg.get("landmarks")
        if not marks:
            raise AvatarConfigError(
                f"{path}: the portrait has no face landmarks; compute them with `make landmarks AVATAR={path}`"
            )
        return Avatar(
            id=str(raw["id"]),
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            language=str(raw.get("language", "en")),
            voice=str(raw.get("voice", "")),
            style=str(raw.get("style", "")),
            facts=tuple(str(f) for f in raw.get("facts", [])),
            portrait=Portrait(path=image, landmarks=Landmarks.from_dict(marks)),
        )
    except (KeyError, TypeError) as exc:
        raise AvatarConfigError(f"{path}: missing or malformed field {exc}") from exc


def load_avatars(folder: Path) -> dict[str, Avatar]:
    avatars = {}
    for path in sorted(folder.glob("*.yaml")):
        avatar = load_avatar(path)
        if avatar.id in avatars:
            raise AvatarConfigError(f"{path}: avatar id {avatar.id!r} is used twice")
        avatars[avatar.id] = avatar
    if not avatars:
        raise AvatarConfigError(f"no avatar files (*.yaml) in {folder}")
    return avatars

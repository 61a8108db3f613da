"""Typed Python client for avatar.v1.AvatarService."""

from avatar_client.client import AsyncAvatarClient, AvatarClient, mime_type_for

__all__ = ["AsyncAvatarClient", "AvatarClient", "mime_type_for"]

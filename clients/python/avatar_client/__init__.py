"""Typed Python client for avatar.v1.AvatarService."""

from avatar_client.channel import make_aio_channel, make_channel
from avatar_client.client import AsyncAvatarClient, AvatarClient, mime_type_for

__all__ = ["AsyncAvatarClient", "AvatarClient", "make_aio_channel", "make_channel", "mime_type_for"]

"""Live conversation (Converse): streaming turns with VAD, sentence-level TTS and barge-in."""

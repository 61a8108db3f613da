"""The transport-agnostic core: one turn, the live conversation around it, workers, admission control."""

"""The orders service: places orders through a persisted, recoverable saga."""

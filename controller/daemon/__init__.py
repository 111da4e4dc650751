"""The daemon: the tick loop and its I/O edges (actuator, state store, exporter, sd_notify)."""

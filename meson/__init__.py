"""Meson: admission, queues and flow control for Kubernetes workflows and stream jobs."""

__version__ = "0.1.0"

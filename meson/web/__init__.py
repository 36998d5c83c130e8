"""The read-only web dashboard the operator serves with ``meson operator --dashboard-port N``: the queue
tree with usage and borrowing, pending work in admission order, workflows with their DAG drawn as SVG,
stream jobs with their revisions, updated live by server-sent events.

It shows the operator's in-memory view (every replica's, a standby's too) through the same rows as the
CLI (:mod:`meson.views`), so there is one view model. GET only: nothing on it changes the cluster."""

from meson.web.app import make_app, snapshot_of, start, state
from meson.web.dag import dag_svg

__all__ = ["dag_svg", "make_app", "snapshot_of", "start", "state"]

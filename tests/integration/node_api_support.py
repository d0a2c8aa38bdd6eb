"""A real node API serving given rounds in a thread: ``pmoracle.testing.node_api.serve_node_api`` (the benchmarks
use it too)."""

from __future__ import annotations

from pmoracle.testing.node_api import serve_node_api as serve_node_api

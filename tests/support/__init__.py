"""Everything the test tiers share: helpers, fixtures (registered by tests/conftest.py) and the
supervision of the local clusters (control_plane, e2e_cluster; CLI: ``python -m
tests.support.cluster``). No tier imports another tier's modules: only this package."""

"""Attacks on FlowForge, each answered as tests/security/README.md says, against real processes where they are about them."""

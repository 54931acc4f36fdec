"""OpenDSR v2 (formerly OpenGDPR, whose v1 names keep working): other companies' privacy
systems file access, portability and erasure requests here, follow them, and hear of every
status change through signed callbacks. See docs/opendsr.md."""

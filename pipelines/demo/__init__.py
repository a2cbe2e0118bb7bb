"""The embedded demo: synthetic releases in real formats, the loopback mirror, `climb demo`."""

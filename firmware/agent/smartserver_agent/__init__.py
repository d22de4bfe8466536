"""smartserver's homelab server agent: heartbeat, network checks, clean shutdown."""

__version__ = "0.1.0"

"""kadnode: a Kademlia peer-discovery daemon and library."""

__version__ = "0.1.0"

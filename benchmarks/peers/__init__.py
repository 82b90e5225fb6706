"""Peer scripts: the same model run the way other people and libraries run it (see README.md)."""

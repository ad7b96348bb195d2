"""Subnet leases: which pod subnet is this node's, and who are its peers.

Knows nothing of netlink. Everything it hands upward is plain data (see lease.py).
"""

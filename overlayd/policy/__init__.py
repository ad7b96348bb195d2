"""NetworkPolicy enforcement (`overlayd --network-policy`): see docs/network-policy.md.

model (API JSON -> plain values) -> semantics -> compile (pure: -> nftables model) -> render
(-> nft scripts) -> apply (nft -f -). cache + watch feed the engine; evaluate explains verdicts
and decides which connections the conntrack cut removes; agent wires it into the daemon.
"""

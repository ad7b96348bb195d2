"""The namespaced lab: nodes, pods and an underlay switch on one machine.

Used by `overlayd lab` (and `make demo`) and by the tests. Every object it makes is
registered with a Cleanup and removed on exit, on failure and on Ctrl-C.
"""

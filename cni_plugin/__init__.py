"""The `overlay` CNI plugin: reads overlayd's subnet file and delegates to bridge + host-local.

Kubelet starts it once per pod operation, so everything on the ADD/DEL/CHECK path imports
only C-level pieces of the standard library (see docs/architecture.md, "The CNI plugin: front end and service").
"""

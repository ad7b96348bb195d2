"""`overlayd connectivity-test`: probe pods on every node of a real cluster and the reachability
matrix between them (pod to pod across nodes, pod to Service, node to pod), in the spirit of
Cilium's connectivity check. plan.py and matrix.py are pure; kube.py talks to the API server.
"""

"""overlayd: the node daemon of a flannel-compatible VXLAN overlay."""

"""flannel's defaults, written once: every flag default, settings default and doc example uses these."""

ETCD_PREFIX = "/coreos.com/network"                        # --etcd-prefix
ANNOTATION_PREFIX = "flannel.alpha.coreos.com"             # --kube-annotation-prefix
NET_CONFIG_PATH = "/etc/kube-flannel/net-conf.json"        # --net-config-path

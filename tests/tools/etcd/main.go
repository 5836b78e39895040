// Command etcd is the etcd server of the release Kubernetes was tested against. Debian's
// etcd-server is 3.4, older than the 3.5+ the API server expects, so the test harness
// builds this thin entry point from the same module graph as the control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

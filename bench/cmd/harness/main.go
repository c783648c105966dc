// Command harness measures ws side by side with its Go peers; see
// bench/README.md. It also is the server and worker processes it starts:
// "harness server ..." and "harness worker ...".
package main

import (
	"fmt"
	"os"

	"github.com/vortechron/go-ws/bench/internal/harness"
	"github.com/vortechron/go-ws/bench/internal/loadgen"
	"github.com/vortechron/go-ws/bench/internal/servers"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "server":
		err = servers.Main(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "worker":
		err = loadgen.Main(os.Args[2:], os.Stdin, os.Stdout)
	default:
		err = harness.Main(os.Args[1:], os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// Command server runs one of the benchmarked pub/sub servers with the
// harness's control API; see bench/README.md.
package main

import (
	"fmt"
	"os"

	"github.com/vortechron/go-ws/bench/internal/servers"
)

func main() {
	if err := servers.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

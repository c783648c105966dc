package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

var nodeVersionRE = regexp.MustCompile(`^v(\d+)\.`)

// NodeVersion runs node --version and returns the major version and the
// version string ("v22.23.5").
func NodeVersion(node string) (major int, version string, err error) {
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return 0, "", fmt.Errorf("%s --version: %v", node, err)
	}
	version = string(bytes.TrimSpace(out))
	m := nodeVersionRE.FindStringSubmatch(version)
	if m == nil {
		return 0, "", fmt.Errorf("%s --version printed %q", node, version)
	}
	major, _ = strconv.Atoi(m[1])
	return major, version, nil
}

// NodeRelease is a node binary listed in WS_NODES.
type NodeRelease struct {
	Path    string
	Major   int
	Version string // as node --version prints it: "v22.23.5"
}

// NodeReleases returns the node binaries listed in WS_NODES (a path
// list: scripts/node-matrix.sh prints one, and make test sets it) whose
// major version is at least minMajor. With none, it skips tb, or fails it
// under WS_REQUIRE_TOOLS=1, saying how to get them; a listed binary that
// does not run fails tb.
func NodeReleases(tb testing.TB, minMajor int) []NodeRelease {
	tb.Helper()
	var out []NodeRelease
	for _, path := range filepath.SplitList(os.Getenv("WS_NODES")) {
		major, version, err := NodeVersion(path)
		if err != nil {
			tb.Fatalf("WS_NODES: %v", err)
		}
		if major >= minMajor {
			out = append(out, NodeRelease{Path: path, Major: major, Version: version})
		}
	}
	if len(out) == 0 {
		Missing(tb, RequireTools, "WS_NODES lists no node binary of Node %d or later; `make test` fetches them with scripts/node-matrix.sh", max(minMajor, 18))
	}
	return out
}

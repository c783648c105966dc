package testenv

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
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

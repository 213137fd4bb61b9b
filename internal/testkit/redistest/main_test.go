package redistest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

// TestSkipWithoutServer is run by TestMissingServerIsReportedWithoutVerbose in
// a child process with no Redis to find; alone it does nothing.
func TestSkipWithoutServer(t *testing.T) {
	if os.Getenv("REDISTEST_CHILD") != "1" {
		return
	}
	redistest.Start(t)
	t.Error("Start returned without a server")
}

// A package whose every test skipped for want of redis-server printed only
// "ok" without -v; Main must print one line that says so.
func TestMissingServerIsReportedWithoutVerbose(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSkipWithoutServer$")
	cmd.Env = append(os.Environ(), "REDISTEST_CHILD=1", "PATH="+t.TempDir(), "CI=", "REDIS_URL=", "DOCKER_HOST=unix:///nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "redistest: SKIPPED 1 test(s): no Redis server") {
		t.Fatalf("child printed no skip line:\n%s", out)
	}
}
